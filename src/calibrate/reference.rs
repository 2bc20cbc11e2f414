//! CPU references the GPU kernels are checked against, and the comparison with an error bound.

use super::timer::CheckReport;

/// `y[t, j] = Σ_c x[t, c] · w[j, c]` in f64; `x` is `T × k`, `w` is `n × k`, both row-major.
pub fn linear(x: &[f32], w: &[f32], t: usize, n: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0f64; t * n];
    for ti in 0..t {
        let xr = &x[ti * k..(ti + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            y[ti * n + j] = xr
                .iter()
                .zip(wr)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
        }
    }
    y
}

/// Paged decode attention. `kc`, `vc` are the dequantized caches in the kernel layout
/// `[block][kv_head][16][128]`; `q` is `[B][H][128]`; `table` is `[B][max_blocks]`.
#[allow(clippy::too_many_arguments)]
pub fn decode_attention(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    table: &[i32],
    ctx: &[i32],
    heads: usize,
    kv_heads: usize,
    max_blocks: usize,
) -> Vec<f64> {
    const D: usize = 128;
    const BS: usize = 16;
    let b_count = ctx.len();
    let g = heads / kv_heads;
    let scale = 1.0 / (D as f64).sqrt();
    let mut out = vec![0f64; b_count * heads * D];
    for b in 0..b_count {
        let n = ctx[b] as usize;
        for h in 0..heads {
            let kvh = h / g;
            let qv = &q[(b * heads + h) * D..(b * heads + h + 1) * D];
            let row = |cache: &[f32], tok: usize| -> Vec<f64> {
                let phys = table[b * max_blocks + tok / BS] as usize;
                let off = ((phys * kv_heads + kvh) * BS + tok % BS) * D;
                cache[off..off + D].iter().map(|&v| f64::from(v)).collect()
            };
            let scores: Vec<f64> = (0..n)
                .map(|t| {
                    row(kc, t)
                        .iter()
                        .zip(qv)
                        .map(|(a, b)| a * f64::from(*b))
                        .sum::<f64>()
                        * scale
                })
                .collect();
            softmax_weighted(
                &scores,
                |t| row(vc, t),
                &mut out[(b * heads + h) * D..][..D],
            );
        }
    }
    out
}

/// Causal attention over contiguous `q [T][H][128]`, `k, v [T][KVH][128]`.
pub fn prefill_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    heads: usize,
    kv_heads: usize,
) -> Vec<f64> {
    const D: usize = 128;
    let g = heads / kv_heads;
    let scale = 1.0 / (D as f64).sqrt();
    let mut out = vec![0f64; t * heads * D];
    for i in 0..t {
        for h in 0..heads {
            let kvh = h / g;
            let qv = &q[(i * heads + h) * D..][..D];
            let at = |m: &[f32], j: usize| -> Vec<f64> {
                m[(j * kv_heads + kvh) * D..][..D]
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect()
            };
            let scores: Vec<f64> = (0..=i)
                .map(|j| {
                    at(k, j)
                        .iter()
                        .zip(qv)
                        .map(|(a, b)| a * f64::from(*b))
                        .sum::<f64>()
                        * scale
                })
                .collect();
            softmax_weighted(&scores, |j| at(v, j), &mut out[(i * heads + h) * D..][..D]);
        }
    }
    out
}

fn softmax_weighted(scores: &[f64], value: impl Fn(usize) -> Vec<f64>, out: &mut [f64]) {
    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut l = 0.0;
    for (t, s) in scores.iter().enumerate() {
        let p = (s - m).exp();
        l += p;
        for (o, v) in out.iter_mut().zip(value(t)) {
            *o += p * v;
        }
    }
    if l > 0.0 {
        out.iter_mut().for_each(|o| *o /= l);
    }
}

/// Residual add then RMSNorm: returns `(y, new_residual)`, both `T × width`.
pub fn rmsnorm_residual(
    x: &[f32],
    residual: &[f32],
    w: &[f32],
    width: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    let r: Vec<f64> = x
        .iter()
        .zip(residual)
        .map(|(a, b)| f64::from(*a) + f64::from(*b))
        .collect();
    let mut y = Vec::with_capacity(r.len());
    for row in r.chunks(width) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / width as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        y.extend(row.iter().zip(w).map(|(v, g)| v * inv * f64::from(*g)));
    }
    (y, r)
}

/// `silu(gate) · up` over rows laid out `[gate | up]`, each `width` wide.
pub fn silu_mul(input: &[f32], width: usize) -> Vec<f64> {
    input
        .chunks(2 * width)
        .flat_map(|row| {
            let (g, u) = row.split_at(width);
            g.iter().zip(u).map(|(&g, &u)| {
                let g = f64::from(g);
                g / (1.0 + (-g).exp()) * f64::from(u)
            })
        })
        .collect()
}

/// Compare `gpu` to `cpu` under `|gpu - cpu| <= atol + rtol·|cpu|` for every element.
pub fn compare(kernel: &str, gpu: &[f32], cpu: &[f64], atol: f64, rtol: f64) -> CheckReport {
    let mut worst = if gpu.len() == cpu.len() {
        0.0
    } else {
        f64::INFINITY
    };
    let mut max_abs = 0f64;
    for (g, c) in gpu.iter().zip(cpu) {
        let err = (f64::from(*g) - c).abs();
        let ratio = if err.is_nan() {
            f64::INFINITY
        } else {
            err / (atol + rtol * c.abs())
        };
        worst = f64::max(worst, ratio);
        max_abs = max_abs.max(err);
    }
    CheckReport {
        kernel: kernel.to_string(),
        worst_ratio: worst,
        max_abs_err: max_abs,
        bound: format!("|err| <= {atol:e} + {rtol:e}·|ref|"),
    }
}
