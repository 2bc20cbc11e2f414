// FP8, INT4 W4A16 and LLM.int8() kernels of the calibrator.
// - FP8 activation quantization (per token, dynamic; per tensor, static scale) to e4m3, encoded by
//   hand (no cuda_fp8.h under NVRTC): round to nearest even, saturating at +-448.
// - W4A16: a Marlin-style kernel of our own. 4-bit weights (symmetric, zero 8, fp16 scale per group
//   of 128 input channels) in an mma-fragment layout (src/calibrate/lowbit.rs, `mma_pack`): per
//   16 k x 64 n block, lane l holds one uint4 with the B fragments of its 8 n8 tiles, so one 16-byte
//   load per lane feeds 8 mma.sync m16n8k16; dequantized in registers (nibble | 0x6400 as half =
//   1024 + q), fp32 accumulation, split over k across warps and CTAs.
// - LLM.int8() as bitsandbytes 0.50 runs it: row-wise int8 quantization of x with the outlier
//   columns zeroed, the outlier columns of x gathered, the matching int8 weight columns
//   dequantized, then (on the host side) int8 GEMM, dequantize and an fp16 GEMM of the outliers.
#include <cuda_fp16.h>

__device__ __forceinline__ float qblock_max(float v, float* red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    if (l == 0) red[w] = v;
    __syncthreads();
    if (w == 0) {
        v = l < (int)(blockDim.x >> 5) ? red[l] : 0.f;
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
        if (l == 0) red[0] = v;
    }
    __syncthreads();
    const float r = red[0];
    __syncthreads();
    return r;
}

// float -> e4m3 (OCP E4M3FN), round to nearest even, saturating; as lowbit::e4m3_encode.
__device__ __forceinline__ unsigned int f2e4m3(float x) {
    const unsigned int sign = (__float_as_uint(x) >> 24) & 0x80u;
    const float a = fminf(fabsf(x), 448.f);
    if (a < 0.015625f) return sign | (unsigned int)__float2int_rn(a * 512.f);
    const unsigned int b = __float_as_uint(a);
    int e = (int)((b >> 23) & 0xffu) - 127;
    unsigned int keep = (b >> 20) & 7u;
    const unsigned int rest = b & 0xfffffu;
    if (rest > 0x80000u || (rest == 0x80000u && (keep & 1u))) ++keep;
    if (keep == 8u) { keep = 0u; ++e; }
    if (e > 8 || (e == 8 && keep == 7u)) return sign | 0x7eu;
    return sign | ((unsigned int)(e + 7) << 3) | keep;
}

// Per-token dynamic FP8: sx[t] = absmax / 448, xq = e4m3(x / sx). Grid T, 256 threads, k % 8 == 0.
extern "C" __global__ void quant_fp8_per_token(const half* __restrict__ x, unsigned char* __restrict__ xq,
                                               float* __restrict__ sx, int k) {
    __shared__ float red[32];
    const size_t t = blockIdx.x;
    const uint4* xr = reinterpret_cast<const uint4*>(x + t * k);
    float m = 0.f;
    for (int i = threadIdx.x; i < k / 8; i += blockDim.x) {
        const uint4 v = xr[i];
        const half2* h = reinterpret_cast<const half2*>(&v);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const float2 f = __half22float2(h[e]);
            m = fmaxf(m, fmaxf(fabsf(f.x), fabsf(f.y)));
        }
    }
    m = qblock_max(m, red);
    const float s = m > 0.f ? m / 448.f : 1.f;
    const float inv = 1.f / s;
    if (threadIdx.x == 0) sx[t] = s;
    uint2* qr = reinterpret_cast<uint2*>(xq + t * k);
    for (int i = threadIdx.x; i < k / 8; i += blockDim.x) {
        const uint4 v = xr[i];
        const half2* h = reinterpret_cast<const half2*>(&v);
        unsigned int w[2] = {0u, 0u};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const float2 f = __half22float2(h[e]);
            w[e >> 1] |= (f2e4m3(f.x * inv) | (f2e4m3(f.y * inv) << 8)) << (16 * (e & 1));
        }
        qr[i] = make_uint2(w[0], w[1]);
    }
}

// Per-tensor static FP8: xq = e4m3(x * inv_scale) over n values (n % 8 == 0).
extern "C" __global__ void quant_fp8_tensor(const half* __restrict__ x, unsigned char* __restrict__ xq,
                                            float inv_scale, unsigned long long n) {
    const uint4* xr = reinterpret_cast<const uint4*>(x);
    uint2* qr = reinterpret_cast<uint2*>(xq);
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n / 8;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const uint4 v = xr[i];
        const half2* h = reinterpret_cast<const half2*>(&v);
        unsigned int w[2] = {0u, 0u};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const float2 f = __half22float2(h[e]);
            w[e >> 1] |= (f2e4m3(f.x * inv_scale) | (f2e4m3(f.y * inv_scale) << 8)) << (16 * (e & 1));
        }
        qr[i] = make_uint2(w[0], w[1]);
    }
}

extern "C" __global__ void zero_f32(float* p, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        p[i] = 0.f;
}

extern "C" __global__ void f32_to_f16(const float* __restrict__ a, half* __restrict__ y, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        y[i] = __float2half(a[i]);
}

// ---- W4A16 -------------------------------------------------------------------------------------

__device__ __forceinline__ void mma16816(float* c, const unsigned int* a, unsigned int b0, unsigned int b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two 4-bit codes (bits 0-3 and 16-19 of v after masking) to half2 (q - 8) * s.
__device__ __forceinline__ unsigned int deq2(unsigned int v, half2 s) {
    const unsigned int h = (v & 0x000f000fu) | 0x64006400u;  // 1024 + q, as two halves
    half2 r = __hsub2(*reinterpret_cast<const half2*>(&h), __float2half2_rn(1032.f));
    r = __hmul2(r, s);
    return *reinterpret_cast<unsigned int*>(&r);
}

#define W4_WARPS 4
#define W4_UNROLL 4

// y[T x n] = x[T x k] . W^T, W as packed by lowbit::mma_pack: wp[(kb * (n/64) + nb) * 32 + lane]
// (uint4), scales sp[(g * (n/64) + nb) * 8 + lane/4] (uint4 of 8 halves: tile j's scale for column
// nb*64 + 8j + lane/4; the 4 lanes of a column read the same 16 bytes). Grid (n/64, ceil(T / (16*MT)), splits); 4 warps; the CTA's k16 steps are
// dealt to warps round-robin. splits > 1: fp32 atomics into acc (zeroed before), else fp16 into y.
template <int MT>
__device__ void w4a16_body(const half* __restrict__ x, const uint4* __restrict__ wp, const uint4* __restrict__ sp,
                           half* __restrict__ y, float* __restrict__ acc, int T, int n, int k, int steps_per_split) {
    __shared__ float red[MT * 16][64];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nb = blockIdx.x, nbs = n / 64;
    const int m0 = blockIdx.y * 16 * MT;
    const int ksteps = k / 16;
    const int s0 = blockIdx.z * steps_per_split, s1 = min(ksteps, s0 + steps_per_split);
    for (int i = threadIdx.x; i < MT * 16 * 64; i += blockDim.x) (&red[0][0])[i] = 0.f;
    __syncthreads();
    float c[MT][8][4];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) c[m][j][e] = 0.f;
    const int g = lane >> 2, q = lane & 3;
    for (int s = s0 + warp; s < s1; s += W4_WARPS * W4_UNROLL) {
        uint4 wv[W4_UNROLL];
#pragma unroll
        for (int u = 0; u < W4_UNROLL; ++u) {
            const int st = s + u * W4_WARPS;
            wv[u] = st < s1 ? wp[((size_t)st * nbs + nb) * 32 + lane] : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < W4_UNROLL; ++u) {
            const int st = s + u * W4_WARPS;
            if (st >= s1) break;
            const uint4 sv = sp[((size_t)(st / 8) * nbs + nb) * 8 + (lane >> 2)];
            const half* sh = reinterpret_cast<const half*>(&sv);
            const unsigned int* ww = reinterpret_cast<const unsigned int*>(&wv[u]);
            unsigned int a[MT][4];
            const int kc = st * 16 + 2 * q;
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                const int r0 = m0 + m * 16 + g, r1 = r0 + 8;
                const unsigned int* x0 = reinterpret_cast<const unsigned int*>(x + (size_t)r0 * k + kc);
                const unsigned int* x1 = reinterpret_cast<const unsigned int*>(x + (size_t)r1 * k + kc);
                a[m][0] = r0 < T ? x0[0] : 0u;
                a[m][1] = r1 < T ? x1[0] : 0u;
                a[m][2] = r0 < T ? x0[4] : 0u;
                a[m][3] = r1 < T ? x1[4] : 0u;
            }
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                // word j/2, nibbles 4*(j&1)..: [k=2q, 2q+1, 2q+8, 2q+9]
                const unsigned int v = (ww[j >> 1] >> (16 * (j & 1))) & 0xffffu;
                const half2 s2 = __half2half2(sh[j]);
                const unsigned int b0 = deq2(v | (v << 12), s2);        // nibbles 0,1 -> halves
                const unsigned int b1 = deq2((v >> 8) | (v << 4), s2);  // nibbles 2,3
#pragma unroll
                for (int m = 0; m < MT; ++m) mma16816(c[m][j], a[m], b0, b1);
            }
        }
    }
    // reduce the warps' partial sums in shared memory
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int col = 8 * j + 2 * q, row = m * 16 + g;
            atomicAdd(&red[row][col], c[m][j][0]);
            atomicAdd(&red[row][col + 1], c[m][j][1]);
            atomicAdd(&red[row + 8][col], c[m][j][2]);
            atomicAdd(&red[row + 8][col + 1], c[m][j][3]);
        }
    __syncthreads();
    for (int i = threadIdx.x; i < MT * 16 * 64; i += blockDim.x) {
        const int row = m0 + i / 64, col = nb * 64 + i % 64;
        if (row >= T) continue;
        const float v = (&red[0][0])[i];
        if (gridDim.z > 1) atomicAdd(&acc[(size_t)row * n + col], v);
        else y[(size_t)row * n + col] = __float2half(v);
    }
}

#define W4A16_KERNEL(MT)                                                                               \
    extern "C" __global__ void __launch_bounds__(W4_WARPS * 32) w4a16_mma_m##MT(                        \
        const half* x, const uint4* wp, const uint4* sp, half* y, float* acc, int T, int n, int k,     \
        int steps_per_split) {                                                                         \
        w4a16_body<MT>(x, wp, sp, y, acc, T, n, k, steps_per_split);                                   \
    }
W4A16_KERNEL(1)
W4A16_KERNEL(2)
W4A16_KERNEL(4)

// ---- W4A16 GEMV (T <= 64): a memory-bound stream over the packed weights ---------------------
// Same layout as w4a16_mma. A warp takes 8 consecutive k16 steps of one 64-column block (one
// group of 128 channels: one scale load), issues its 8 x 16-byte loads at once (streamed past L1),
// then dequantizes in registers and runs the mma.sync tiles. A CTA (4 warps) covers
// `gps` (a multiple of 4) groups of one block; the CTAs of one block along k add their fp32 sums
// into `acc` and the last to finish (a counter per block) writes y and clears acc and its counter,
// so one launch does the whole product and leaves acc/cnt zeroed for the next call.

#define GV_WARPS 4

__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

template <int MT>
__device__ __forceinline__ void gv_group(const half* __restrict__ x, const uint4* __restrict__ wp,
                                         const uint4* __restrict__ sp, float (&c)[MT][8][4], int grp,
                                         int nb, int nbs, int T, int k) {
    const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    uint4 wv[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) wv[u] = ld_stream(&wp[((size_t)(grp * 8 + u) * nbs + nb) * 32 + lane]);
    const uint4 sv = __ldg(&sp[((size_t)grp * nbs + nb) * 8 + (lane >> 2)]);
    const half* sh = reinterpret_cast<const half*>(&sv);
#pragma unroll
    for (int u = 0; u < 8; ++u) {
        const int kc = (grp * 8 + u) * 16 + 2 * q;
        unsigned int a[MT][4];
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            const int r0 = m * 16 + g, r1 = r0 + 8;
            const unsigned int* x0 = reinterpret_cast<const unsigned int*>(x + (size_t)r0 * k + kc);
            const unsigned int* x1 = reinterpret_cast<const unsigned int*>(x + (size_t)r1 * k + kc);
            a[m][0] = r0 < T ? __ldg(x0) : 0u;
            a[m][1] = r1 < T ? __ldg(x1) : 0u;
            a[m][2] = r0 < T ? __ldg(x0 + 4) : 0u;
            a[m][3] = r1 < T ? __ldg(x1 + 4) : 0u;
        }
        const unsigned int* ww = reinterpret_cast<const unsigned int*>(&wv[u]);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const unsigned int v = (ww[j >> 1] >> (16 * (j & 1))) & 0xffffu;
            const half2 s2 = __half2half2(sh[j]);
            const unsigned int b0 = deq2(v | (v << 12), s2);
            const unsigned int b1 = deq2((v >> 8) | (v << 4), s2);
#pragma unroll
            for (int m = 0; m < MT; ++m) mma16816(c[m][j], a[m], b0, b1);
        }
    }
}

// y[T x n] = x . W^T for T <= 16 * MT. Grid (n/64, splits), 128 threads; CTA z takes groups
// [z*gps, min(k/128, (z+1)*gps)). acc [T x n] fp32 and cnt [n/64] must start zeroed (they are
// left zeroed).
template <int MT>
__device__ void w4a16_gemv_body(const half* __restrict__ x, const uint4* __restrict__ wp,
                                const uint4* __restrict__ sp, half* __restrict__ y, float* __restrict__ acc,
                                unsigned int* __restrict__ cnt, int T, int n, int k, int gps) {
    __shared__ float red[MT * 16][64];
    __shared__ int last;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int nb = blockIdx.x, nbs = n / 64, groups = k / 128;
    const int g0 = blockIdx.y * gps, g1 = min(groups, g0 + gps);
    for (int i = threadIdx.x; i < MT * 16 * 64; i += blockDim.x) (&red[0][0])[i] = 0.f;
    float c[MT][8][4];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) c[m][j][e] = 0.f;
    for (int grp = g0 + warp; grp < g1; grp += GV_WARPS) gv_group<MT>(x, wp, sp, c, grp, nb, nbs, T, k);
    __syncthreads();
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int col = 8 * j + 2 * q, row = m * 16 + g;
            if (row < T) {
                atomicAdd(&red[row][col], c[m][j][0]);
                atomicAdd(&red[row][col + 1], c[m][j][1]);
            }
            if (row + 8 < T) {
                atomicAdd(&red[row + 8][col], c[m][j][2]);
                atomicAdd(&red[row + 8][col + 1], c[m][j][3]);
            }
        }
    __syncthreads();
    const int outs = T * 64;
    if (gridDim.y == 1) {
        for (int i = threadIdx.x; i < outs; i += blockDim.x)
            y[(size_t)(i / 64) * n + nb * 64 + i % 64] = __float2half((&red[0][0])[i]);
        return;
    }
    for (int i = threadIdx.x; i < outs; i += blockDim.x)
        atomicAdd(&acc[(size_t)(i / 64) * n + nb * 64 + i % 64], (&red[0][0])[i]);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&cnt[nb], 1u) == gridDim.y - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int i = threadIdx.x; i < outs; i += blockDim.x) {
        const size_t o = (size_t)(i / 64) * n + nb * 64 + i % 64;
        y[o] = __float2half(__ldcg(&acc[o]));
        acc[o] = 0.f;
    }
    if (threadIdx.x == 0) cnt[nb] = 0u;
}

#define W4A16_GEMV_KERNEL(MT)                                                                          \
    extern "C" __global__ void __launch_bounds__(GV_WARPS * 32) w4a16_gemv_m##MT(                       \
        const half* x, const uint4* wp, const uint4* sp, half* y, float* acc, unsigned int* cnt, int T,  \
        int n, int k, int gps) {                                                                       \
        w4a16_gemv_body<MT>(x, wp, sp, y, acc, cnt, T, n, k, gps);                                     \
    }
W4A16_GEMV_KERNEL(1)
W4A16_GEMV_KERNEL(2)
W4A16_GEMV_KERNEL(4)

// The packed weights to fp16 W [n x k] (vLLM's AWQ path at large T: dequantize, then an fp16
// GEMM). One CTA (8 warps) per (group of 128 channels, 64-column block): warp w dequantizes step
// 8*grp + w (one 16-byte load per lane) into a shared tile [64][128 + 8 pad], then the CTA writes
// the tile as 16-byte stores, each row 256 contiguous bytes. Grid (n/64, k/128).
extern "C" __global__ __launch_bounds__(256) void w4_dequant(const uint4* __restrict__ wp, const uint4* __restrict__ sp,
                                                             half* __restrict__ w, int n, int k) {
    __shared__ __align__(16) half tile[64][136];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int nb = blockIdx.x, grp = blockIdx.y, nbs = n / 64;
    const uint4 wv = ld_stream(&wp[((size_t)(grp * 8 + warp) * nbs + nb) * 32 + lane]);
    const uint4 sv = __ldg(&sp[((size_t)grp * nbs + nb) * 8 + g]);
    const unsigned int* ww = reinterpret_cast<const unsigned int*>(&wv);
    const half* sh = reinterpret_cast<const half*>(&sv);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const unsigned int v = (ww[j >> 1] >> (16 * (j & 1))) & 0xffffu;
        const half2 s2 = __half2half2(sh[j]);
        unsigned int* row = reinterpret_cast<unsigned int*>(&tile[8 * j + g][warp * 16]);
        row[q] = deq2(v | (v << 12), s2);
        row[q + 4] = deq2((v >> 8) | (v << 4), s2);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 64 * 16; i += blockDim.x) {
        const int r = i >> 4, ch = i & 15;
        const uint4 v = *reinterpret_cast<const uint4*>(&tile[r][ch * 8]);
        *reinterpret_cast<uint4*>(w + (size_t)(nb * 64 + r) * k + grp * 128 + ch * 8) = v;
    }
}

// ---- LLM.int8() as bitsandbytes 0.50.2 runs it, launch for launch --------------------------------
// int8_vectorwise_quant(A, threshold): `outliers = A.abs() >= t` (two elementwise kernels),
// `outliers.any()` (a reduction, read on the host), `argwhere(outliers.any(dim=0))` (a column
// reduction, then nonzero: a count read on the host and a compaction), the row-wise quantize
// kernel, and for T > 1 `out_row[:, cols] = 0`. The rest (IMMA, dequantize, the outlier
// columns' fp16 product) is in src/calibrate/cuda/quant_gemm.rs.

extern "C" __global__ void bnb_abs(const half2* __restrict__ a, half2* __restrict__ o, unsigned long long n2) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n2;
         i += (unsigned long long)gridDim.x * blockDim.x)
        o[i] = __habs2(a[i]);
}

extern "C" __global__ void bnb_ge(const half* __restrict__ a, unsigned char* __restrict__ m, float t,
                                  unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        m[i] = __half2float(a[i]) >= t;
}

// flag[0] = any(m[0..n)); a block's answer to part[block], the last block to finish combines them
// and clears the counter (left zeroed).
extern "C" __global__ void bnb_any(const unsigned char* __restrict__ m, unsigned long long n,
                                   unsigned int* __restrict__ part, unsigned int* __restrict__ counter,
                                   unsigned char* __restrict__ flag) {
    __shared__ int last;
    int any = 0;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        any |= m[i];
    any = __syncthreads_or(any);
    if (threadIdx.x == 0) {
        part[blockIdx.x] = any;
        __threadfence();
        last = atomicAdd(counter, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    int all = 0;
    for (unsigned int b = threadIdx.x; b < gridDim.x; b += blockDim.x) all |= __ldcg(&part[b]);
    all = __syncthreads_or(all);
    if (threadIdx.x == 0) {
        flag[0] = all ? 1 : 0;
        *counter = 0u;
    }
}

// colany[c] |= any(m[r][c]) over a slice of rows per block (colany zeroed before). Grid
// (k/256, row slices).
extern "C" __global__ void bnb_any_dim0(const unsigned char* __restrict__ m, unsigned int* __restrict__ colany,
                                        int T, int k, int rows_per_block) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= k) return;
    const int r0 = blockIdx.y * rows_per_block, r1 = min(T, r0 + rows_per_block);
    unsigned int any = 0;
    for (int r = r0; r < r1; ++r) any |= m[(size_t)r * k + c];
    if (any) atomicOr(&colany[c], 1u);
}

// count[0] = number of nonzero colany (nonzero's first pass). One block of 1024.
extern "C" __global__ void bnb_count(const unsigned int* __restrict__ colany, int k, unsigned int* __restrict__ count) {
    int s = 0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) s += colany[i] != 0;
    __shared__ int tot;
    if (threadIdx.x == 0) tot = 0;
    __syncthreads();
    atomicAdd(&tot, s);
    __syncthreads();
    if (threadIdx.x == 0) count[0] = (unsigned int)tot;
}

// cols = the indices of the nonzero colany, ascending (nonzero's compaction). One block of 1024.
extern "C" __global__ void bnb_select(const unsigned int* __restrict__ colany, int k, int* __restrict__ cols) {
    __shared__ int warp_sum[32];
    __shared__ int base;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (threadIdx.x == 0) base = 0;
    __syncthreads();
    for (int c0 = 0; c0 < k; c0 += blockDim.x) {
        const int c = c0 + threadIdx.x;
        const bool f = c < k && colany[c] != 0;
        const unsigned int bal = __ballot_sync(0xffffffffu, f);
        if (lane == 0) warp_sum[warp] = __popc(bal);
        __syncthreads();
        int before = base;
        for (int w = 0; w < warp; ++w) before += warp_sum[w];
        if (f) cols[before + __popc(bal & ((1u << lane) - 1u))] = c;
        __syncthreads();
        if (threadIdx.x == 0) {
            int s = 0;
            for (int w = 0; w < (int)(blockDim.x >> 5); ++w) s += warp_sum[w];
            base += s;
        }
        __syncthreads();
    }
}

// bitsandbytes' kInt8VectorQuant with a threshold: per row, absmax over |x| < t; those values
// quantized to round(x * 127 / absmax), the outliers themselves 0; sx = absmax / 127 (the
// dequantize kernel's scale). Grid T, 256 threads.
extern "C" __global__ void bnb_vector_quant(const half* __restrict__ x, signed char* __restrict__ xq,
                                           float* __restrict__ sx, float t, int k) {
    __shared__ float red[32];
    const size_t r = blockIdx.x;
    const half* xr = x + r * k;
    float m = 0.f;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        const float v = fabsf(__half2float(xr[i]));
        if (v < t) m = fmaxf(m, v);
    }
    m = qblock_max(m, red);
    const float inv = m > 0.f ? 127.f / m : 0.f;
    if (threadIdx.x == 0) sx[r] = m / 127.f;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        const float v = __half2float(xr[i]);
        xq[r * k + i] = fabsf(v) < t ? (signed char)max(-127, min(127, __float2int_rn(v * inv))) : (signed char)0;
    }
}

// out_row[:, cols] = 0 (index_put_ over T x nc).
extern "C" __global__ void bnb_zero_cols(signed char* __restrict__ xq, const int* __restrict__ cols, int T, int k, int nc) {
    const size_t total = (size_t)T * nc;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        xq[(i / nc) * k + cols[i % nc]] = 0;
}

// xs[T x nc] = x[:, cols] (bitsandbytes' subA = A[:, outlier_cols]).
extern "C" __global__ void gather_cols(const half* __restrict__ x, const int* __restrict__ cols,
                                       half* __restrict__ xs, int T, int k, int nc) {
    const size_t total = (size_t)T * nc;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        xs[i] = x[(i / nc) * k + cols[i % nc]];
}

// o[n x nc] = CB[:, cols] (int8 gather).
extern "C" __global__ void bnb_gather_i8(const signed char* __restrict__ cb, const int* __restrict__ cols,
                                         signed char* __restrict__ o, int n, int k, int nc) {
    const size_t total = (size_t)n * nc;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        o[i] = cb[(i / nc) * k + cols[i % nc]];
}

// f[n x nc] = o * scb[row] (int8 x f32 -> f32: `outliers.t() * SCB`).
extern "C" __global__ void bnb_mul_rows(const signed char* __restrict__ o, const float* __restrict__ scb,
                                        float* __restrict__ f, int n, int nc) {
    const size_t total = (size_t)n * nc;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        f[i] = (float)o[i] * scb[i / nc];
}

// f *= s (`* 7.874015718698502e-3`).
extern "C" __global__ void bnb_scale(float* __restrict__ f, float s, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        f[i] *= s;
}

// x[:, cols] = +-8 (sign by (row + col) parity): the outlier features of the timing input, as
// scripts/gpu/quant_ref.py plants them for bitsandbytes.
extern "C" __global__ void bnb_plant_outliers(half* __restrict__ x, const int* __restrict__ cols, int T, int k, int nc) {
    const size_t total = (size_t)T * nc;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int r = (int)(i / nc), c = cols[i % nc];
        x[(size_t)r * k + c] = __float2half((r + c) % 2 == 0 ? 8.f : -8.f);
    }
}
