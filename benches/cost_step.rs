//! ns per `StepCost::step_seconds` call, the simulator's innermost cost.
//!
//! Run: `cargo bench --bench cost_step [-- PROFILE.yaml ...]` (release build; prints a table,
//! asserts nothing). Each GPU is priced twice: as the catalog has it, and with the default
//! efficiency set written out as tables (`cost::defaults::as_tables`), which exercises the
//! table-interpolation path a measured profile takes. Extra arguments: measured profile files.
//! Shapes are drawn from a fixed-seed generator so runs are comparable.

use std::hint::black_box;
use std::time::Instant;

use cardplan::catalog::{self, engine::EnginePreset, quant::KvDtype, quant::Quant};
use cardplan::cost::{PricingBasis, StepCost, defaults};
use cardplan::profile::GpuProfile;
use cardplan::step::{BatchShape, PrefillChunk, StepTime};

/// xorshift64*: deterministic shapes without pulling an RNG into the timed loop.
struct Gen(u64);
impl Gen {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = catalog::model("llama-3.1-8b")?;
    let engine = EnginePreset::builtin("vllm").ok_or("no vllm preset")?;
    const N: usize = 2_000_000;
    let mut gpus: Vec<(String, GpuProfile)> = Vec::new();
    for key in ["h100-sxm", "rtx3090"] {
        let g = catalog::gpu(key)?;
        let mut t = g.clone();
        t.measured = Some(defaults::as_tables(&g, &model));
        gpus.push((format!("{key} (catalog)"), g));
        gpus.push((format!("{key} (tables)"), t));
    }
    for path in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        gpus.push((path.clone(), GpuProfile::read(std::path::Path::new(&path))?));
    }
    println!("| gpu | quant | shapes | ns/call | build ms |");
    println!("|---|---|---|---|---|");
    for (gpu_key, gpu) in &gpus {
        for quant in [Quant::Fp16, Quant::Nf4] {
            let t0 = Instant::now();
            let basis = PricingBasis::resolve(gpu, catalog::measured_gpus()?);
            let cost = StepCost::new(&basis, &model, quant, KvDtype::Fp16, &engine)?;
            let build_ms = t0.elapsed().as_secs_f64() * 1e3;
            let mut g = Gen(0x9E37_79B9_7F4A_7C15);
            let mut chunks = Vec::with_capacity(N);
            let mut decodes = Vec::with_capacity(N);
            for _ in 0..N {
                let b = 1 + g.next(256) as u32;
                decodes.push((b, u64::from(b) * (1 + g.next(4096))));
                chunks.push(PrefillChunk {
                    new_tokens: 1 + g.next(1024) as u32,
                    cached_tokens: g.next(2048) as u32,
                });
            }
            for (label, with_prefill) in
                [("decode only", false), ("decode + 1 prefill chunk", true)]
            {
                let t0 = Instant::now();
                let mut acc = 0.0;
                for i in 0..N {
                    let (b, ctx) = decodes[i];
                    let one = [chunks[i]];
                    let shape = BatchShape {
                        decode_seqs: b,
                        decode_context_tokens: ctx,
                        prefills: if with_prefill { &one } else { &[] },
                    };
                    acc += cost.step_seconds(black_box(&shape));
                }
                black_box(acc);
                let ns = t0.elapsed().as_secs_f64() * 1e9 / N as f64;
                println!("| {gpu_key} | {quant} | {label} | {ns:.0} | {build_ms:.1} |");
            }
        }
    }
    Ok(())
}
