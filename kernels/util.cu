// Deterministic random fills on the device, so large timing inputs need no host transfer.
// Values are never all zero: timing on zeros can be faster than on real data.
#include <cuda_fp16.h>

__device__ __forceinline__ unsigned int mix(unsigned long long i, unsigned int seed) {
    unsigned long long x = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull + 1ull;
    x ^= x >> 31; x *= 0x94D049BB133111EBull; x ^= x >> 29; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 32;
    return (unsigned int)x;
}

// Uniform in [-scale, scale).
extern "C" __global__ void fill_half(half* p, unsigned long long n, unsigned int seed, float scale) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float u = (mix(i, seed) >> 8) * (1.0f / 16777216.0f);
        p[i] = __float2half((2.0f * u - 1.0f) * scale);
    }
}

// Uniform random bytes.
extern "C" __global__ void fill_u8(unsigned char* p, unsigned long long n, unsigned int seed) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        p[i] = (unsigned char)(mix(i, seed) >> 13);
    }
}

// Random FP8 e4m3 bytes of magnitude 2^-3 .. 2^1 (exponent field 4..8), random sign and
// mantissa: no NaN codes (0x7f, 0xff), as a quantized KV cache holds.
extern "C" __global__ void fill_e4m3(unsigned char* p, unsigned long long n, unsigned int seed) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned int r = mix(i, seed);
        p[i] = (unsigned char)(((r >> 8) & 128u) | ((4u + (r >> 16) % 5u) << 3) | (r & 7u));
    }
}

// Uniform in [lo, hi).
extern "C" __global__ void fill_f32(float* p, unsigned long long n, unsigned int seed, float lo, float hi) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float u = (mix(i, seed) >> 8) * (1.0f / 16777216.0f);
        p[i] = lo + (hi - lo) * u;
    }
}

// Busy-waits `ns` nanoseconds (one thread): queued before a timed sample, it keeps the GPU busy
// while the host queues the sample, so the start event fires with the work already waiting.
extern "C" __global__ void spin_ns(unsigned long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < ns);
}
