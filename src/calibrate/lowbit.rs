//! CPU references for the FP8 and INT4 formats: e4m3 encode/decode (OCP `E4M3FN`, what
//! `torch.float8_e4m3fn` and vLLM's FP8 checkpoints hold) and int4 group-128 quantization with the
//! AWQ and GPTQ packings. The GPU kernels are checked against these before they are timed, and
//! the layouts are the checkpoints' own, so the byte counts in `catalog::quant` can be checked
//! against real packed tensors.

/// Largest finite e4m3 value (`0x7e`); encoding saturates here.
pub const E4M3_MAX: f32 = 448.0;
/// The e4m3 NaN code (positive); `0xff` is the negative one. E4M3FN has no infinities.
pub const E4M3_NAN: u8 = 0x7f;

/// Encode `x` as e4m3 with round-to-nearest-even, saturating to ±448 (what `satfinite`
/// conversions and the FP8 quantizers, which clamp first, do). NaN encodes as `0x7f`.
pub fn e4m3_encode(x: f32) -> u8 {
    if x.is_nan() {
        return E4M3_NAN;
    }
    let sign: u8 = if x.is_sign_negative() { 0x80 } else { 0 };
    let a = f64::from(x.abs());
    // subnormal range (below 2^-6): multiples of 2^-9; a count of 8 is the smallest normal,
    // whose code is also 8 (exponent field 1, mantissa 0)
    if a < 2f64.powi(-6) {
        return sign | (a * 512.0).round_ties_even() as u8;
    }
    if a >= f64::from(E4M3_MAX) {
        return sign | 0x7e;
    }
    let mut e = a.log2().floor() as i32;
    // guard the float log against landing one off at exact powers of two
    if 2f64.powi(e) > a {
        e -= 1;
    } else if 2f64.powi(e + 1) <= a {
        e += 1;
    }
    let mut m = ((a / 2f64.powi(e) - 1.0) * 8.0).round_ties_even() as i32;
    if m == 8 {
        e += 1;
        m = 0;
    }
    // 0x7f is NaN: the largest code is exponent 8, mantissa 6 (448)
    if e > 8 || (e == 8 && m == 7) {
        return sign | 0x7e;
    }
    sign | (((e + 7) as u8) << 3) | m as u8
}

/// Decode an e4m3 byte (NaN for `0x7f` and `0xff`).
pub fn e4m3_decode(b: u8) -> f32 {
    let (e, m) = (i32::from((b >> 3) & 0xf), f32::from(b & 7));
    let mag = match (e, b & 0x7f) {
        (_, 0x7f) => return f32::NAN,
        (0, _) => m / 8.0 * 2f32.powi(-6),
        _ => (1.0 + m / 8.0) * 2f32.powi(e - 7),
    };
    if b & 0x80 != 0 { -mag } else { mag }
}

/// FP8 quantization of the rows of `x` (`rows × cols`), one scale per row (`absmax / 448`, as
/// per-channel weights and per-token activations are quantized): codes and scales.
pub fn e4m3_quantize_rows(x: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows);
    for r in x.chunks(cols).take(rows) {
        let absmax = r.iter().fold(0f32, |a, v| a.max(v.abs()));
        let s = if absmax > 0.0 { absmax / E4M3_MAX } else { 1.0 };
        // multiply by the reciprocal, as the GPU kernel (and vLLM's) does: dividing rounds a
        // value that sits on a rounding tie to the other code
        let inv = 1.0 / s;
        codes.extend(r.iter().map(|v| e4m3_encode(v * inv)));
        scales.push(s);
    }
    (codes, scales)
}

/// Input channels per int4 group.
pub const GROUP: usize = 128;

/// Int4 weights of an `n × k` linear (`w[row n][col k]`, output-major as torch stores them),
/// quantized per group of [`GROUP`] input channels per output row: codes 0..=15, with
/// `w ≈ (q − zero) · scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Int4Groups {
    pub n: usize,
    pub k: usize,
    /// `[n][k]` codes.
    pub q: Vec<u8>,
    /// `[k / GROUP][n]` scales (fp16 in checkpoints, kept in f32 here).
    pub scales: Vec<f32>,
    /// `[k / GROUP][n]` zero points 0..=15.
    pub zeros: Vec<u8>,
}

impl Int4Groups {
    /// Asymmetric min/max quantization (AWQ's): `scale = (max − min) / 15`, `zero = round(−min
    /// / scale)`. With `symmetric`, GPTQ's symmetric grid: `scale = 2·absmax / 15`, zero 8.
    /// `k` must be a multiple of [`GROUP`].
    pub fn quantize(w: &[f32], n: usize, k: usize, symmetric: bool) -> Int4Groups {
        let groups = k / GROUP;
        let mut out = Int4Groups {
            n,
            k,
            q: vec![0; n * k],
            scales: vec![0.0; groups * n],
            zeros: vec![0; groups * n],
        };
        for row in 0..n {
            for g in 0..groups {
                let vals = &w[row * k + g * GROUP..row * k + (g + 1) * GROUP];
                let (lo, hi) = vals
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let (scale, zero) = if symmetric {
                    let m = lo.abs().max(hi.abs());
                    ((2.0 * m / 15.0).max(f32::MIN_POSITIVE), 8.0f32)
                } else {
                    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
                    let s = ((hi - lo) / 15.0).max(f32::MIN_POSITIVE);
                    (s, (-lo / s).round().clamp(0.0, 15.0))
                };
                out.scales[g * n + row] = scale;
                out.zeros[g * n + row] = zero as u8;
                for (j, &v) in vals.iter().enumerate() {
                    let q = ((v / scale).round() + zero).clamp(0.0, 15.0);
                    out.q[row * k + g * GROUP + j] = q as u8;
                }
            }
        }
        out
    }

    /// The weight `w[row][col]` these codes stand for.
    pub fn dequant(&self, row: usize, col: usize) -> f32 {
        let g = (col / GROUP) * self.n + row;
        (f32::from(self.q[row * self.k + col]) - f32::from(self.zeros[g])) * self.scales[g]
    }
}

/// AutoAWQ's nibble order: nibble `i` of a packed word holds column `8c + AWQ_ORDER[i]`.
pub const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Pack 8 codes into one word, nibble `i` from `codes[order[i]]`.
fn pack8(codes: [u8; 8], order: &[usize; 8]) -> u32 {
    (0..8).fold(0u32, |w, i| {
        w | (u32::from(codes[order[i]] & 0xf) << (4 * i))
    })
}

fn unpack8(word: u32, order: &[usize; 8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (i, &o) in order.iter().enumerate() {
        out[o] = ((word >> (4 * i)) & 0xf) as u8;
    }
    out
}

const SEQUENTIAL: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// AWQ checkpoint tensors: `qweight` `[k][n/8]` and `qzeros` `[k/128][n/8]`, eight output
/// columns per int32 in [`AWQ_ORDER`]; `scales` `[k/128][n]`. `n` must be a multiple of 8.
pub fn awq_pack(q: &Int4Groups) -> (Vec<u32>, Vec<u32>) {
    let (n, k) = (q.n, q.k);
    let words = n / 8;
    let mut qweight = Vec::with_capacity(k * words);
    for col in 0..k {
        for c in 0..words {
            let codes = std::array::from_fn(|j| q.q[(8 * c + j) * k + col]);
            qweight.push(pack8(codes, &AWQ_ORDER));
        }
    }
    let mut qzeros = Vec::with_capacity(k / GROUP * words);
    for g in 0..k / GROUP {
        for c in 0..words {
            let codes = std::array::from_fn(|j| q.zeros[g * n + 8 * c + j]);
            qzeros.push(pack8(codes, &AWQ_ORDER));
        }
    }
    (qweight, qzeros)
}

/// Codes `[n][k]` and zeros `[k/128][n]` back from AWQ's packed tensors.
pub fn awq_unpack(qweight: &[u32], qzeros: &[u32], n: usize, k: usize) -> (Vec<u8>, Vec<u8>) {
    let words = n / 8;
    let mut q = vec![0u8; n * k];
    for col in 0..k {
        for c in 0..words {
            for (j, v) in unpack8(qweight[col * words + c], &AWQ_ORDER)
                .into_iter()
                .enumerate()
            {
                q[(8 * c + j) * k + col] = v;
            }
        }
    }
    let zeros = qzeros
        .iter()
        .flat_map(|&w| unpack8(w, &AWQ_ORDER))
        .collect();
    (q, zeros)
}

/// GPTQ checkpoint tensors (AutoGPTQ's v1 format): `qweight` `[k/8][n]`, eight consecutive input
/// channels per int32, nibble `j` = channel `8r + j`; `qzeros` `[k/128][n/8]`, eight consecutive
/// columns per int32, each zero stored minus one (so symmetric 8 is stored 7); `scales`
/// `[k/128][n]`; `g_idx` `[k]` = channel / 128.
pub fn gptq_pack(q: &Int4Groups) -> (Vec<u32>, Vec<u32>, Vec<i32>) {
    let (n, k) = (q.n, q.k);
    let mut qweight = Vec::with_capacity(k / 8 * n);
    for r in 0..k / 8 {
        for row in 0..n {
            let codes = std::array::from_fn(|j| q.q[row * k + 8 * r + j]);
            qweight.push(pack8(codes, &SEQUENTIAL));
        }
    }
    let mut qzeros = Vec::with_capacity(k / GROUP * n / 8);
    for g in 0..k / GROUP {
        for c in 0..n / 8 {
            let codes = std::array::from_fn(|j| q.zeros[g * n + 8 * c + j].wrapping_sub(1));
            qzeros.push(pack8(codes, &SEQUENTIAL));
        }
    }
    let g_idx = (0..k).map(|c| (c / GROUP) as i32).collect();
    (qweight, qzeros, g_idx)
}

/// Codes `[n][k]` and zeros `[k/128][n]` back from GPTQ's packed tensors.
pub fn gptq_unpack(qweight: &[u32], qzeros: &[u32], n: usize, k: usize) -> (Vec<u8>, Vec<u8>) {
    let mut q = vec![0u8; n * k];
    for r in 0..k / 8 {
        for row in 0..n {
            for (j, v) in unpack8(qweight[r * n + row], &SEQUENTIAL)
                .into_iter()
                .enumerate()
            {
                q[row * k + 8 * r + j] = v;
            }
        }
    }
    let zeros = qzeros
        .iter()
        .flat_map(|&w| unpack8(w, &SEQUENTIAL).map(|z| (z + 1) & 0xf))
        .collect();
    (q, zeros)
}

/// Output columns per block of the W4A16 kernel's layout (kernels/quant.cu).
pub const MMA_N: usize = 64;

/// The W4A16 kernel's layout of symmetric int4 weights (zero 8; `n % 64 == 0`, `k % 128 ==
/// 0`), as Marlin repacks checkpoints at load: per block of 16 input channels × 64 output
/// columns, lane `l` (of 32) holds four words with the mma.sync m16n8k16 B fragments of its 8 n8
/// tiles: word `w` has tile `2w` in bits 0–15 and tile `2w+1` in bits 16–31, each tile's nibbles
/// the codes at input channels `2q, 2q+1, 2q+8, 2q+9` (`q = l % 4`) of column `64·nb + 8j + l/4`.
/// Words are ordered `[(k/16 · n/64 + nb) · 32 + l][4]`. Scales: `[(k/128 · n/64 + nb) · 8 +
/// l/4][8]`, entry `j` the scale of column `64·nb + 8j + l/4` (the four lanes of one column read
/// the same 16 bytes: no scale is stored twice).
pub fn mma_pack(q: &Int4Groups) -> (Vec<u32>, Vec<f32>) {
    let (n, k) = (q.n, q.k);
    let nbs = n / MMA_N;
    let mut words = Vec::with_capacity(n * k / 8);
    for st in 0..k / 16 {
        for nb in 0..nbs {
            for lane in 0..32 {
                let (g, qd) = (lane / 4, lane % 4);
                for w in 0..4 {
                    let mut word = 0u32;
                    for half in 0..2 {
                        let col = nb * MMA_N + 8 * (2 * w + half) + g;
                        for (i, dk) in [2 * qd, 2 * qd + 1, 2 * qd + 8, 2 * qd + 9]
                            .into_iter()
                            .enumerate()
                        {
                            let code = u32::from(q.q[col * k + st * 16 + dk] & 0xf);
                            word |= code << (16 * half + 4 * i);
                        }
                    }
                    words.push(word);
                }
            }
        }
    }
    let mut scales = Vec::with_capacity(n * k / GROUP);
    for gi in 0..k / GROUP {
        for nb in 0..nbs {
            for c in 0..8 {
                for j in 0..8 {
                    scales.push(q.scales[gi * n + nb * MMA_N + 8 * j + c]);
                }
            }
        }
    }
    (words, scales)
}

/// Codes `[n][k]` back from [`mma_pack`]'s words.
pub fn mma_unpack(words: &[u32], n: usize, k: usize) -> Vec<u8> {
    let nbs = n / MMA_N;
    let mut q = vec![0u8; n * k];
    for (i, word) in words.iter().enumerate() {
        let (w, lane, blk) = (i % 4, (i / 4) % 32, i / 128);
        let (nb, st) = (blk % nbs, blk / nbs);
        let (g, qd) = (lane / 4, lane % 4);
        for half in 0..2 {
            let col = nb * MMA_N + 8 * (2 * w + half) + g;
            for (j, dk) in [2 * qd, 2 * qd + 1, 2 * qd + 8, 2 * qd + 9]
                .into_iter()
                .enumerate()
            {
                q[col * k + st * 16 + dk] = ((word >> (16 * half + 4 * j)) & 0xf) as u8;
            }
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finite_code_round_trips() {
        for b in 0..=255u8 {
            let v = e4m3_decode(b);
            if b & 0x7f == 0x7f {
                assert!(v.is_nan(), "{b:#x}");
                continue;
            }
            let back = e4m3_encode(v);
            // +0 and -0 both decode to zero; everything else is exact
            assert!(
                back == b || (v == 0.0 && back & 0x7f == 0),
                "{b:#x} -> {v} -> {back:#x}"
            );
        }
    }

    #[test]
    fn mma_layout_round_trips_and_puts_lane_0_tile_0_first() {
        let (n, k) = (128, 256);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
            .collect();
        let q = Int4Groups::quantize(&w, n, k, true);
        let (words, scales) = mma_pack(&q);
        assert_eq!(words.len() * 4, n * k / 2);
        assert_eq!(scales.len(), n * k / GROUP);
        assert_eq!(mma_unpack(&words, n, k), q.q);
        // lane 0, word 0: column 0, channels 0, 1, 8, 9 in bits 0-15; column 8 in bits 16-31
        let c = |col: usize, ch: usize| u32::from(q.q[col * k + ch]);
        let want = c(0, 0) | c(0, 1) << 4 | c(0, 8) << 8 | c(0, 9) << 12;
        let want = want | (c(8, 0) | c(8, 1) << 4 | c(8, 8) << 8 | c(8, 9) << 12) << 16;
        assert_eq!(words[0], want);
        // lanes 4-7 (column 1 of each tile): their scale of tile 2 is column 17's
        assert_eq!(scales[8 + 2], q.scales[17]);
        // second group of the second block: column 64 + 8·3 + 5
        assert_eq!(scales[(2 + 1) * 64 + 5 * 8 + 3], q.scales[n + 64 + 29]);
    }
}
