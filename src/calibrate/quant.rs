//! CPU reference quantizers: bitsandbytes NF4 with double-quantized absmax, and symmetric int8
//! (per output channel for weights, per token for activations). The GPU kernels read exactly
//! these layouts; the correctness checks compare the kernels against these on the CPU.

/// The 16 NF4 values (bitsandbytes `NF4` code; quantiles of a unit normal, rescaled to [-1, 1]).
pub const NF4_TABLE: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// NF4 weights per absmax block.
pub const NF4_BLOCK: usize = 64;
/// Absmax values per second-level (fp32) block in double quantization.
pub const NF4_BLOCK2: usize = 256;

/// bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map(signed=True)`), sorted: the code
/// the absmax values are quantized with.
pub fn dynamic_map() -> [f32; 256] {
    let mut v: Vec<f64> = Vec::with_capacity(256);
    let max_exp = 7i32;
    for i in 0..max_exp {
        let items = (1usize << i) + 1;
        let bounds: Vec<f64> = (0..items)
            .map(|j| 0.1 + 0.9 * j as f64 / (items - 1) as f64)
            .collect();
        let scale = 10f64.powi(-(max_exp - 1) + i);
        for w in bounds.windows(2) {
            let mean = (w[0] + w[1]) / 2.0;
            v.push(scale * mean);
            v.push(-scale * mean);
        }
    }
    v.push(0.0);
    v.push(1.0);
    v.sort_by(f64::total_cmp);
    let mut out = [0f32; 256];
    for (o, x) in out.iter_mut().zip(v) {
        *o = x as f32;
    }
    out
}

/// Index of the table entry nearest to `x` (ties to the lower index).
pub fn nearest(table: &[f32], x: f32) -> u8 {
    let mut best = 0usize;
    for (i, &t) in table.iter().enumerate() {
        if (t - x).abs() < (table[best] - x).abs() {
            best = i;
        }
    }
    best as u8
}

/// A row-major `n × k` weight in bitsandbytes NF4 storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Tensor {
    pub n: usize,
    pub k: usize,
    /// Two codes per byte, the even element in the high nibble.
    pub packed: Vec<u8>,
    /// Per 64-weight block: index into [`dynamic_map`].
    pub absmax_q: Vec<u8>,
    /// Per 256 blocks: the scale of the quantized absmax values.
    pub absmax2: Vec<f32>,
    /// Mean absmax, subtracted before the absmax values are quantized.
    pub offset: f32,
}

impl Nf4Tensor {
    /// Quantize `w` (row-major `n × k`, `n·k` a multiple of 64).
    pub fn quantize(w: &[f32], n: usize, k: usize) -> Nf4Tensor {
        assert_eq!(w.len(), n * k, "weight length");
        assert_eq!(w.len() % NF4_BLOCK, 0, "NF4 needs whole blocks of 64");
        let absmax: Vec<f32> = w
            .chunks(NF4_BLOCK)
            .map(|b| b.iter().fold(0f32, |m, x| m.max(x.abs())))
            .collect();
        let mut codes = Vec::with_capacity(w.len());
        for (b, &am) in w.chunks(NF4_BLOCK).zip(&absmax) {
            let inv = if am > 0.0 { 1.0 / am } else { 0.0 };
            codes.extend(b.iter().map(|&x| nearest(&NF4_TABLE, x * inv)));
        }
        let packed = codes.chunks(2).map(|c| (c[0] << 4) | c[1]).collect();
        let offset =
            (absmax.iter().map(|&a| f64::from(a)).sum::<f64>() / absmax.len() as f64) as f32;
        let map = dynamic_map();
        let mut absmax_q = Vec::with_capacity(absmax.len());
        let mut absmax2 = Vec::new();
        for chunk in absmax.chunks(NF4_BLOCK2) {
            let m2 = chunk.iter().fold(0f32, |m, &a| m.max((a - offset).abs()));
            let s2 = if m2 > 0.0 { m2 } else { 1.0 };
            absmax2.push(s2);
            absmax_q.extend(chunk.iter().map(|&a| nearest(&map, (a - offset) / s2)));
        }
        Nf4Tensor {
            n,
            k,
            packed,
            absmax_q,
            absmax2,
            offset,
        }
    }

    /// The absmax of block `b` as the kernels reconstruct it.
    pub fn absmax(&self, b: usize, map: &[f32; 256]) -> f32 {
        map[usize::from(self.absmax_q[b])] * self.absmax2[b / NF4_BLOCK2] + self.offset
    }

    /// The weights as the kernels see them (f32, row-major).
    pub fn dequantize(&self) -> Vec<f32> {
        let map = dynamic_map();
        let mut out = Vec::with_capacity(self.n * self.k);
        for (i, &byte) in self.packed.iter().enumerate() {
            let am = self.absmax(2 * i / NF4_BLOCK, &map);
            out.push(NF4_TABLE[usize::from(byte >> 4)] * am);
            out.push(NF4_TABLE[usize::from(byte & 15)] * am);
        }
        out
    }
}

/// Symmetric int8 with one scale per row: `w[r, c] ≈ q[r, c] · scale[r]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Rows {
    pub q: Vec<i8>,
    pub scale: Vec<f32>,
}

/// Quantize each row of a row-major `rows × cols` matrix to int8 (range ±127, round half to even,
/// as the GPU's `__float2int_rn`). An all-zero row gets scale 1.
pub fn quantize_rows(x: &[f32], rows: usize, cols: usize) -> Int8Rows {
    assert_eq!(x.len(), rows * cols, "matrix length");
    let mut q = Vec::with_capacity(x.len());
    let mut scale = Vec::with_capacity(rows);
    for r in x.chunks(cols) {
        let m = r.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1.0 };
        let inv = 1.0 / s;
        q.extend(
            r.iter()
                .map(|&v| (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
        scale.push(s);
    }
    Int8Rows { q, scale }
}

impl Int8Rows {
    pub fn dequantize(&self, cols: usize) -> Vec<f32> {
        self.q
            .chunks(cols)
            .zip(&self.scale)
            .flat_map(|(r, &s)| r.iter().map(move |&v| f32::from(v) * s))
            .collect()
    }
}
