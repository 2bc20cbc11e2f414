// Fused NF4-dequantize + tensor-core GEMM: y[M, N] = x[M, K] . W[N, K]^T (fp16 in/out, fp32
// accumulate). A stand-in with the work split and pipeline of bitsandbytes 0.50.2's mma.sync
// 4-bit kernel (gemm_4bit_sm80_m16n8k16), used where bitsandbytes' dispatch runs that kernel, so
// that its time is what a bitsandbytes user pays. It deliberately keeps that kernel's structure
// (synchronous loads, shuffle-table dequantize into shared memory, two buffers with the next
// tile loaded before the current one is computed) rather than being tuned further.
// Weight storage as in nf4.cu: w[e / 2] holds codes of elements e (high nibble, e even) and e + 1;
// absmax of block b = e / 64 is code[absmax_q[b]] * absmax2[b / 256] + offset.
// Requires K % KC == 0 and K % blocksize == 0 (blocksize 64, a power of two); 256 threads per CTA, grid (ceil(M/MT), ceil(N/NT)),
// dynamic shared memory 2 * (MT + NT) * (KC + 8) * 2 bytes.
#include <cuda_fp16.h>

namespace {

__constant__ float nf4mma_lut[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

__device__ __forceinline__ uint4 nf4mma_ld_ca_v4(const void* p) {
    uint4 r;
    asm volatile("ld.global.ca.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

__device__ __forceinline__ uint4 nf4mma_ld_cs_v4(const void* p) {
    uint4 r;
    asm volatile("ld.global.cs.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

__device__ __forceinline__ unsigned nf4mma_ld_nc_u8(const unsigned char* p) {
    unsigned r;
    asm volatile("ld.global.nc.u8 %0, [%1];" : "=r"(r) : "l"(p));
    return r;
}

__device__ __forceinline__ float nf4mma_ld_nc_f32(const float* p) {
    float r;
    asm volatile("ld.global.nc.f32 %0, [%1];" : "=f"(r) : "l"(p));
    return r;
}

__device__ __forceinline__ uint2 nf4mma_ld_cs_v2(const void* p) {
    uint2 r;
    asm volatile("ld.global.cs.v2.u32 {%0, %1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
    return r;
}

__device__ __forceinline__ unsigned nf4mma_smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Four 8x8 b16 matrices; lanes 8j..8j+7 give the row addresses of matrix j, register j gets it.
__device__ __forceinline__ void nf4mma_ldmatrix_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void nf4mma_ldmatrix_x2(unsigned (&r)[2], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void nf4mma_mma(float (&d)[4], const unsigned (&a)[4],
                                           const unsigned (&b)[2]) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

extern __shared__ __align__(16) unsigned char nf4mma_smem[];

template <int MT, int NT, int KC>
struct Nf4Mma {
    static constexpr int THREADS = 256;
    static constexpr int LDS = KC + 8;  // smem row stride in halves (16-byte aligned rows)
    static constexpr int WARPS_M = MT <= 32 ? 2 : 4;
    static constexpr int WARPS_N = 8 / WARPS_M;
    static constexpr int WARP_M = MT / WARPS_M;
    static constexpr int WARP_N = NT / WARPS_N;
    static constexpr int FM = WARP_M / 16;  // m16 fragments per warp
    static constexpr int FN = WARP_N / 8;   // n8 fragments per warp
    static constexpr int A_VPT = MT * KC / 8 / THREADS;      // 16-byte x vectors per thread
    static constexpr int B_BYTES = NT * (KC / 2) / THREADS;  // packed weight bytes per thread
    static constexpr int BUF = (MT + NT) * LDS;              // halves per buffer

    static_assert(WARP_M % 16 == 0 && WARP_N % 8 == 0, "tile does not split into m16n8 fragments");
    static_assert(KC % 16 == 0 && A_VPT >= 1 && A_VPT * THREADS * 8 == MT * KC, "bad A split");
    static_assert(B_BYTES == 8 || B_BYTES == 16 || B_BYTES == 32 || B_BYTES == 64, "bad B split");
    static_assert((KC / 2) % B_BYTES == 0, "a thread's bytes must lie in one weight row");

    // Loads x columns [k_iter*KC, +KC) and dequantizes W rows' same columns into buffer `buf`.
    static __device__ __forceinline__ void load_tile(
        half* __restrict__ sm, const half* __restrict__ x, const unsigned char* __restrict__ w,
        const unsigned char* __restrict__ absmax_q, const float* __restrict__ absmax2,
        const float* __restrict__ code, float offset, float lut, int m0, int n0, int M, int N,
        int K, int k_iter, int buf, int blocksize) {
        half* As = sm + buf * BUF;
        half* Bs = As + MT * LDS;
        const int k0 = k_iter * KC;
        // The absmax code of this thread's weight bytes and its second-level scale first
        // (bitsandbytes fetches the code ahead of its weight loads, after its A loads): the
        // code's table lookup depends on it. Left to the compiler, the load sank below the A
        // stores and cost a second memory latency per tile (qkv at T = 16 on the H200: 61.5 us,
        // 49.0 us with these loads issued here; bitsandbytes' own kernel 47.4 us). The indices
        // are worked out here apart from B's below on purpose: sharing them read 58.4 us.
        unsigned char q_code = 0;
        float q_scale = 0.f;
        {
            const int bs0 = threadIdx.x * B_BYTES;
            const int nn = n0 + bs0 / (KC / 2);
            if (nn < N) {
                const int bl2 = __ffs(blocksize) - 1;
                const size_t bk = (size_t)nn * (K >> bl2) + ((k0 + (bs0 % (KC / 2)) * 2) >> bl2);
                q_code = (unsigned char)nf4mma_ld_nc_u8(absmax_q + bk);
                q_scale = nf4mma_ld_nc_f32(absmax2 + (bk >> 8));
            }
        }

        // A: plain (cached) 16-byte loads into registers, zeros for rows >= M.
        uint4 av[A_VPT];
#pragma unroll
        for (int j = 0; j < A_VPT; ++j) {
            const int v = threadIdx.x * A_VPT + j;
            const int row = v / (KC / 8), col = (v % (KC / 8)) * 8;
            if (m0 + row < M)
                av[j] = nf4mma_ld_ca_v4(x + (size_t)(m0 + row) * K + k0 + col);
            else
                av[j] = make_uint4(0u, 0u, 0u, 0u);
        }

        // B: B_BYTES consecutive packed bytes of one weight row per thread.
        const int byte_start = threadIdx.x * B_BYTES;
        const int n_local = byte_start / (KC / 2);
        const int kk = (byte_start % (KC / 2)) * 2;  // element offset within the chunk
        const int n = n0 + n_local;
        const bool n_ok = n < N;
        // The block size is a run-time argument, as in bitsandbytes: the compiler cannot fold
        // the block arithmetic or know where a thread's bytes cross a block.
        const int bs_log2 = __ffs(blocksize) - 1;
        unsigned words[B_BYTES / 4];
        if (n_ok) {
            const unsigned char* wp = w + (size_t)n * (K >> 1) + ((k0 + kk) >> 1);
            if constexpr (B_BYTES == 8) {
                const uint2 p = nf4mma_ld_cs_v2(wp);
                words[0] = p.x;
                words[1] = p.y;
            } else {
#pragma unroll
                for (int i = 0; i < B_BYTES / 16; ++i) {
                    const uint4 p = nf4mma_ld_cs_v4(wp + 16 * i);
                    words[4 * i] = p.x;
                    words[4 * i + 1] = p.y;
                    words[4 * i + 2] = p.z;
                    words[4 * i + 3] = p.w;
                }
            }
        } else {
#pragma unroll
            for (int i = 0; i < B_BYTES / 4; ++i) words[i] = 0u;
        }

#pragma unroll
        for (int j = 0; j < A_VPT; ++j) {
            const int v = threadIdx.x * A_VPT + j;
            const int row = v / (KC / 8), col = (v % (KC / 8)) * 8;
            *reinterpret_cast<uint4*>(As + row * LDS + col) = av[j];
        }

        // Rows >= N: absmax 0, so every value is (+-)0. All lanes run the shuffles.
        float am = n_ok ? code[q_code] * q_scale + offset : 0.f;
        half2* bp = reinterpret_cast<half2*>(Bs + n_local * LDS + kk);
#pragma unroll
        for (int i = 0; i < B_BYTES; ++i) {
            // Wide per-thread ranges (32 or 64 bytes) re-check the block at every byte, with the
            // new block's absmax fetched when one starts (bitsandbytes' 32- and 64-byte paths).
            if (B_BYTES >= 32 && i > 0 && ((2 * i) & (blocksize - 1)) == 0 && n_ok) {
                const size_t b = (size_t)n * (K >> bs_log2) + ((k0 + kk + 2 * i) >> bs_log2);
                am = __ldg(&code[__ldg(&absmax_q[b])]) * __ldg(&absmax2[b >> 8]) + offset;
            }
            const unsigned byte = (words[i / 4] >> (8 * (i % 4))) & 0xffu;
            const float hi = __shfl_sync(0xffffffffu, lut, (int)(byte >> 4));
            const float lo = __shfl_sync(0xffffffffu, lut, (int)(byte & 15u));
            bp[i] = __floats2half2_rn(hi * am, lo * am);  // elements kk+2i (hi), kk+2i+1 (lo)
        }
    }

    static __device__ __forceinline__ void compute(const half* __restrict__ sm, int buf,
                                                   int warp_m, int warp_n, int lane,
                                                   float (&acc)[FM][FN][4]) {
        const half* As = sm + buf * BUF + warp_m * WARP_M * LDS;
        const half* Bs = sm + buf * BUF + MT * LDS + warp_n * WARP_N * LDS;
        // A x4: lanes 0-7 rows 0-7 / k 0-7, 8-15 rows 8-15 / k 0-7, 16-23 rows 0-7 / k 8-15,
        // 24-31 rows 8-15 / k 8-15 -> registers a0..a3 of the m16n8k16 A fragment.
        const int a_row = lane & 15, a_col = (lane >> 4) * 8;
        // B x2 from [n][k]: lanes 0-7 n 0-7 / k 0-7, lanes 8-15 n 0-7 / k 8-15 -> b0, b1
        // (lanes 16-31 repeat 0-15; their addresses are not used by .x2).
        const int b_row = lane & 7, b_col = ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int ks = 0; ks < KC; ks += 16) {
            unsigned a[FM][4];
#pragma unroll
            for (int fm = 0; fm < FM; ++fm)
                nf4mma_ldmatrix_x4(a[fm],
                                   nf4mma_smem_addr(As + (fm * 16 + a_row) * LDS + ks + a_col));
#pragma unroll
            for (int fn = 0; fn < FN; ++fn) {
                unsigned b[2];
                nf4mma_ldmatrix_x2(b, nf4mma_smem_addr(Bs + (fn * 8 + b_row) * LDS + ks + b_col));
#pragma unroll
                for (int fm = 0; fm < FM; ++fm) nf4mma_mma(acc[fm][fn], a[fm], b);
            }
        }
    }

    static __device__ __forceinline__ void run(const half* __restrict__ x,
                                               const unsigned char* __restrict__ w,
                                               const unsigned char* __restrict__ absmax_q,
                                               const float* __restrict__ absmax2,
                                               const float* __restrict__ code, float offset,
                                               half* __restrict__ y, int M, int N, int K,
                                               int blocksize) {
        half* sm = reinterpret_cast<half*>(nf4mma_smem);
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
        const int m0 = blockIdx.x * MT, n0 = blockIdx.y * NT;
        const float lut = lane < 16 ? nf4mma_lut[lane] : 0.f;

        float acc[FM][FN][4];
#pragma unroll
        for (int fm = 0; fm < FM; ++fm)
#pragma unroll
            for (int fn = 0; fn < FN; ++fn)
#pragma unroll
                for (int r = 0; r < 4; ++r) acc[fm][fn][r] = 0.f;

        const int iters = K / KC;
        load_tile(sm, x, w, absmax_q, absmax2, code, offset, lut, m0, n0, M, N, K, 0, 0,
                  blocksize);
        __syncthreads();
        for (int k_iter = 0; k_iter < iters; ++k_iter) {
            const int cur = k_iter & 1;
            if (k_iter + 1 < iters)
                load_tile(sm, x, w, absmax_q, absmax2, code, offset, lut, m0, n0, M, N, K,
                          k_iter + 1, cur ^ 1, blocksize);
            compute(sm, cur, warp_m, warp_n, lane, acc);
            __syncthreads();
        }

        // Accumulator of m16n8: c0, c1 at (lane / 4, 2 * (lane % 4) + {0, 1}); c2, c3 at row + 8.
#pragma unroll
        for (int fm = 0; fm < FM; ++fm) {
#pragma unroll
            for (int fn = 0; fn < FN; ++fn) {
                const int col = n0 + warp_n * WARP_N + fn * 8 + 2 * (lane & 3);
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int row = m0 + warp_m * WARP_M + fm * 16 + (lane >> 2) + 8 * h;
                    if (row >= M) continue;
                    half* yp = y + (size_t)row * N + col;
                    const float v0 = acc[fm][fn][2 * h], v1 = acc[fm][fn][2 * h + 1];
                    if (col + 1 < N && (N & 1) == 0) {  // even N keeps the pair 4-byte aligned
                        *reinterpret_cast<half2*>(yp) = __floats2half2_rn(v0, v1);
                    } else {
                        if (col < N) yp[0] = __float2half_rn(v0);
                        if (col + 1 < N) yp[1] = __float2half_rn(v1);
                    }
                }
            }
        }
    }
};

}  // namespace

#define NF4_MMA(MT, NT, KC)                                                                    \
    extern "C" __global__ void __launch_bounds__(256) nf4_mma_##MT##x##NT##x##KC(              \
        const half* x, const unsigned char* w, const unsigned char* absmax_q,                   \
        const float* absmax2, const float* code, float offset, half* y, int M, int N, int K,    \
        int blocksize) {                                                                        \
        Nf4Mma<MT, NT, KC>::run(x, w, absmax_q, absmax2, code, offset, y, M, N, K, blocksize);  \
    }

NF4_MMA(32, 64, 128)
NF4_MMA(32, 256, 128)
NF4_MMA(64, 64, 64)
NF4_MMA(128, 64, 64)
NF4_MMA(128, 128, 64)
