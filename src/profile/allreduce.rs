//! The measured all-reduce table: NCCL all-reduce (fp16, sum) timed over the GPUs of one server.

use serde::{Deserialize, Serialize};

/// All-reduce times at one tensor-parallel size, as `cardplan calibrate` measures them on a
/// machine with `tp` or more GPUs of this model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllReduceTable {
    pub tp: u32,
    /// `(bytes, µs)`: the message size of each rank and the time of the whole all-reduce, bytes
    /// ascending.
    pub points: Vec<(u64, f64)>,
    /// NCCL version and the topology NCCL reported (NVLink, PCIe, P2P or host memory).
    #[serde(default)]
    pub nccl: String,
    #[serde(default)]
    pub topology: String,
}

impl AllReduceTable {
    /// Seconds for `bytes`: log-log interpolation between measured sizes; below the smallest,
    /// its time (latency-bound); above the largest, its time plus the extra bytes at the
    /// bandwidth of the last two points (bandwidth-bound).
    pub fn seconds(&self, bytes: f64) -> f64 {
        let pts = &self.points;
        let Some(&(b0, t0)) = pts.first() else {
            return 0.0;
        };
        if bytes <= b0 as f64 || pts.len() == 1 {
            return t0 * 1e-6;
        }
        for w in pts.windows(2) {
            let ((ba, ta), (bb, tb)) = (w[0], w[1]);
            if bytes <= bb as f64 {
                let f = (bytes.ln() - (ba as f64).ln()) / ((bb as f64).ln() - (ba as f64).ln());
                return (ta.ln() + f * (tb.ln() - ta.ln())).exp() * 1e-6;
            }
        }
        let (ba, ta) = pts[pts.len() - 2];
        let (bb, tb) = pts[pts.len() - 1];
        let us_per_byte = ((tb - ta) / (bb as f64 - ba as f64)).max(0.0);
        (tb + (bytes - bb as f64) * us_per_byte) * 1e-6
    }

    /// Check sizes ascend and times are positive; `origin` names the file.
    pub fn validate(&self, origin: &str) -> Result<(), String> {
        if !(2..=64).contains(&self.tp) {
            return Err(format!(
                "{origin}: allreduce tp must be 2 to 64, got {}",
                self.tp
            ));
        }
        if self.points.is_empty() {
            return Err(format!("{origin}: allreduce tp={} has no points", self.tp));
        }
        for w in self.points.windows(2) {
            if w[1].0 <= w[0].0 {
                return Err(format!(
                    "{origin}: allreduce tp={} sizes must ascend",
                    self.tp
                ));
            }
        }
        if self.points.iter().any(|p| !(p.1.is_finite() && p.1 > 0.0)) {
            return Err(format!(
                "{origin}: allreduce tp={} times must be positive",
                self.tp
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> AllReduceTable {
        AllReduceTable {
            tp: 2,
            points: vec![(4096, 10.0), (1 << 20, 20.0), (64 << 20, 400.0)],
            nccl: String::new(),
            topology: String::new(),
        }
    }

    #[test]
    fn interpolates_and_extrapolates() {
        let t = table();
        assert!((t.seconds(100.0) - 10e-6).abs() < 1e-12);
        assert!((t.seconds((1u64 << 20) as f64) - 20e-6).abs() < 1e-12);
        let mid = t.seconds((16u64 << 20) as f64);
        assert!(mid > 20e-6 && mid < 400e-6);
        // beyond the table: the last segment's bandwidth
        let slope = (400.0 - 20.0) / ((64u64 << 20) - (1 << 20)) as f64;
        let far = t.seconds((128u64 << 20) as f64);
        assert!((far - (400.0 + slope * (64u64 << 20) as f64) * 1e-6).abs() < 1e-9);
        // monotone
        let mut last = 0.0;
        for b in [1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9] {
            let s = t.seconds(b);
            assert!(s >= last);
            last = s;
        }
    }

    #[test]
    fn rejects_bad_tables() {
        let mut t = table();
        t.points.swap(0, 1);
        assert!(t.validate("x").is_err());
        let mut t = table();
        t.tp = 1;
        assert!(t.validate("x").is_err());
        assert!(table().validate("x").is_ok());
    }
}
