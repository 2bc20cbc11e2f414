//! Tensor parallelism: the slice of a model one GPU holds, and the TP sizes a server can use.
//!
//! Megatron-style TP (as vLLM and SGLang run it) splits every decoder layer the same way: q/k/v
//! and gate/up are column-parallel (each rank computes `N/TP` outputs), o and down are
//! row-parallel (each rank reads `K/TP` inputs), attention heads split over ranks, and the
//! embedding and LM head split the vocabulary. A rank is therefore itself a smaller
//! [`ModelArch`] — fewer heads, a narrower MLP, a slice of the vocabulary, the same hidden size
//! and layers — so the fit and the step-time model price it unchanged, and only the
//! communication is added on top (see `cost::comm`).

use std::fmt;
use std::str::FromStr;

use super::model::ModelArch;

/// The tensor-parallel sizes cardplan accepts (what vLLM servers use in practice).
pub const TP_SIZES: [u32; 4] = [1, 2, 4, 8];

/// `--tp`: a fixed size, or the smallest that fits with a useful KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpChoice {
    Auto,
    Fixed(u32),
}

impl FromStr for TpChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(TpChoice::Auto);
        }
        match s.parse::<u32>() {
            Ok(n) if TP_SIZES.contains(&n) => Ok(TpChoice::Fixed(n)),
            _ => Err(format!(
                "'{s}' is not a tensor-parallel size: use 1, 2, 4, 8 or auto"
            )),
        }
    }
}

impl fmt::Display for TpChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpChoice::Auto => f.write_str("auto"),
            TpChoice::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl ModelArch {
    /// KV heads one rank holds at `tp`: an even split, or one replicated head per rank when the
    /// model has fewer KV heads than ranks (vLLM replicates them).
    pub fn kv_heads_per_rank(&self, tp: u32) -> u32 {
        if self.kv_heads >= tp {
            self.kv_heads / tp
        } else {
            1
        }
    }

    /// Why `tp` cannot split this model, if it cannot.
    pub fn check_tp(&self, tp: u32) -> Result<(), String> {
        if !TP_SIZES.contains(&tp) {
            return Err(format!(
                "tensor-parallel size {tp} is not one of 1, 2, 4, 8"
            ));
        }
        if tp > self.heads || self.heads % tp != 0 {
            return Err(format!(
                "TP {tp} does not divide {}'s {} attention heads",
                self.key, self.heads
            ));
        }
        let kv_ok = if self.kv_heads >= tp {
            self.kv_heads % tp == 0
        } else {
            tp % self.kv_heads == 0
        };
        if !kv_ok {
            return Err(format!(
                "TP {tp} cannot split or replicate {}'s {} KV heads evenly",
                self.key, self.kv_heads
            ));
        }
        if let Some(m) = &self.moe
            && (m.expert_intermediate % tp != 0 || m.shared_intermediate % tp != 0)
        {
            return Err(format!(
                "TP {tp} does not divide {}'s expert width {}",
                self.key, m.expert_intermediate
            ));
        }
        if self.intermediate % tp != 0 {
            return Err(format!(
                "TP {tp} does not divide {}'s MLP width {}",
                self.key, self.intermediate
            ));
        }
        Ok(())
    }

    /// The part of the model one of `tp` ranks holds and computes. `tp = 1` is the model itself.
    pub fn shard(&self, tp: u32) -> Result<ModelArch, String> {
        if tp == 1 {
            return Ok(self.clone());
        }
        self.check_tp(tp)?;
        let mut rank = self.clone();
        rank.heads = self.heads / tp;
        rank.kv_heads = self.kv_heads_per_rank(tp);
        rank.intermediate = self.intermediate / tp;
        // vocab-parallel embedding and LM head: each rank holds a padded slice
        rank.vocab = self.vocab.div_ceil(tp);
        // vLLM's default for mixture-of-experts under TP: every rank holds a slice of every
        // expert (its MLP width split like a dense MLP); the router is replicated
        if let Some(m) = rank.moe.as_mut() {
            m.expert_intermediate /= tp;
            m.shared_intermediate /= tp;
        }
        // the published count describes the whole model, not a rank
        rank.published_params = None;
        Ok(rank)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    #[test]
    fn parses_sizes_and_auto() {
        assert_eq!("auto".parse::<TpChoice>(), Ok(TpChoice::Auto));
        assert_eq!("4".parse::<TpChoice>(), Ok(TpChoice::Fixed(4)));
        for bad in ["3", "16", "0", "", "two", "-1"] {
            let e = bad.parse::<TpChoice>().expect_err(bad);
            assert!(e.contains("1, 2, 4, 8 or auto"), "{e}");
        }
    }

    #[test]
    fn tp_one_is_the_model() {
        let m = catalog::model("llama-3.1-70b").expect("model");
        assert_eq!(m.shard(1).expect("tp1"), m);
    }

    #[test]
    fn llama_70b_ranks_by_hand() {
        // 64 query heads, 8 KV heads, head_dim 128, hidden 8192, MLP 28672, vocab 128256
        let m = catalog::model("llama-3.1-70b").expect("model");
        for (tp, q_heads, kv_heads) in [(2, 32, 4), (4, 16, 2), (8, 8, 1)] {
            let r = m.shard(tp).expect("shard");
            assert_eq!((r.heads, r.kv_heads), (q_heads, kv_heads));
            let l = r.linears();
            // qkv column-parallel: (64 + 2·8)·128 / tp outputs over all 8192 inputs
            assert_eq!((l[0].n, l[0].k), ((64 + 16) * 128 / tp, 8192));
            // o row-parallel: 8192 outputs over 64·128 / tp inputs
            assert_eq!((l[1].n, l[1].k), (8192, 64 * 128 / tp));
            // gate_up column-parallel, down row-parallel
            assert_eq!((l[2].n, l[2].k), (2 * 28672 / tp, 8192));
            assert_eq!((l[3].n, l[3].k), (8192, 28672 / tp));
            assert_eq!(r.vocab, 128256 / tp);
            // KV bytes per token per GPU in fp16: 80 layers × 2 (K, V) × kv heads × 128 × 2 bytes
            let kv = crate::catalog::quant::KvDtype::Fp16.bytes_per_token(&r);
            assert_eq!(kv, 80 * 2 * u64::from(kv_heads) * 128 * 2);
        }
    }

    #[test]
    fn few_kv_heads_are_replicated() {
        // 8 KV heads at TP 8 split; a model with 4 KV heads at TP 8 keeps one per rank
        let mut m = catalog::model("llama-3.1-70b").expect("model");
        m.kv_heads = 4;
        let r = m.shard(8).expect("shard");
        assert_eq!(r.kv_heads, 1);
        let l = r.linears();
        assert_eq!(l[0].n, (8 + 2) * 128);
    }

    #[test]
    fn rejects_sizes_the_heads_cannot_take() {
        let m = catalog::model("phi-2").expect("model"); // 32 heads
        assert!(m.shard(8).is_ok());
        let mut odd = m.clone();
        odd.heads = 20;
        odd.kv_heads = 20;
        let e = odd.shard(8).expect_err("20 heads over 8");
        assert!(e.contains("attention heads"), "{e}");
        assert!(m.check_tp(3).is_err());
    }
}
