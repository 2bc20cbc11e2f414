//! Which kernel bitsandbytes 0.50.2 runs for a 4-bit (NF4, fp16) linear layer, so that the
//! faithful `nf4` scheme times what a bitsandbytes user pays at every point rather than one rule
//! for all shapes. Ported from its dispatch for the GPUs cardplan calibrates on (sm90: H100, H200):
//! `matmul_4bit` (one token: its GEMV), `_gemm_4bit_use_custom_cuda` in
//! bitsandbytes/backends/cuda/ops.py (its own kernel or dequantize + `F.linear`), then the C
//! dispatch in csrc/gemm_4bit.cu (SIMT or mma.sync kernel, and the mma tile). Other
//! architectures have their own tiers there and are not ported: [`dispatch`] returns `None`.

/// An mma.sync tile: rows (tokens), columns (outputs), K chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmaTile {
    pub mt: u32,
    pub nt: u32,
    pub kc: u32,
}

impl MmaTile {
    /// Name of cardplan's stand-in kernel for this tile (kernels/nf4_mma.cu).
    pub fn kernel_name(self) -> String {
        format!("nf4_mma_{}x{}x{}", self.mt, self.nt, self.kc)
    }
}

/// The tiles kernels/nf4_mma.cu is built for: every one the sm90 dispatch below can return.
pub const MMA_TILES: [MmaTile; 5] = [
    MmaTile {
        mt: 32,
        nt: 64,
        kc: 128,
    },
    MmaTile {
        mt: 32,
        nt: 256,
        kc: 128,
    },
    MmaTile {
        mt: 64,
        nt: 64,
        kc: 64,
    },
    MmaTile {
        mt: 128,
        nt: 64,
        kc: 64,
    },
    MmaTile {
        mt: 128,
        nt: 128,
        kc: 64,
    },
];

/// The kernel bitsandbytes runs for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnbKernel {
    /// Its GEMV (one token) or SIMT kernel (a few tokens): fused dequantize, no tensor cores.
    Simt,
    /// Its fused dequantize + mma.sync GEMM with this tile.
    Mma(MmaTile),
    /// `_dequant_linear_fallback`: dequantize the weight to fp16, then `F.linear` (cuBLAS).
    DequantLinear,
}

impl BnbKernel {
    pub fn label(self) -> String {
        match self {
            BnbKernel::Simt => "simt".into(),
            BnbKernel::Mma(t) => format!("mma-{}x{}x{}", t.mt, t.nt, t.kc),
            BnbKernel::DequantLinear => "dequant-linear".into(),
        }
    }
}

/// Above this many tokens bitsandbytes always dequantizes and calls `F.linear`.
const CUSTOM_MAX_M: u32 = 1536;
/// At or below this many tokens it always runs its own kernel.
const CUSTOM_FLOOR_M: u32 = 4;
/// Quantization block of the weights (bitsandbytes' default for NF4).
const BLOCKSIZE: u32 = 64;

/// The kernel for `m` tokens through an `n × k` layer on a GPU of compute capability `cc` with
/// `sms` SMs; `None` where the architecture's tiers are not ported (not sm90).
pub fn dispatch(cc: (u32, u32), sms: u32, m: u32, n: u32, k: u32) -> Option<BnbKernel> {
    if cc.0 != 9 {
        return None;
    }
    if m <= 1 {
        return Some(BnbKernel::Simt); // matmul_4bit's gemv_4bit for a single token
    }
    let custom = m <= CUSTOM_MAX_M && k % BLOCKSIZE == 0 && use_custom_sm90(sms, m, n, k);
    if !custom {
        return Some(BnbKernel::DequantLinear);
    }
    Some(c_dispatch_hbm(sms, m, n, k))
}

/// The kernel cardplan times for bitsandbytes: [`dispatch`], or where it is not ported its GEMV
/// up to 4 tokens and its dequantize sequence above. Its SIMT kernel is priced by cardplan's
/// GEMV, built for at most `gemv_max` tokens (the sequence above that), and a tile whose K chunk
/// does not divide K by the sequence.
pub fn priced(cc: (u32, u32), sms: u32, m: u32, n: u32, k: u32, gemv_max: u32) -> BnbKernel {
    let d = dispatch(cc, sms, m, n, k).unwrap_or(if m <= CUSTOM_FLOOR_M {
        BnbKernel::Simt
    } else {
        BnbKernel::DequantLinear
    });
    match d {
        BnbKernel::Simt if m > gemv_max => BnbKernel::DequantLinear,
        BnbKernel::Mma(tile) if k % tile.kc != 0 => BnbKernel::DequantLinear,
        other => other,
    }
}

/// `_gemm_4bit_use_custom_cuda` for sm90 and fp16.
fn use_custom_sm90(sms: u32, m: u32, n: u32, k: u32) -> bool {
    if m <= CUSTOM_FLOOR_M {
        return true;
    }
    let (m, n, k, sms) = (u64::from(m), u64::from(n), u64::from(k), u64::from(sms));
    let n_blocks = n.div_ceil(64);
    if n * k < 4 * 1024 * 1024 {
        if k * 2 < n {
            let low_wave = n_blocks * 3 < sms;
            return m <= if low_wave { 512 } else { 320 };
        }
        if n_blocks * 4 <= sms {
            return m <= 32;
        }
        if n_blocks * 2 <= sms {
            return m <= 16;
        }
        return false;
    }
    if m > 512 {
        return false;
    }
    if m < 8 {
        if m >= 6 && n_blocks >= 36 {
            let lt_75 = n_blocks * 4 < sms * 3;
            let lt_60 = n_blocks * 5 < sms * 3;
            if k > n && lt_75 {
                return false;
            }
            if k == n && lt_75 && !lt_60 {
                return false;
            }
        }
        return true;
    }
    if n_blocks >= sms * 3 {
        m <= 64
    } else if n_blocks >= sms * 2 {
        m <= 48
    } else if n_blocks >= sms {
        m <= 32
    } else if n_blocks >= sms / 2 {
        !(k >= n && n_blocks * 4 < sms * 3) && m <= 16
    } else {
        false
    }
}

/// The C dispatch on an HBM GPU (sm90): SIMT or mma.sync, and the tile.
fn c_dispatch_hbm(sms: u32, m: u32, n: u32, k: u32) -> BnbKernel {
    if m <= 3 {
        return BnbKernel::Simt;
    }
    let mma_blocks = m.div_ceil(32) * n.div_ceil(64);
    let undersubscribed = (m <= 8 && mma_blocks * 3 <= sms * 2) || (m == 4 && mma_blocks <= sms);
    let simt = undersubscribed
        || (m <= 16 && mma_blocks * 4 <= sms)
        || (m <= 32 && mma_blocks * 8 <= sms)
        || k % 64 != 0;
    if simt {
        BnbKernel::Simt
    } else {
        BnbKernel::Mma(select_tile_sm90(sms, m, n, k))
    }
}

/// The mma tile chosen on sm90 (`launch_gemm_4bit_sm80_m16n8k16`'s selection, HBM branches).
fn select_tile_sm90(sms: u32, m: u32, n: u32, k: u32) -> MmaTile {
    let (mb32, mb64, mb128) = (m.div_ceil(32), m.div_ceil(64), m.div_ceil(128));
    let (nb64, nb128) = (n.div_ceil(64), n.div_ceil(128));
    let (b32x64, b64x64, b128x128) = (mb32 * nb64, mb64 * nb64, mb128 * nb128);
    let mt128_row_waste = m % 128 != 0 && m % 128 <= 64;
    let mt128_adequate = b128x128 * 4 >= sms * 3;
    let mt32_boundary_waste = mb32 > mb64 && b64x64 >= sms;
    let use_mt32 = (m < 48 && !mt32_boundary_waste)
        || (m <= 128
            && !(mt32_boundary_waste && mt128_adequate)
            && b32x64 >= sms * 2
            && mb32 * 32 < mb64 * 64);
    let use_mt64 = !use_mt32 && (mt128_row_waste || !mt128_adequate) && b64x64 > b128x128;
    let mut mt = if use_mt32 {
        32
    } else if use_mt64 {
        64
    } else {
        128
    };
    if mt == 64
        && (b64x64 < sms / 2
            || (u64::from(k) * 2 < u64::from(n)
                && u64::from(n) * u64::from(k) < 4 * 1024 * 1024
                && b32x64 >= sms))
    {
        mt = 32;
    }
    let tile = match mt {
        32 => {
            let b32x256 = mb32 * n.div_ceil(256);
            let nt = if b32x256 * 4 >= sms * 3 && b32x256 <= sms {
                256
            } else {
                64
            };
            MmaTile {
                mt: 32,
                nt,
                kc: 128,
            }
        }
        64 => MmaTile {
            mt: 64,
            nt: 64,
            kc: 64,
        },
        _ => MmaTile {
            mt: 128,
            nt: if b128x128 >= sms { 128 } else { 64 },
            kc: 64,
        },
    };
    // A K chunk of 128 needs K % 128 == 0; HBM GPUs then take the 64 x 64 x 64 tile.
    if tile.kc == 128 && k % 128 != 0 {
        return MmaTile {
            mt: 64,
            nt: 64,
            kc: 64,
        };
    }
    tile
}

#[cfg(test)]
mod tests {
    use super::*;

    const H200: (u32, u32) = (9, 0);
    const SMS: u32 = 132;

    /// The kernels bitsandbytes 0.50.2 ran on an H200 for llama-3.1-8b's layers, read from the
    /// torch profiler (docs/ACCURACY.md, "NF4 and bitsandbytes";
    /// benches/gpu-results/calibrate-h200.md).
    #[test]
    fn llama_layers_on_an_h200_take_the_kernels_the_profiler_showed() {
        let mma = |mt, nt, kc| Some(BnbKernel::Mma(MmaTile { mt, nt, kc }));
        let d = |m, n, k| dispatch(H200, SMS, m, n, k);
        // qkv_proj: mma.sync 32x64x128 at 16 tokens; dequantize + F.linear at 1024.
        assert_eq!(d(16, 6144, 4096), mma(32, 64, 128));
        assert_eq!(d(1024, 6144, 4096), Some(BnbKernel::DequantLinear));
        // o_proj, down_proj: dequantize + F.linear at 16 and 1024 tokens.
        for (n, k) in [(4096, 4096), (4096, 14336)] {
            assert_eq!(d(16, n, k), Some(BnbKernel::DequantLinear));
            assert_eq!(d(1024, n, k), Some(BnbKernel::DequantLinear));
        }
        // gate_up_proj: its fused kernel at 16 tokens (the 256-wide tile fills 112 of 132 SMs).
        assert_eq!(d(16, 28672, 4096), mma(32, 256, 128));
        // One token: its GEMV, every layer.
        for (n, k) in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)] {
            assert_eq!(d(1, n, k), Some(BnbKernel::Simt));
        }
    }

    #[test]
    fn thresholds_move_with_the_token_count() {
        let d = |m, n, k| dispatch(H200, SMS, m, n, k);
        // gate_up (448 column blocks >= 3 waves): its own kernel up to 64 tokens.
        assert!(matches!(d(64, 28672, 4096), Some(BnbKernel::Mma(_))));
        assert_eq!(d(65, 28672, 4096), Some(BnbKernel::DequantLinear));
        // qkv (96 blocks, 0.5-1 wave, K < N): up to 16 tokens.
        assert!(matches!(d(16, 6144, 4096), Some(BnbKernel::Mma(_))));
        assert_eq!(d(17, 6144, 4096), Some(BnbKernel::DequantLinear));
        // Up to 3 tokens always SIMT; 4 tokens SIMT while the mma grid would not fill the GPU.
        assert_eq!(d(3, 28672, 4096), Some(BnbKernel::Simt));
        assert_eq!(d(4, 4096, 4096), Some(BnbKernel::Simt));
        assert!(matches!(d(4, 28672, 4096), Some(BnbKernel::Mma(_))));
        // Above 1536 tokens always dequantize + F.linear, even for a small weight.
        assert_eq!(d(2048, 8192, 1024), Some(BnbKernel::DequantLinear));
    }

    #[test]
    fn every_tile_returned_over_a_sweep_is_built() {
        for m in 1..=1536 {
            for (n, k) in [
                (6144, 4096),
                (4096, 4096),
                (28672, 4096),
                (4096, 14336),
                (2048, 2048),
                (8192, 8192),
                (16384, 4096),
                (4096, 16384),
                (32768, 8192),
                (8192, 1024),
                (1024, 8192),
            ] {
                if let Some(BnbKernel::Mma(t)) = dispatch(H200, SMS, m, n, k) {
                    assert!(MMA_TILES.contains(&t), "{t:?} for m={m} n={n} k={k}");
                }
            }
        }
    }

    #[test]
    fn other_architectures_are_not_ported_and_priced_by_the_old_rule() {
        assert_eq!(dispatch((8, 0), 108, 16, 6144, 4096), None);
        assert_eq!(dispatch((8, 6), 82, 1, 6144, 4096), None);
        assert_eq!(priced((8, 6), 82, 4, 6144, 4096, 16), BnbKernel::Simt);
        assert_eq!(
            priced((8, 6), 82, 5, 6144, 4096, 16),
            BnbKernel::DequantLinear
        );
    }

    #[test]
    fn what_cardplan_cannot_run_falls_back_to_the_sequence() {
        // SIMT beyond the GEMV's 16 tokens: a small 1024 x 2048 layer at 24 tokens.
        assert_eq!(dispatch(H200, SMS, 24, 1024, 2048), Some(BnbKernel::Simt));
        assert_eq!(
            priced(H200, SMS, 24, 1024, 2048, 16),
            BnbKernel::DequantLinear
        );
        assert_eq!(priced(H200, SMS, 16, 1024, 2048, 16), BnbKernel::Simt);
    }
}
