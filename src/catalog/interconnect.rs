//! How the GPUs of one server talk to each other: what a tensor-parallel all-reduce costs when
//! nothing was measured.
//!
//! A GPU file's optional `interconnect:` block states the link (NVSwitch, NVLink bridge, PCIe),
//! whether peer-to-peer works over it, the most GPUs a server links that way, and two figures
//! NCCL users read off `all_reduce_perf`: the bus bandwidth at large messages and the time of a
//! small all-reduce. The all-reduce model is the textbook ring with a latency term:
//! `t(bytes, n) = latency(n) + 2(n−1)/n · bytes / busbw`, where nccl-tests defines
//! `busbw = algbw · 2(n−1)/n`, so a link's busbw is (nearly) independent of `n`. The latency term
//! grows with `log2 n` (tree and one-shot algorithms for small messages), an assumption stated in
//! the output; a measured `allreduce` table replaces the whole model where the profile has one.

use serde::{Deserialize, Serialize};

/// The physical link between the GPUs of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// Every GPU on an NVSwitch fabric (HGX/DGX boards).
    Nvswitch,
    /// NVLink bridges between pairs of cards; larger groups cross PCIe.
    NvlinkBridge,
    /// PCIe only (through a switch or the CPU's root complex).
    Pcie,
}

impl LinkKind {
    pub fn name(self) -> &'static str {
        match self {
            LinkKind::Nvswitch => "NVSwitch",
            LinkKind::NvlinkBridge => "NVLink bridge",
            LinkKind::Pcie => "PCIe",
        }
    }
}

/// A server's GPU-to-GPU link, as the GPU catalog states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interconnect {
    pub kind: LinkKind,
    /// PCIe generation of the card's host link (what a PCIe all-reduce crosses).
    #[serde(default)]
    pub pcie_gen: Option<u32>,
    /// Peer-to-peer transfers work. GeForce cards have none: NCCL stages every transfer through
    /// host memory and vLLM's custom all-reduce is off, so small messages cost more.
    pub p2p: bool,
    /// Most GPUs of this model one server links this way (the largest tensor-parallel group).
    pub max_gpus: u32,
    /// NCCL all-reduce bus bandwidth at large messages (nccl-tests `busbw`), GB/s.
    pub busbw_gbs: f64,
    /// Time of a small (≤ 64 KB) all-reduce between two GPUs, µs: what a decode step pays.
    pub latency_us: f64,
    /// Where the figures come from.
    pub source: String,
}

impl Interconnect {
    /// Seconds of one all-reduce of `bytes` over `n` GPUs (none for one GPU).
    pub fn allreduce_s(&self, bytes: f64, n: u32) -> f64 {
        if n <= 1 {
            return 0.0;
        }
        let nf = f64::from(n);
        let latency = self.latency_us * 1e-6 * nf.log2();
        latency + 2.0 * (nf - 1.0) / nf * bytes / (self.busbw_gbs * 1e9)
    }

    /// Seconds to gather `bytes_per_rank` from each of `n` ranks onto one (the LM head's logits):
    /// the other ranks' shares cross the link once.
    pub fn gather_s(&self, bytes_per_rank: f64, n: u32) -> f64 {
        if n <= 1 {
            return 0.0;
        }
        let nf = f64::from(n);
        self.latency_us * 1e-6 * nf.log2() + (nf - 1.0) * bytes_per_rank / (self.busbw_gbs * 1e9)
    }

    /// One line for reports: `NVSwitch, 450 GB/s bus, 8 µs small all-reduce, P2P`.
    pub fn describe(&self) -> String {
        format!(
            "{}{}, {:.0} GB/s bus bandwidth, {:.0} µs small all-reduce, {}",
            self.kind.name(),
            self.pcie_gen
                .map(|g| format!(" (PCIe {g}.0 host link)"))
                .unwrap_or_default(),
            self.busbw_gbs,
            self.latency_us,
            if self.p2p {
                "peer-to-peer"
            } else {
                "no peer-to-peer (staged through host memory)"
            }
        )
    }

    pub fn validate(&self, origin: &str) -> Result<(), String> {
        for (name, v) in [
            ("busbw_gbs", self.busbw_gbs),
            ("latency_us", self.latency_us),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!(
                    "{origin}: interconnect `{name}` must be a positive number, got {v}"
                ));
            }
        }
        if !(2..=64).contains(&self.max_gpus) {
            return Err(format!(
                "{origin}: interconnect `max_gpus` must be 2 to 64, got {}",
                self.max_gpus
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Interconnect {
        Interconnect {
            kind: LinkKind::Nvswitch,
            pcie_gen: Some(5),
            p2p: true,
            max_gpus: 8,
            busbw_gbs: 450.0,
            latency_us: 8.0,
            source: "t".into(),
        }
    }

    #[test]
    fn one_gpu_pays_nothing() {
        assert_eq!(link().allreduce_s(1e9, 1), 0.0);
        assert_eq!(link().gather_s(1e9, 1), 0.0);
    }

    #[test]
    fn allreduce_is_monotone_in_size_and_gpus() {
        let l = link();
        let sizes = [1e3, 64e3, 1e6, 16e6, 256e6];
        for n in [2, 4, 8] {
            for w in sizes.windows(2) {
                assert!(l.allreduce_s(w[0], n) < l.allreduce_s(w[1], n));
            }
        }
        for &b in &sizes {
            assert!(l.allreduce_s(b, 2) < l.allreduce_s(b, 4));
            assert!(l.allreduce_s(b, 4) < l.allreduce_s(b, 8));
        }
    }

    #[test]
    fn small_messages_cost_latency_large_ones_bandwidth() {
        let l = link();
        // 16 KB at TP 2: the latency dominates
        let small = l.allreduce_s(16e3, 2);
        assert!((small - 8e-6) / small < 0.01);
        // 256 MB at TP 2: 1 × 256 MB / 450 GB/s
        let big = l.allreduce_s(256e6, 2);
        assert!((big - 256e6 / 450e9).abs() / big < 0.02);
    }
}
