// Elementwise kernels of a decoder layer: fused residual add + RMSNorm, and SiLU(gate) * up.
#include <cuda_fp16.h>

// residual[t, :] += x[t, :]; y[t, :] = residual[t, :] * rsqrt(mean(residual^2) + eps) * w.
// One block per row. Requires width % 8 == 0 and width <= 8 * 8 * blockDim.x.
extern "C" __global__ void rmsnorm_residual(const half* __restrict__ x, half* __restrict__ residual,
                                            const half* __restrict__ w, half* __restrict__ y,
                                            int width, float eps) {
    __shared__ float red[32];
    const size_t t = blockIdx.x;
    const uint4* xr = reinterpret_cast<const uint4*>(x + t * width);
    uint4* rr = reinterpret_cast<uint4*>(residual + t * width);
    const int vecs = width / 8;
    float vals[8 * 8];
    float ss = 0.f;
#pragma unroll
    for (int it = 0; it < 8; ++it) {
        const int i = threadIdx.x + it * blockDim.x;
        if (i < vecs) {
            uint4 a = xr[i];
            uint4 b = rr[i];
            half2* ha = reinterpret_cast<half2*>(&a);
            half2* hb = reinterpret_cast<half2*>(&b);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                hb[e] = __hadd2(ha[e], hb[e]);
                const float2 f = __half22float2(hb[e]);
                vals[it * 8 + 2 * e] = f.x;
                vals[it * 8 + 2 * e + 1] = f.y;
                ss += f.x * f.x + f.y * f.y;
            }
            rr[i] = b;
        }
    }
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffff, ss, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.f;
    for (int i = 0; i < (int)(blockDim.x >> 5); ++i) tot += red[i];
    const float inv = rsqrtf(tot / width + eps);
    const uint4* wr = reinterpret_cast<const uint4*>(w);
    uint4* yr = reinterpret_cast<uint4*>(y + t * width);
#pragma unroll
    for (int it = 0; it < 8; ++it) {
        const int i = threadIdx.x + it * blockDim.x;
        if (i < vecs) {
            uint4 wv = wr[i];
            const half2* hw = reinterpret_cast<const half2*>(&wv);
            half2 out[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float2 g = __half22float2(hw[e]);
                out[e] = __floats2half2_rn(vals[it * 8 + 2 * e] * inv * g.x,
                                           vals[it * 8 + 2 * e + 1] * inv * g.y);
            }
            yr[i] = *reinterpret_cast<uint4*>(out);
        }
    }
}

// out[t, j] = silu(in[t, j]) * in[t, width + j] (vLLM's gate_up layout). Requires width % 8 == 0.
extern "C" __global__ void silu_mul(const half* __restrict__ in, half* __restrict__ out, int width,
                                    unsigned long long rows) {
    const unsigned long long vecs_per_row = width / 8;
    const unsigned long long total = rows * vecs_per_row;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < total;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long t = i / vecs_per_row, v = i % vecs_per_row;
        const uint4 g = reinterpret_cast<const uint4*>(in + t * 2 * width)[v];
        const uint4 u = reinterpret_cast<const uint4*>(in + t * 2 * width + width)[v];
        const half2* hg = reinterpret_cast<const half2*>(&g);
        const half2* hu = reinterpret_cast<const half2*>(&u);
        half2 o[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const float2 a = __half22float2(hg[e]);
            const float2 b = __half22float2(hu[e]);
            o[e] = __floats2half2_rn(a.x / (1.f + __expf(-a.x)) * b.x, a.y / (1.f + __expf(-a.y)) * b.y);
        }
        reinterpret_cast<uint4*>(out + t * width)[v] = *reinterpret_cast<uint4*>(o);
    }
}
