// INT8 linear kernels: W8A16 weight-only GEMV, and the two W8A8 steps around the cuBLASLt IMMA
// GEMM (per-token activation quantization, per-token x per-channel dequantization).
#include <cuda_fp16.h>

#define MAX_T 16

// y[t, row] = wscale[row] * sum_c x[t, c] * W[row, c], int8 W row-major n x k, t < T <= 16.
// One warp per row, 16 weights per lane step. Requires k % 16 == 0.
template <int T>
__device__ void w8a16_gemv(const signed char* __restrict__ w, const float* __restrict__ wscale,
                           const half* __restrict__ x, half* __restrict__ y, int n, int k) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n) return;
    float acc[T];
#pragma unroll
    for (int t = 0; t < T; ++t) acc[t] = 0.f;
    const signed char* wr = w + (size_t)row * k;
#pragma unroll 2
    for (int c = lane * 16; c < k; c += 32 * 16) {
        const int4 pk = __ldg(reinterpret_cast<const int4*>(wr + c));
        const signed char* b = reinterpret_cast<const signed char*>(&pk);
        float wv[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) wv[i] = (float)b[i];
#pragma unroll
        for (int t = 0; t < T; ++t) {
            const uint4* xp = reinterpret_cast<const uint4*>(x + (size_t)t * k + c);
            float s = 0.f;
#pragma unroll
            for (int v = 0; v < 2; ++v) {
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
    const float sc = wscale[row];
#pragma unroll
    for (int t = 0; t < T; ++t) {
        float s = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
        if (lane == 0) y[(size_t)t * n + row] = __float2half(s * sc);
    }
}

// One kernel per token count: w8a16_gemv_t1 ... w8a16_gemv_t16.
#define W8A16_GEMV(T)                                                                            \
    extern "C" __global__ void __launch_bounds__(128) w8a16_gemv_t##T(                           \
        const signed char* w, const float* wscale, const half* x, half* y, int n, int k) {       \
        w8a16_gemv<T>(w, wscale, x, y, n, k);                                                    \
    }
// The calibrator defines GEMV_TOKENS to the token counts its sweep and checks use.
#ifndef GEMV_TOKENS
#define GEMV_TOKENS(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)
#endif
GEMV_TOKENS(W8A16_GEMV)

__device__ __forceinline__ float block_max(float v, float* red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = 0.f;
    for (int i = 0; i < (int)(blockDim.x >> 5); ++i) r = fmaxf(r, red[i]);
    __syncthreads();
    return r;
}

// Per-token symmetric quantization: xq[t, :] = round(x[t, :] / s[t]), s[t] = max|x[t, :]| / 127.
// One block per token. Requires k % 8 == 0.
extern "C" __global__ void quant_per_token(const half* __restrict__ x, signed char* __restrict__ xq,
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
    m = block_max(m, red);
    const float s = m > 0.f ? m / 127.f : 1.f;
    const float inv = 1.f / s;
    if (threadIdx.x == 0) sx[t] = s;
    int2* qr = reinterpret_cast<int2*>(xq + t * k);
    for (int i = threadIdx.x; i < k / 8; i += blockDim.x) {
        const uint4 v = xr[i];
        const half2* h = reinterpret_cast<const half2*>(&v);
        signed char q[8];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const float2 f = __half22float2(h[e]);
            q[2 * e] = (signed char)max(-127, min(127, __float2int_rn(f.x * inv)));
            q[2 * e + 1] = (signed char)max(-127, min(127, __float2int_rn(f.y * inv)));
        }
        qr[i] = *reinterpret_cast<int2*>(q);
    }
}

// y[t, j] = acc[t, j] * sx[t] * sw[j] as fp16; acc is the int32 GEMM result, row-major T x n.
// Requires n % 4 == 0.
extern "C" __global__ void dequant_i32(const int* __restrict__ acc, const float* __restrict__ sx,
                                       const float* __restrict__ sw, half* __restrict__ y,
                                       int T, int n) {
    const size_t quads = (size_t)T * n / 4;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < quads;
         i += (size_t)gridDim.x * blockDim.x) {
        const int4 a = reinterpret_cast<const int4*>(acc)[i];
        const size_t e = i * 4;
        const int t = (int)(e / n);
        const int j = (int)(e % n);
        const float s = sx[t];
        const float4 w = reinterpret_cast<const float4*>(sw)[j / 4];
        half2 h[2];
        h[0] = __floats2half2_rn(a.x * s * w.x, a.y * s * w.y);
        h[1] = __floats2half2_rn(a.z * s * w.z, a.w * s * w.w);
        reinterpret_cast<uint2*>(y)[i] = *reinterpret_cast<uint2*>(h);
    }
}
