// bitsandbytes NF4 (block 64, double-quantized absmax) kernels.
// Storage of a row-major n x k weight (flattened index e = row * k + col):
//   w[e / 2]: two 4-bit codes, the even element in the high nibble (bitsandbytes order);
//   absmax of block b = e / 64: code[absmax_q[b]] * absmax2[b / 256] + offset.
#include <cuda_fp16.h>

__device__ const float NF4_TABLE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

#define MAX_T 16

// y[t, row] = sum_c x[t, c] * W[row, c] for t < T <= 16: one warp per output row, each lane
// decodes 32 weights (16 bytes) per step, two steps' loads issued together. Requires k % 64 == 0.
template <int T>
__device__ __forceinline__ void nf4_accumulate(const uint4 pk, const float am, const float* tab,
                                               const half* __restrict__ x, int c, int k,
                                               float* acc) {
    float wv[32];
    const unsigned int words[4] = {pk.x, pk.y, pk.z, pk.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const unsigned int b = (words[i] >> (8 * j)) & 0xff;
            wv[i * 8 + j * 2] = tab[b >> 4] * am;
            wv[i * 8 + j * 2 + 1] = tab[b & 15] * am;
        }
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
        const uint4* xp = reinterpret_cast<const uint4*>(x + (size_t)t * k + c);
        float s = 0.f;
#pragma unroll
        for (int v = 0; v < 4; ++v) {
            const uint4 xv = __ldg(xp + v);
            const half2* h = reinterpret_cast<const half2*>(&xv);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float2 f = __half22float2(h[e]);
                s += f.x * wv[v * 8 + e * 2] + f.y * wv[v * 8 + e * 2 + 1];
            }
        }
        acc[t] += s;
    }
}

template <int T>
__device__ void nf4_gemv(const unsigned char* __restrict__ w,
                         const unsigned char* __restrict__ absmax_q,
                         const float* __restrict__ absmax2, const float* __restrict__ code,
                         float offset, const half* __restrict__ x, half* __restrict__ y, int n,
                         int k) {
    __shared__ float tab[16];
    __shared__ float cs[256];
    if (threadIdx.x < 16) tab[threadIdx.x] = NF4_TABLE[threadIdx.x];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) cs[i] = code[i];
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n) return;
    float acc[T];
#pragma unroll
    for (int t = 0; t < T; ++t) acc[t] = 0.f;
    const unsigned char* wr = w + (size_t)row * (k >> 1);
    const size_t blk0 = (size_t)row * (k >> 6);
    const float a2 = __ldg(&absmax2[blk0 >> 8]);
    int c = lane * 32;
    for (; c + 1024 < k; c += 2048) {
        const uint4 p0 = __ldg(reinterpret_cast<const uint4*>(wr + (c >> 1)));
        const uint4 p1 = __ldg(reinterpret_cast<const uint4*>(wr + ((c + 1024) >> 1)));
        const size_t b0 = blk0 + (c >> 6), b1 = blk0 + ((c + 1024) >> 6);
        const unsigned char q0 = __ldg(&absmax_q[b0]), q1 = __ldg(&absmax_q[b1]);
        const float s0 = (b0 >> 8) == (blk0 >> 8) ? a2 : __ldg(&absmax2[b0 >> 8]);
        const float s1 = (b1 >> 8) == (blk0 >> 8) ? a2 : __ldg(&absmax2[b1 >> 8]);
        nf4_accumulate<T>(p0, cs[q0] * s0 + offset, tab, x, c, k, acc);
        nf4_accumulate<T>(p1, cs[q1] * s1 + offset, tab, x, c + 1024, k, acc);
    }
    if (c < k) {
        const uint4 p0 = __ldg(reinterpret_cast<const uint4*>(wr + (c >> 1)));
        const size_t b0 = blk0 + (c >> 6);
        nf4_accumulate<T>(p0, cs[__ldg(&absmax_q[b0])] * __ldg(&absmax2[b0 >> 8]) + offset, tab, x,
                          c, k, acc);
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
        float s = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
        if (lane == 0) y[(size_t)t * n + row] = __float2half(s);
    }
}

// One kernel per token count (registers sized to T): nf4_gemv_t1 ... nf4_gemv_t16.
#define NF4_GEMV(T)                                                                             \
    extern "C" __global__ void __launch_bounds__(128) nf4_gemv_t##T(                            \
        const unsigned char* w, const unsigned char* absmax_q, const float* absmax2,            \
        const float* code, float offset, const half* x, half* y, int n, int k) {                \
        nf4_gemv<T>(w, absmax_q, absmax2, code, offset, x, y, n, k);                            \
    }
// The calibrator defines GEMV_TOKENS to the token counts its sweep and checks use.
#ifndef GEMV_TOKENS
#define GEMV_TOKENS(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)
#endif
GEMV_TOKENS(NF4_GEMV)

// Dequantize the whole tensor to fp16 (row-major n x k): what bitsandbytes and vLLM run before
// a cuBLAS GEMM when more than one token comes in. Each thread turns 4 packed bytes (8 weights)
// into one 16-byte store, so a warp reads 128 and writes 512 contiguous bytes.
extern "C" __global__ void nf4_dequant(const unsigned char* __restrict__ w,
                                       const unsigned char* __restrict__ absmax_q,
                                       const float* __restrict__ absmax2,
                                       const float* __restrict__ code, float offset,
                                       half* __restrict__ out, unsigned long long numel) {
    __shared__ float tab[16];
    __shared__ float cs[256];
    if (threadIdx.x < 16) tab[threadIdx.x] = NF4_TABLE[threadIdx.x];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) cs[i] = code[i];
    __syncthreads();
    const unsigned long long chunks = numel >> 3;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < chunks;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned int word = __ldg(reinterpret_cast<const unsigned int*>(w) + i);
        const unsigned long long blk = i >> 3;
        const float am = cs[__ldg(&absmax_q[blk])] * __ldg(&absmax2[blk >> 8]) + offset;
        half2 h[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const unsigned int b = (word >> (8 * j)) & 0xff;
            h[j] = __floats2half2_rn(tab[b >> 4] * am, tab[b & 15] * am);
        }
        reinterpret_cast<uint4*>(out)[i] = *reinterpret_cast<uint4*>(h);
    }
}

// bitsandbytes' unfused NF4 sequence (its `_dequant_linear_fallback`), one kernel per step as it
// launches them, so that the `nf4` scheme pays what bitsandbytes pays.
// Step 1: absmax[b] = code[absmax_q[b]] * absmax2[b / 256] (8-bit blockwise dequantize, block 256).
extern "C" __global__ void nf4_absmax_dequant(const unsigned char* __restrict__ absmax_q,
                                              const float* __restrict__ absmax2,
                                              const float* __restrict__ code,
                                              float* __restrict__ out, unsigned long long blocks) {
    for (unsigned long long b = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         b < blocks; b += (unsigned long long)gridDim.x * blockDim.x) {
        out[b] = __ldg(&code[__ldg(&absmax_q[b])]) * __ldg(&absmax2[b >> 8]);
    }
}

// Step 2: out = in + offset (torch's `absmax_dq + absmax_offset`, a new tensor).
extern "C" __global__ void add_scalar_f32(const float* __restrict__ in, float offset,
                                          float* __restrict__ out, unsigned long long count) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < count; i += (unsigned long long)gridDim.x * blockDim.x) {
        out[i] = __ldg(&in[i]) + offset;
    }
}

// Step 3 as bitsandbytes 0.50.2 runs it (kDequantizeBlockwise<half, 512, 64, 8, NF4>, ~2 TB/s on
// the H200): 64-thread CTAs, one per 512 packed bytes; each warp loads its 256 bytes a byte per
// lane per step (warp-striped) and exchanges them through shared memory so that each thread holds
// 8 consecutive bytes (cub's BLOCK_LOAD_WARP_TRANSPOSE); for every byte the absmax is read again
// at an index divided by the run-time block size; the 16 halves per thread go back through shared
// memory and out as warp-striped 2-byte stores (BLOCK_STORE_WARP_TRANSPOSE). One part is not
// copied: bitsandbytes decodes each 4-bit code by a branch tree on its bits, here a table. As
// NVRTC compiles it, the tree made the sequence 1.1-1.4x bitsandbytes'; without the transposes
// it ran 0.73-0.94x; with them 0.91-1.07x (docs/ACCURACY.md, "NF4 and bitsandbytes").
// Requires an even numel below 2^31 (bitsandbytes indexes with int too).
#define DQ_THREADS 64
#define DQ_BYTES 8  // packed bytes per thread
extern "C" __global__ void __launch_bounds__(DQ_THREADS) nf4_dequant_bnb(
    const unsigned char* __restrict__ w, const float* absmax, half* __restrict__ out,
    int blocksize, int numel) {
    __shared__ float tab[16];
    __shared__ unsigned char in_x[DQ_THREADS * DQ_BYTES];
    __shared__ half out_x[DQ_THREADS / 32][32 * 2 * DQ_BYTES + 32];  // one pad per 32 halves
    if (threadIdx.x < 16) tab[threadIdx.x] = NF4_TABLE[threadIdx.x];
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nbytes = numel / 2;
    const int wbyte = blockIdx.x * DQ_THREADS * DQ_BYTES + warp * 32 * DQ_BYTES;
    unsigned char* wx = in_x + warp * 32 * DQ_BYTES;
#pragma unroll
    for (int i = 0; i < DQ_BYTES; ++i) {
        const int b = wbyte + i * 32 + lane;
        wx[i * 32 + lane] = b < nbytes ? w[b] : 0;
    }
    __syncwarp();
    const int t = blockIdx.x * DQ_THREADS + threadIdx.x;  // first weight: t * 2 * DQ_BYTES
    half v[2 * DQ_BYTES];
#pragma unroll
    for (int j = 0; j < DQ_BYTES; ++j) {
        const unsigned q = wx[lane * DQ_BYTES + j];
        const int e = t * 2 * DQ_BYTES + 2 * j;
        const float am = e < numel ? absmax[e / blocksize] : 0.f;
        v[2 * j] = __float2half_rn(tab[q >> 4] * am);
        v[2 * j + 1] = __float2half_rn(tab[q & 15u] * am);
    }
    half* ox = out_x[warp];
#pragma unroll
    for (int j = 0; j < 2 * DQ_BYTES; ++j) {
        const int e = lane * 2 * DQ_BYTES + j;
        ox[e + e / 32] = v[j];
    }
    __syncwarp();
    const int wout = 2 * wbyte;
#pragma unroll
    for (int i = 0; i < 2 * DQ_BYTES; ++i) {
        const int e = i * 32 + lane;
        if (wout + e < numel) out[wout + e] = ox[e + e / 32];
    }
}
