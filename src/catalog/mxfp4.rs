//! MXFP4 (OCP Microscaling Formats v1.0): 4-bit e2m1 values, 32 to a block sharing one 8-bit
//! power-of-two scale (e8m0). gpt-oss ships its routed experts in it: per 32 weights 16 bytes of
//! values and 1 byte of scale, 4.25 bits a weight.
//!
//! This is the CPU reference of the format: exact bytes, quantize and dequantize, with the
//! layout the gpt-oss checkpoint and transformers' loader use (two values a byte, the even
//! element in the low nibble; the scale byte is the exponent biased by 127).

/// Values sharing one scale.
pub const BLOCK: usize = 32;
/// Bits a weight, scales included: 4 + 8/32.
pub const BITS: f64 = 4.0 + 8.0 / BLOCK as f64;
/// The eight non-negative e2m1 values, by code (sign in bit 3).
pub const E2M1: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
/// Exponent of the largest e2m1 value (6 = 1.5·2²): a block's scale puts its largest magnitude
/// in [4, 8), so it lands on 4 or 6 (or saturates to 6), as the OCP spec sets the scale.
const EMAX: i32 = 2;

/// Bytes of an `n × k` weight in MXFP4: each row's `k` values in blocks of 32 (the last one
/// padded), 16 bytes of values and one scale byte a block.
pub fn bytes(n: u64, k: u64) -> u64 {
    n * k.div_ceil(BLOCK as u64) * (BLOCK as u64 / 2 + 1)
}

/// A row-major `n × k` weight in MXFP4 (`k` a multiple of 32).
#[derive(Debug, Clone, PartialEq)]
pub struct Mxfp4Tensor {
    pub n: usize,
    pub k: usize,
    /// Two codes a byte, the even element in the low nibble.
    pub packed: Vec<u8>,
    /// One e8m0 scale a block: `2^(byte − 127)`.
    pub scales: Vec<u8>,
}

/// The e2m1 code nearest to `x` (already divided by the block scale), saturating at ±6, ties
/// to the even code (round half to even, as the OCP conversion rounds).
pub fn encode(x: f32) -> u8 {
    let sign = if x.is_sign_negative() { 8u8 } else { 0 };
    let a = x.abs();
    if a.is_nan() {
        return sign;
    }
    // saturate first: far above 6 the distances to 4 and 6 round to the same float
    let a = a.min(E2M1[7]);
    let mut best = 0usize;
    for (i, &v) in E2M1.iter().enumerate().skip(1) {
        let (d, db) = ((v - a).abs(), (E2M1[best] - a).abs());
        if d < db || (d == db && i % 2 == 0) {
            best = i;
        }
    }
    sign | best as u8
}

/// The value of an e2m1 code.
pub fn decode(code: u8) -> f32 {
    let v = E2M1[usize::from(code & 7)];
    if code & 8 != 0 { -v } else { v }
}

/// The scale byte of a block whose largest magnitude is `amax`: `floor(log2 amax) − 2 + 127`,
/// clamped to the finite e8m0 range (0 for an all-zero block).
pub fn scale_byte(amax: f32) -> u8 {
    if !(amax > 0.0 && amax.is_finite()) {
        return 0;
    }
    let e = amax.log2().floor() as i32 - EMAX;
    (e + 127).clamp(0, 254) as u8
}

fn scale_value(byte: u8) -> f32 {
    2f32.powi(i32::from(byte) - 127)
}

impl Mxfp4Tensor {
    /// Quantize `w` (row-major `n × k`). `Err` names what is wrong with the shape.
    pub fn quantize(w: &[f32], n: usize, k: usize) -> Result<Mxfp4Tensor, String> {
        if w.len() != n * k || k % BLOCK != 0 {
            return Err(format!(
                "MXFP4 needs a {n} × {k} weight ({} values given) with k a multiple of {BLOCK}",
                w.len()
            ));
        }
        let mut packed = Vec::with_capacity(w.len() / 2);
        let mut scales = Vec::with_capacity(w.len() / BLOCK);
        for block in w.chunks(BLOCK) {
            let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
            let s = scale_byte(amax);
            let inv = 1.0 / scale_value(s);
            scales.push(s);
            for pair in block.chunks(2) {
                packed.push(encode(pair[0] * inv) | (encode(pair[1] * inv) << 4));
            }
        }
        Ok(Mxfp4Tensor {
            n,
            k,
            packed,
            scales,
        })
    }

    /// The weights as a kernel dequantizing them sees them (f32, row-major).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n * self.k);
        for (b, &s) in self.packed.chunks(BLOCK / 2).zip(&self.scales) {
            let scale = scale_value(s);
            for &byte in b {
                out.push(decode(byte & 15) * scale);
                out.push(decode(byte >> 4) * scale);
            }
        }
        out
    }

    /// Stored bytes: values and scales.
    pub fn stored_bytes(&self) -> u64 {
        (self.packed.len() + self.scales.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_e2m1_value_round_trips() {
        for (code, &v) in E2M1.iter().enumerate() {
            assert_eq!(encode(v), code as u8);
            assert_eq!(decode(code as u8), v);
            assert_eq!(decode(encode(-v)), -v);
        }
        assert_eq!(encode(-6.0), 0b1111);
        assert_eq!(encode(-0.5), 0b1001);
    }

    #[test]
    fn ties_go_to_the_even_code_and_large_values_saturate() {
        // midpoints: 0.25 (0|0.5), 0.75 (0.5|1), 1.25 (1|1.5), 1.75 (1.5|2), 2.5 (2|3), 3.5 (3|4), 5 (4|6)
        let ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0];
        let want = [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0];
        for (x, w) in ties.iter().zip(want) {
            assert_eq!(decode(encode(*x)), w, "{x}");
        }
        assert_eq!(decode(encode(0.3)), 0.5);
        assert_eq!(decode(encode(7.5)), 6.0);
        assert_eq!(decode(encode(1e9)), 6.0);
    }

    #[test]
    fn known_block_is_stored_exactly() {
        // a block holding every e2m1 magnitude, both signs, twice: largest 6 -> scale 2^0
        let vals: Vec<f32> = E2M1
            .iter()
            .chain(E2M1.iter())
            .flat_map(|&v| [v, -v])
            .collect();
        assert_eq!(vals.len(), 32);
        let t = Mxfp4Tensor::quantize(&vals, 1, 32).unwrap();
        assert_eq!(t.scales, vec![127]);
        // first byte: 0 (low nibble) and -0 (code 8, high nibble); second: 0.5 and -0.5
        assert_eq!(t.packed[0], 0x80);
        assert_eq!(t.packed[1], 0x91);
        assert_eq!(t.packed[15], 0xf7);
        assert_eq!(t.dequantize(), vals);
        // the same block scaled by 2^-3: scale byte 124, same codes
        let small: Vec<f32> = vals.iter().map(|v| v / 8.0).collect();
        let s = Mxfp4Tensor::quantize(&small, 1, 32).unwrap();
        assert_eq!(s.scales, vec![124]);
        assert_eq!(s.packed, t.packed);
        assert_eq!(s.dequantize(), small);
    }

    #[test]
    fn scale_puts_the_block_maximum_on_the_top_of_the_grid() {
        assert_eq!(scale_byte(6.0), 127);
        assert_eq!(scale_byte(4.0), 127);
        assert_eq!(scale_byte(3.99), 126);
        assert_eq!(scale_byte(0.0), 0);
        // 0.1 -> 2^-4 · 1.6: scale 2^-6, 0.1 / 2^-6 = 6.4 -> saturates to 6 -> 0.09375
        let mut v = vec![0.0f32; 32];
        v[0] = 0.1;
        v[1] = 0.05;
        let t = Mxfp4Tensor::quantize(&v, 1, 32).unwrap();
        assert_eq!(t.scales[0], 121);
        let d = t.dequantize();
        assert_eq!(d[0], 6.0 / 64.0);
        assert_eq!(d[1], 3.0 / 64.0);
    }

    #[test]
    fn random_weights_land_within_half_a_step() {
        let n = 4;
        let k = 64;
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.07)
            .collect();
        let t = Mxfp4Tensor::quantize(&w, n, k).unwrap();
        assert_eq!(t.stored_bytes(), bytes(n as u64, k as u64));
        for (b, (x, y)) in w.chunks(32).zip(t.dequantize().chunks(32)).enumerate() {
            let scale = scale_value(t.scales[b]);
            for (a, q) in x.iter().zip(y) {
                // e2m1 steps are at most 2 (between 4 and 6): error at most 1 scale unit
                assert!((a - q).abs() <= scale + 1e-7, "{a} {q} scale {scale}");
            }
        }
        assert!(Mxfp4Tensor::quantize(&w, n, k + 1).is_err());
        assert!(Mxfp4Tensor::quantize(&w[..48], 1, 48).is_err());
    }

    #[test]
    fn bytes_are_four_and_a_quarter_bits_a_weight() {
        // gpt-oss expert gate/up: 5760 x 2880 -> 90 blocks a row, 17 bytes each
        assert_eq!(bytes(5760, 2880), 5760 * 90 * 17);
        assert_eq!(bytes(5760, 2880) as f64, 5760.0 * 2880.0 * BITS / 8.0);
        // a ragged row pads its last block
        assert_eq!(bytes(1, 33), 34);
    }
}
