//! CPU reference quantizers: NF4 (bitsandbytes layout, double-quantized absmax) and int8.

use cardplan::calibrate::quant::{
    NF4_BLOCK, NF4_TABLE, Nf4Tensor, dynamic_map, nearest, quantize_rows,
};

#[test]
fn nf4_table_is_bitsandbytes_code() {
    // Endpoints, the exact zero at index 7 and a few published values of the NF4 code.
    assert_eq!(NF4_TABLE[0], -1.0);
    assert_eq!(NF4_TABLE[7], 0.0);
    assert_eq!(NF4_TABLE[15], 1.0);
    assert!((NF4_TABLE[1] + 0.6961928).abs() < 1e-6);
    assert!((NF4_TABLE[8] - 0.0795803).abs() < 1e-6);
    assert!((NF4_TABLE[14] - 0.7229568).abs() < 1e-6);
    assert!(NF4_TABLE.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn dynamic_map_has_256_sorted_entries_with_zero_and_one() {
    let m = dynamic_map();
    assert!(m.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(m[255], 1.0);
    assert!(m.contains(&0.0));
    // Smallest magnitude decade is 1e-6 · mean of (0.1, 1.0): 5.5e-7.
    let min_pos = m
        .iter()
        .copied()
        .filter(|&v| v > 0.0)
        .fold(f32::MAX, f32::min);
    assert!((min_pos - 5.5e-7).abs() < 1e-9, "{min_pos}");
    assert!(m[0] < -0.99 && m[0] > -1.0);
}

#[test]
fn nearest_picks_closest_entry() {
    assert_eq!(nearest(&NF4_TABLE, 0.01), 7);
    assert_eq!(nearest(&NF4_TABLE, -2.0), 0);
    assert_eq!(nearest(&NF4_TABLE, 0.7), 14);
}

#[test]
fn nf4_packs_even_element_in_high_nibble() {
    let mut w = vec![0f32; NF4_BLOCK];
    w[0] = -2.0; // code 0 (-absmax)
    w[1] = 2.0; // code 15 (+absmax)
    let q = Nf4Tensor::quantize(&w, 1, NF4_BLOCK);
    assert_eq!(q.packed[0], 0x0F);
    assert_eq!(q.packed[1], 0x77); // zeros are code 7
    assert_eq!(q.packed.len(), NF4_BLOCK / 2);
    assert_eq!(q.absmax_q.len(), 1);
    assert_eq!(q.absmax2.len(), 1);
}

#[test]
fn nf4_table_values_round_trip_within_double_quant_error() {
    // Each block holds exact multiples of the NF4 table by its own absmax.
    let blocks = 300; // more than one 256-block group of absmax values
    let mut w = Vec::new();
    for b in 0..blocks {
        let am = 0.01 + 0.001 * (b % 37) as f32;
        for i in 0..NF4_BLOCK {
            w.push(NF4_TABLE[i % 16] * am);
        }
    }
    let q = Nf4Tensor::quantize(&w, blocks, NF4_BLOCK);
    assert_eq!(q.absmax2.len(), 2);
    let d = q.dequantize();
    let map = dynamic_map();
    for b in 0..blocks {
        let true_am = w[b * NF4_BLOCK..(b + 1) * NF4_BLOCK]
            .iter()
            .fold(0f32, |m, x| m.max(x.abs()));
        let am = q.absmax(b, &map);
        // The dynamic map's coarsest step is 0.9/64 in its top decade: half of it, times the
        // group scale, bounds the absmax error.
        let bound = 0.5 * 0.9 / 64.0 * q.absmax2[b / 256] + 1e-7;
        assert!(
            (am - true_am).abs() <= bound,
            "block {b}: {am} vs {true_am}"
        );
        for i in 0..NF4_BLOCK {
            let e = b * NF4_BLOCK + i;
            // Codes are exact, so the only error is the absmax one scaled by |table value| <= 1.
            assert!((d[e] - w[e]).abs() <= bound * 1.0001, "element {e}");
        }
    }
}

#[test]
fn nf4_absmax_is_per_block_of_64() {
    // An outlier in block 1 must not change the scale of block 0.
    let mut w: Vec<f32> = (0..2 * NF4_BLOCK)
        .map(|i| ((i % 7) as f32 - 3.0) * 0.01)
        .collect();
    w[NF4_BLOCK + 5] = 10.0;
    let q = Nf4Tensor::quantize(&w, 2, NF4_BLOCK);
    let map = dynamic_map();
    let am0 = q.absmax(0, &map);
    let am1 = q.absmax(1, &map);
    assert!((am1 - 10.0).abs() < 0.1, "{am1}");
    assert!(
        am0 < 0.1,
        "block 0 absmax {am0} polluted by block 1's outlier"
    );
    let d = q.dequantize();
    // Block 0 keeps its own small scale: every value stays within its (double-quantized) absmax
    // and keeps its sign. (With only two blocks the mean-offset double quantization moves block
    // 0's absmax from 0.03 to about 0.065, as bitsandbytes would.)
    for i in 0..NF4_BLOCK {
        assert!(d[i].abs() <= am0 * 1.0001, "element {i}");
        assert!(w[i] == 0.0 || d[i].signum() == w[i].signum(), "element {i}");
    }
}

#[test]
fn int8_rows_scale_by_row_absmax_and_round_half_even() {
    let x = [127.0f32, -63.5, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
    let q = quantize_rows(&x, 2, 4);
    assert_eq!(q.scale, vec![1.0, 1.0]); // second row all zero: scale 1
    assert_eq!(q.q, vec![127, -64, 0, 1, 0, 0, 0, 0]);
    let y = [0.5f32, -0.25];
    let q = quantize_rows(&y, 1, 2);
    assert!((q.scale[0] - 0.5 / 127.0).abs() < 1e-9);
    assert_eq!(q.q, vec![127, -64]);
    let back = q.dequantize(2);
    assert!((back[1] + 0.25).abs() <= q.scale[0] / 2.0 + 1e-7);
}
