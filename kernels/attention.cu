// Attention kernels, head_dim 128.
// Paged decode (vLLM-style block table, block size 16, grouped-query heads, fp16 or int8 KV with a
// per-tensor scale), split over partitions of the context with a reduce step (flash-decoding):
// a two-pass kernel (partitions of at most 512 tokens) and one-pass online-softmax kernels
// (longer partitions allowed); causal prefill over contiguous q/k/v, tiled flash-attention style
// on tensor cores (WMMA).
#include <cuda_fp16.h>
#include <mma.h>

#define HD 128
#define INFINITY __int_as_float(0x7f800000)
#define BS 16
#define PART 512
#define MAXG 8
#define NWARPS 4

__device__ __forceinline__ void load16(const half* p, float* f) {
    const uint4* v = reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int q = 0; q < 2; ++q) {
        uint4 u = v[q];
        const half2* h = reinterpret_cast<const half2*>(&u);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            float2 x = __half22float2(h[e]);
            f[q * 8 + 2 * e] = x.x;
            f[q * 8 + 2 * e + 1] = x.y;
        }
    }
}
__device__ __forceinline__ void load16(const signed char* p, float* f) {
    int4 u = *reinterpret_cast<const int4*>(p);
    const signed char* b = reinterpret_cast<const signed char*>(&u);
#pragma unroll
    for (int i = 0; i < 16; ++i) f[i] = (float)b[i];
}
__device__ __forceinline__ void load8(const half* p, float* f) {
    uint4 u = *reinterpret_cast<const uint4*>(p);
    const half2* h = reinterpret_cast<const half2*>(&u);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        float2 x = __half22float2(h[e]);
        f[2 * e] = x.x;
        f[2 * e + 1] = x.y;
    }
}
__device__ __forceinline__ void load8(const signed char* p, float* f) {
    int2 u = *reinterpret_cast<const int2*>(p);
    const signed char* b = reinterpret_cast<const signed char*>(&u);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = (float)b[i];
}
__device__ __forceinline__ void load4(const half* p, float* f) {
    uint2 u = *reinterpret_cast<const uint2*>(p);
    const half2* h = reinterpret_cast<const half2*>(&u);
    float2 a = __half22float2(h[0]), b = __half22float2(h[1]);
    f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y;
}
__device__ __forceinline__ void load4(const signed char* p, float* f) {
    int u = *reinterpret_cast<const int*>(p);
    const signed char* b = reinterpret_cast<const signed char*>(&u);
    f[0] = b[0]; f[1] = b[1]; f[2] = b[2]; f[3] = b[3];
}

// Raw (unconverted) loads, so more of them fit in registers while in flight.
struct KH { uint4 a, b; };
struct KI { int4 a; };
__device__ __forceinline__ void kload(const half* p, KH& r) {
    r.a = reinterpret_cast<const uint4*>(p)[0];
    r.b = reinterpret_cast<const uint4*>(p)[1];
}
__device__ __forceinline__ void kload(const signed char* p, KI& r) { r.a = *reinterpret_cast<const int4*>(p); }
__device__ __forceinline__ void kzero(KH& r) { r.a = make_uint4(0, 0, 0, 0); r.b = r.a; }
__device__ __forceinline__ void kzero(KI& r) { r.a = make_int4(0, 0, 0, 0); }
__device__ __forceinline__ void conv8(const uint4& u, float* f) {
    const half2* h = reinterpret_cast<const half2*>(&u);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        float2 x = __half22float2(h[e]);
        f[2 * e] = x.x;
        f[2 * e + 1] = x.y;
    }
}
__device__ __forceinline__ void conv8(const int2& u, float* f) {
    const signed char* b = reinterpret_cast<const signed char*>(&u);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = (float)b[i];
}
__device__ __forceinline__ void kconv(const KH& r, float* f) { conv8(r.a, f); conv8(r.b, f + 8); }
__device__ __forceinline__ void kconv(const KI& r, float* f) {
    const signed char* b = reinterpret_cast<const signed char*>(&r.a);
#pragma unroll
    for (int i = 0; i < 16; ++i) f[i] = (float)b[i];
}
__device__ __forceinline__ void vload(const half* p, uint4& r) { r = *reinterpret_cast<const uint4*>(p); }
__device__ __forceinline__ void vload(const signed char* p, int2& r) { r = *reinterpret_cast<const int2*>(p); }
__device__ __forceinline__ void vzero(uint4& r) { r = make_uint4(0, 0, 0, 0); }
__device__ __forceinline__ void vzero(int2& r) { r = make_int2(0, 0); }
template <typename KV> struct Raw;
template <> struct Raw<half> { typedef KH K; typedef uint4 V; };
template <> struct Raw<signed char> { typedef KI K; typedef int2 V; };

// Cache layout: [num_blocks][kv_heads][BS][HD]. q, out: [B][H][HD].
// Grid (kv_heads, B, partitions), NWARPS warps; each block covers `part` tokens (a multiple of
// BS, at most PART) so that small batches still fill the GPU, for the G query heads that share
// one KV head (compile-time G keeps registers and shared memory small). With one partition the
// result goes to `out`; otherwise normalised partials go to part_o [B][H][nparts][HD] with
// part_m, part_l [B][H][nparts]. Loads are issued UNROLL steps ahead to keep bytes in flight.
#define UNROLL 4
#define UNROLL_K 4
template <typename KV, int G, bool QREG>
__device__ void paged_decode(const half* __restrict__ q, const KV* __restrict__ kc,
                             const KV* __restrict__ vc, const int* __restrict__ block_table,
                             const int* __restrict__ ctx_lens, half* __restrict__ out,
                             float* __restrict__ part_o, float* __restrict__ part_m,
                             float* __restrict__ part_l, float scale, float kv_scale, int H,
                             int KVH, int max_blocks, int part) {
    __shared__ float qs[G][HD];
    __shared__ float sc[G][PART];
    __shared__ float red[NWARPS][G][HD];
    __shared__ float ml[G][2];
    __shared__ int bts[PART / BS];
    const int kvh = blockIdx.x, b = blockIdx.y, p = blockIdx.z, nparts = gridDim.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int ctx = ctx_lens[b];
    const int t0 = p * part;
    const int t1 = min(ctx, t0 + part);
    const int n = max(0, t1 - t0);
    for (int i = threadIdx.x; i < G * HD; i += blockDim.x) {
        const int g = i / HD, d = i % HD;
        qs[g][d] = __half2float(q[((size_t)b * H + kvh * G + g) * HD + d]) * scale * kv_scale;
    }
    for (int i = threadIdx.x; i < (n + BS - 1) / BS; i += blockDim.x)
        bts[i] = block_table[(size_t)b * max_blocks + t0 / BS + i];
    __syncthreads();
    const size_t head_off = (size_t)kvh * BS * HD;
    const size_t blk_stride = (size_t)KVH * BS * HD;
    // Scores: 8 lanes per token, 16 dims per lane; 4 tokens per warp step, UNROLL steps at once.
    // Each lane keeps its 16 query dims of every head in registers (as half2) so the inner
    // product costs no shared-memory traffic.
    const int sub = lane & 7;
    half2 qh[QREG ? G : 1][8];
    if constexpr (QREG) {
#pragma unroll
        for (int g = 0; g < G; ++g)
#pragma unroll
            for (int e = 0; e < 8; ++e)
                qh[g][e] = __floats2half2_rn(qs[g][sub * 16 + 2 * e], qs[g][sub * 16 + 2 * e + 1]);
    }
    for (int base = warp * 4; base < n; base += NWARPS * 4 * UNROLL_K) {
        typename Raw<KV>::K kr[UNROLL_K];
#pragma unroll
        for (int u = 0; u < UNROLL_K; ++u) {
            const int i = base + u * NWARPS * 4 + (lane >> 3);
            if (i < n) kload(kc + bts[i / BS] * blk_stride + head_off + (i % BS) * HD + sub * 16, kr[u]);
            else kzero(kr[u]);
        }
#pragma unroll
        for (int u = 0; u < UNROLL_K; ++u) {
            const int i = base + u * NWARPS * 4 + (lane >> 3);
            if (base + u * NWARPS * 4 >= n) break;  // warp-uniform
            float kf[16];
            kconv(kr[u], kf);
#pragma unroll
            for (int g = 0; g < G; ++g) {
                float s = 0.f;
                if constexpr (QREG) {
#pragma unroll
                    for (int e = 0; e < 8; ++e) {
                        const float2 qf = __half22float2(qh[g][e]);
                        s += qf.x * kf[2 * e] + qf.y * kf[2 * e + 1];
                    }
                } else {
#pragma unroll
                    for (int e = 0; e < 16; ++e) s += qs[g][sub * 16 + e] * kf[e];
                }
                s += __shfl_xor_sync(0xffffffff, s, 4);
                s += __shfl_xor_sync(0xffffffff, s, 2);
                s += __shfl_xor_sync(0xffffffff, s, 1);
                if (i < n && sub == 0) sc[g][i] = s;
            }
        }
    }
    __syncthreads();
    // Softmax per head over this partition.
    for (int g = warp; g < G; g += NWARPS) {
        float m = -INFINITY;
        for (int i = lane; i < n; i += 32) m = fmaxf(m, sc[g][i]);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, o));
        float l = 0.f;
        for (int i = lane; i < n; i += 32) {
            const float e = __expf(sc[g][i] - m);
            sc[g][i] = e;
            l += e;
        }
        for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffff, l, o);
        if (lane == 0) { ml[g][0] = m; ml[g][1] = l; }
    }
    __syncthreads();
    // P * V: a half-warp per token (8 dims per lane), 2 tokens per warp step, UNROLL steps.
    const int hl = lane & 15, half_id = lane >> 4;
    float acc[G][8];
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[g][e] = 0.f;
    for (int base = warp * 2; base < n; base += NWARPS * 2 * UNROLL) {
        typename Raw<KV>::V vr[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int i = base + u * NWARPS * 2 + half_id;
            if (i < n) vload(vc + bts[i / BS] * blk_stride + head_off + (i % BS) * HD + hl * 8, vr[u]);
            else vzero(vr[u]);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int i = base + u * NWARPS * 2 + half_id;
            if (i < n) {
                float vf[8];
                conv8(vr[u], vf);
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    const float pw = sc[g][i];
#pragma unroll
                    for (int e = 0; e < 8; ++e) acc[g][e] += pw * vf[e];
                }
            }
        }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            acc[g][e] += __shfl_xor_sync(0xffffffff, acc[g][e], 16);
            if (half_id == 0) red[warp][g][hl * 8 + e] = acc[g][e];
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * HD; i += blockDim.x) {
        const int g = i / HD, d = i % HD;
        float s = 0.f;
#pragma unroll
        for (int w = 0; w < NWARPS; ++w) s += red[w][g][d];
        const float l = ml[g][1];
        const float o = l > 0.f ? s * kv_scale / l : 0.f;
        const size_t bh = (size_t)b * H + kvh * G + g;
        if (nparts == 1) {
            out[bh * HD + d] = __float2half(o);
        } else {
            part_o[(bh * nparts + p) * HD + d] = o;
            if (d == 0) {
                part_m[bh * nparts + p] = n > 0 ? ml[g][0] : -INFINITY;
                part_l[bh * nparts + p] = l;
            }
        }
    }
}

// Two-pass kernels with the query in registers (no shared-memory traffic in the inner product),
// built for int8 KV only: with fp16 KV the one-pass kernels below won every point on the H100
// and the H200. The query-in-shared-memory instantiation (QREG = false) never won and is gone.
#define DECODE_KERNEL(NAME, KV, G, QREG, MINB)                                                   \
    extern "C" __global__ void __launch_bounds__(128, MINB) NAME(                                \
        const half* q, const KV* kc, const KV* vc, const int* block_table, const int* ctx_lens,  \
        half* out, float* part_o, float* part_m, float* part_l, float scale, float kv_scale,     \
        int H, int KVH, int max_blocks, int part) {                                              \
        paged_decode<KV, G, QREG>(q, kc, vc, block_table, ctx_lens, out, part_o, part_m, part_l, \
                                  scale, kv_scale, H, KVH, max_blocks, part);                    \
    }
#define DECODE_G(G)                                                                              \
    DECODE_KERNEL(paged_decode_i8_g##G##_r, signed char, G, true, (G <= 4 ? 4 : 2))

// Single-pass ("streaming") paged decode: each warp walks whole KV blocks (16 tokens) of the
// partition with an online softmax, issuing every K and V load of a block before any arithmetic
// (with PF, the next block's loads too), so bytes stay in flight without the two-pass kernel's
// shared-memory score buffer and barriers. Per 16-byte load, LPT lanes hold one token's 128 dims,
// so each lane's scores are exactly the ones its V values need. Warps merge at the end.
template <typename KV> struct Lanes;
template <> struct Lanes<half> { static constexpr int E = 8; };
template <> struct Lanes<signed char> { static constexpr int E = 16; };
// FP8 e4m3 KV (vLLM's --kv-cache-dtype fp8) travels as unsigned char: one byte per element like
// int8, converted by hand (no cuda_fp8.h under NVRTC): exponent bias 7, no infinities.
template <> struct Lanes<unsigned char> { static constexpr int E = 16; };
__device__ __forceinline__ float e4m3_to_float(unsigned int b) {
    const unsigned int e = (b >> 3) & 15u, m = b & 7u;
    // normal: sign | (e - 7 + 127) << 23 | m << 20; subnormal (e == 0): m * 2^-9
    const float mag = e ? __uint_as_float(((e + 120u) << 23) | (m << 20)) : (float)m * 0.001953125f;
    return (b & 128u) ? -mag : mag;
}
__device__ __forceinline__ void cvt16(const uint4& u, float* f, const half*) { conv8(u, f); }
__device__ __forceinline__ void cvt16(const uint4& u, float* f, const unsigned char*) {
    const unsigned char* c = reinterpret_cast<const unsigned char*>(&u);
#pragma unroll
    for (int i = 0; i < 16; ++i) f[i] = e4m3_to_float(c[i]);
}
__device__ __forceinline__ void cvt16(const uint4& u, float* f, const signed char*) {
    const signed char* c = reinterpret_cast<const signed char*>(&u);
#pragma unroll
    for (int i = 0; i < 16; ++i) f[i] = (float)c[i];
}

// cp.async (sm_80+): 16 bytes global -> shared without passing through registers, so a warp can
// keep several steps in flight while it computes on another.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
// A warp's cp.async pipeline over its steps c = warp, warp + NW, ... below nb: issue(c, stage)
// copies step c into a stage of the warp's buffer, STAGES - 1 steps ahead of step(c, stage),
// which runs once that stage has landed. Empty commit groups keep the wait count uniform.
template <int STAGES, int NW, typename Issue, typename Step>
__device__ __forceinline__ void cp_async_pipeline(int warp, int nb, Issue&& issue, Step&& step) {
#pragma unroll
    for (int i = 0; i < STAGES - 1; ++i) {
        if (warp + i * NW < nb) issue(warp + i * NW, i);
        cp_async_commit();
    }
    int st = 0;
    for (int c = warp; c < nb; c += NW) {
        const int cn = c + (STAGES - 1) * NW;
        if (cn < nb) issue(cn, (st + STAGES - 1) % STAGES);
        cp_async_commit();
        cp_async_wait<STAGES - 1>();  // this step's group has landed
        step(c, st);
        st = (st + 1) % STAGES;
    }
    cp_async_wait<0>();
}

// The end of a one-pass decode CTA: merge its warps' online-softmax states (red [NW][G][HD]
// unnormalised outputs, wm / wl [NW][G] maxima and sums, in shared memory) into the output, or
// into this partition's partials when the context is split.
template <int G, int NW>
__device__ __forceinline__ void merge_warps(const float* red, const float* wm, const float* wl,
                                            half* __restrict__ out, float* __restrict__ part_o,
                                            float* __restrict__ part_m, float* __restrict__ part_l,
                                            float kv_scale, int H, int kvh, int b, int p,
                                            int nparts) {
    for (int i = threadIdx.x; i < G * HD; i += blockDim.x) {
        const int g = i / HD, d = i % HD;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < NW; ++w) M = fmaxf(M, wm[w * G + g]);
        float num = 0.f, den = 0.f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < NW; ++w) {
                const float f = __expf(wm[w * G + g] - M);  // 0 for a warp that saw no block
                num += f * red[(w * G + g) * HD + d];
                den += f * wl[w * G + g];
            }
        }
        const float o = den > 0.f ? num * kv_scale / den : 0.f;
        const size_t bh = (size_t)b * H + kvh * G + g;
        if (nparts == 1) {
            out[bh * HD + d] = __float2half(o);
        } else {
            part_o[(bh * nparts + p) * HD + d] = o;
            if (d == 0) {
                part_m[bh * nparts + p] = M;
                part_l[bh * nparts + p] = den;
            }
        }
    }
}

// STAGES > 0: the K and V of the next STAGES - 1 steps are copied into this warp's slice of the
// dynamic shared memory (cp.async) while the current step computes; each lane reads back only
// the bytes it copied itself, so no barrier is needed.
template <typename KV, int G, int NW, bool PF, bool HALF, int STAGES, bool PREBT>
__device__ void paged_decode_stream(const half* __restrict__ q, const KV* __restrict__ kc,
                                    const KV* __restrict__ vc, const int* __restrict__ block_table,
                                    const int* __restrict__ ctx_lens, half* __restrict__ out,
                                    float* __restrict__ part_o, float* __restrict__ part_m,
                                    float* __restrict__ part_l, float scale, float kv_scale, int H,
                                    int KVH, int max_blocks, int part) {
    constexpr int E = Lanes<KV>::E;  // elements per 16-byte load
    constexpr int LPT = HD / E;      // lanes per token
    constexpr int TPL = 32 / LPT;    // tokens per warp-wide load
    constexpr int NL = BS / TPL / (HALF ? 2 : 1);  // loads per step (a block, or half of one)
    constexpr int CT = NL * TPL;                   // tokens per step
    __shared__ float red[NW][G][HD];
    __shared__ float wm[NW][G], wl[NW][G];
    const int kvh = blockIdx.x, b = blockIdx.y, p = blockIdx.z, nparts = gridDim.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int ctx = ctx_lens[b];
    const int t0 = p * part;
    const int n = max(0, min(ctx, t0 + part) - t0);
    const int nb = (n + CT - 1) / CT;  // steps
    const int d0 = (lane % LPT) * E, tsub = lane / LPT;
    float qf[G][E];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        const half* qp = q + ((size_t)b * H + kvh * G + g) * HD + d0;
#pragma unroll
        for (int e = 0; e < E; e += 8) {
            float t[8];
            conv8(*reinterpret_cast<const uint4*>(qp + e), t);
#pragma unroll
            for (int i = 0; i < 8; ++i) qf[g][e + i] = t[i] * scale * kv_scale;
        }
    }
    float m[G], l[G], acc[G][E];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.f;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[g][e] = 0.f;
    }
    const size_t head_off = (size_t)kvh * BS * HD;
    const size_t blk_stride = (size_t)KVH * BS * HD;
    const int* bt = block_table + (size_t)b * max_blocks + t0 / BS;
    // PREBT: block ids of this warp's steps fetched up front: lane l holds those of its
    // warp-local steps l, l + 32, l + 64 and l + 96, so no step waits on its block-table entry
    // before it can issue its K and V loads. Partitions of at most 4096 tokens (STREAM_MAX_PART)
    // give at most 128 steps per warp; any further ones load it. Measured on the H200 (same run,
    // A/B): 1-3% faster for 8 warps, 4-11% with the cp.async pipeline, but slower for the 4-warp
    // kernels, which therefore load each entry when they need it, compiled as before PREBT.
    int btr[4] = {0, 0, 0, 0};
    if constexpr (PREBT) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int c = warp + (lane + 32 * r) * NW;
            if (c < nb) btr[r] = bt[c * CT / BS];
        }
    }
    auto block_of = [&](int c) {  // c: a step of this warp (warp-uniform)
        if constexpr (!PREBT) {
            return bt[c * CT / BS];
        } else {
            const int j = (c - warp) / NW;
            if (j >= 128) return bt[c * CT / BS];
            const int r = j >> 5;
            const int v = r == 0 ? btr[0] : r == 1 ? btr[1] : r == 2 ? btr[2] : btr[3];
            return __shfl_sync(0xffffffffu, v, j & 31);
        }
    };
    auto load = [&](int c, uint4* kd, uint4* vd) {
        const size_t off = (size_t)block_of(c) * blk_stride + head_off;
        const int jo = (c * CT % BS) / TPL;  // first load of this step within its block
        const uint4* kp = reinterpret_cast<const uint4*>(kc + off) + jo * 32;
        const uint4* vp = reinterpret_cast<const uint4*>(vc + off) + jo * 32;
#pragma unroll
        for (int j = 0; j < NL; ++j) kd[j] = kp[j * 32 + lane];
#pragma unroll
        for (int j = 0; j < NL; ++j) vd[j] = vp[j * 32 + lane];
    };
    auto compute = [&](int c, const uint4* kd, const uint4* vd) {
        float s[NL][G];
#pragma unroll
        for (int j = 0; j < NL; ++j) {
            float kf[E];
            cvt16(kd[j], kf, kc);
#pragma unroll
            for (int g = 0; g < G; ++g) {
                float a = 0.f;
#pragma unroll
                for (int e = 0; e < E; ++e) a += qf[g][e] * kf[e];
                s[j][g] = a;
            }
        }
#pragma unroll
        for (int o = LPT / 2; o > 0; o >>= 1)
#pragma unroll
            for (int j = 0; j < NL; ++j)
#pragma unroll
                for (int g = 0; g < G; ++g) s[j][g] += __shfl_xor_sync(0xffffffff, s[j][g], o);
        float mc[G];
#pragma unroll
        for (int g = 0; g < G; ++g) mc[g] = -INFINITY;
        bool valid[NL];
#pragma unroll
        for (int j = 0; j < NL; ++j) {
            valid[j] = c * CT + j * TPL + tsub < n;
#pragma unroll
            for (int g = 0; g < G; ++g)
                if (valid[j]) mc[g] = fmaxf(mc[g], s[j][g]);
        }
#pragma unroll
        for (int o = LPT; o < 32; o <<= 1)
#pragma unroll
            for (int g = 0; g < G; ++g) mc[g] = fmaxf(mc[g], __shfl_xor_sync(0xffffffff, mc[g], o));
#pragma unroll
        for (int g = 0; g < G; ++g) {
            const float mn = fmaxf(m[g], mc[g]);  // finite: every walked step has a valid token
            const float alpha = __expf(m[g] - mn);
            m[g] = mn;
            l[g] *= alpha;
#pragma unroll
            for (int e = 0; e < E; ++e) acc[g][e] *= alpha;
        }
#pragma unroll
        for (int j = 0; j < NL; ++j) {
            if (!valid[j]) continue;  // the block's tail past the context may hold anything
            float vf[E];
            cvt16(vd[j], vf, vc);
#pragma unroll
            for (int g = 0; g < G; ++g) {
                const float pw = __expf(s[j][g] - m[g]);
                l[g] += pw;
#pragma unroll
                for (int e = 0; e < E; ++e) acc[g][e] += pw * vf[e];
            }
        }
    };
    uint4 kr[NL], vr[NL];
    if constexpr (STAGES > 0) {
        extern __shared__ uint4 dyn[];  // [NW][STAGES][K, V][NL * 32]
        uint4* wbuf = dyn + (size_t)warp * STAGES * 2 * NL * 32;
        auto issue = [&](int c, int st) {
            const size_t off = (size_t)block_of(c) * blk_stride + head_off;
            const int jo = (c * CT % BS) / TPL;
            const uint4* kp = reinterpret_cast<const uint4*>(kc + off) + jo * 32;
            const uint4* vp = reinterpret_cast<const uint4*>(vc + off) + jo * 32;
            uint4* kd = wbuf + (size_t)st * 2 * NL * 32;
            uint4* vd = kd + NL * 32;
#pragma unroll
            for (int j = 0; j < NL; ++j) cp_async16(kd + j * 32 + lane, kp + j * 32 + lane);
#pragma unroll
            for (int j = 0; j < NL; ++j) cp_async16(vd + j * 32 + lane, vp + j * 32 + lane);
        };
        cp_async_pipeline<STAGES, NW>(warp, nb, issue, [&](int c, int st) {
            const uint4* kd = wbuf + (size_t)st * 2 * NL * 32;
            const uint4* vd = kd + NL * 32;
#pragma unroll
            for (int j = 0; j < NL; ++j) {
                kr[j] = kd[j * 32 + lane];
                vr[j] = vd[j * 32 + lane];
            }
            compute(c, kr, vr);
        });
    } else if constexpr (PF) {
        if (warp < nb) load(warp, kr, vr);
        for (int c = warp; c < nb; c += NW) {
            uint4 kn[NL], vn[NL];
            const bool more = c + NW < nb;
            if (more) load(c + NW, kn, vn);
            compute(c, kr, vr);
            if (more) {
#pragma unroll
                for (int j = 0; j < NL; ++j) {
                    kr[j] = kn[j];
                    vr[j] = vn[j];
                }
            }
        }
    } else {
        for (int c = warp; c < nb; c += NW) {
            load(c, kr, vr);
            compute(c, kr, vr);
        }
    }
    // Lanes with the same dims (one per token slot) hold disjoint tokens: sum them.
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int o = LPT; o < 32; o <<= 1) {
            l[g] += __shfl_xor_sync(0xffffffff, l[g], o);
#pragma unroll
            for (int e = 0; e < E; ++e) acc[g][e] += __shfl_xor_sync(0xffffffff, acc[g][e], o);
        }
        if (tsub == 0) {
#pragma unroll
            for (int e = 0; e < E; ++e) red[warp][g][d0 + e] = acc[g][e];
        }
        if (lane == 0) {
            wm[warp][g] = m[g];
            wl[warp][g] = l[g];
        }
    }
    __syncthreads();
    merge_warps<G, NW>(&red[0][0][0], &wm[0][0], &wl[0][0], out, part_o, part_m, part_l, kv_scale,
                       H, kvh, b, p, nparts);
}

// Streaming variants per (dtype, G): 8 warps loading a whole block per step (one resident CTA
// per SM); 4 warps loading half a block per step with at most 128 registers, so that four CTAs
// fit on an SM and more warps hide each other's latency (fp16 only: int8 spills); and 4 or 8
// warps that keep ASYNC_STAGES - 1 further half-blocks in flight through cp.async (dynamic shared
// memory: warps x ASYNC_STAGES x 2 x NL x 512 bytes; 8 warps suit small grids, one CTA per SM
// streaming fast). The 8-warp ones fetch their block ids up front (PREBT). No shared memory grows
// with the partition, so partitions may be longer than the two-pass kernel's 512 tokens.
#define ASYNC_STAGES 4
#define STREAM_KERNEL(NAME, KV, G, NW, PF, HALF, MINB, STAGES, PREBT)                            \
    extern "C" __global__ void __launch_bounds__(NW * 32, MINB) NAME(                             \
        const half* q, const KV* kc, const KV* vc, const int* block_table, const int* ctx_lens,  \
        half* out, float* part_o, float* part_m, float* part_l, float scale, float kv_scale,     \
        int H, int KVH, int max_blocks, int part) {                                              \
        paged_decode_stream<KV, G, NW, PF, HALF, STAGES, PREBT>(                                  \
            q, kc, vc, block_table, ctx_lens, out, part_o, part_m, part_l, scale, kv_scale, H, KVH, \
            max_blocks, part);                                                                    \
    }
#define STREAM_G(G)                                                                              \
    STREAM_KERNEL(paged_decode_s_f16_g##G##_w8, half, G, 8, false, false, 1, 0, true)            \
    STREAM_KERNEL(paged_decode_s_i8_g##G##_w8, signed char, G, 8, false, false, 1, 0, true)      \
    STREAM_KERNEL(paged_decode_s_f16_g##G##_w4h, half, G, 4, false, true, 4, 0, false)           \
    STREAM_KERNEL(paged_decode_s_f16_g##G##_w4a, half, G, 4, false, true, 3, ASYNC_STAGES, false) \
    STREAM_KERNEL(paged_decode_s_i8_g##G##_w4a, signed char, G, 4, false, true, 3, ASYNC_STAGES, false) \
    STREAM_KERNEL(paged_decode_s_f16_g##G##_w8a, half, G, 8, false, true, 1, ASYNC_STAGES, true) \
    STREAM_KERNEL(paged_decode_s_i8_g##G##_w8a, signed char, G, 8, false, true, 1, ASYNC_STAGES, true) \
    STREAM_KERNEL(paged_decode_s_f8_g##G##_w8, unsigned char, G, 8, false, false, 1, 0, true)    \
    STREAM_KERNEL(paged_decode_s_f8_g##G##_w4a, unsigned char, G, 4, false, true, 3, ASYNC_STAGES, false) \
    STREAM_KERNEL(paged_decode_s_f8_g##G##_w8a, unsigned char, G, 8, false, true, 1, ASYNC_STAGES, true)
// The calibrator defines DECODE_GROUPS to the GQA group sizes of the models it calibrates.
#ifndef DECODE_GROUPS
#define DECODE_GROUPS(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8)
#endif
DECODE_GROUPS(DECODE_G)
DECODE_GROUPS(STREAM_G)

// Tensor-core paged decode (fp16 KV). The CUDA-core kernels above spend ~100 instructions per
// 32 bytes of K and V (conversions, FMAs, shuffles), so at large batches they are bound by the
// SM clock, which the H200's power cap pulls down under sustained load: 256 sequences x 4096
// tokens ran 1.08 ms in a short sample and 1.37 ms sustained (docs/ACCURACY.md, "Decode
// attention"). Here each warp takes one whole KV block (16 tokens) per step and
// computes S = Q.K^T and O += P.V with mma.sync m16n8k16, as FlashAttention does: the G query
// heads of one KV head are the rows of the A operand (rows G..15 are zero), so a block costs 32
// MMAs and 16 ldmatrix. K and V go to shared memory by cp.async with STAGES - 1 further blocks
// in flight per warp; the 16-byte chunks of a token row are XOR-swizzled by the token so that
// ldmatrix reads are conflict-free. Tokens past the context are zero-filled by the copy and
// masked out of the softmax. Dynamic shared memory: NW x STAGES x 8 KB (reused for the merge).
__device__ __forceinline__ void cp_async16_zfill(unsigned smem, const void* gmem, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
// d += a . b for the top 8 rows of an m16n8k16 tile (a1 = a3 = 0: rows 8-15 are unused).
__device__ __forceinline__ void mma_top8(float (&d)[4], unsigned a0, unsigned a2, unsigned b0,
                                         unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %5}, {%7, %8}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(0u), "r"(a2), "r"(b0), "r"(b1));
}
__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
    const half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&h);
}

template <int G, int NW, int STAGES>
__device__ void paged_decode_tc(const half* __restrict__ q, const half* __restrict__ kc,
                                const half* __restrict__ vc, const int* __restrict__ block_table,
                                const int* __restrict__ ctx_lens, half* __restrict__ out,
                                float* __restrict__ part_o, float* __restrict__ part_m,
                                float* __restrict__ part_l, float scale, float kv_scale, int H,
                                int KVH, int max_blocks, int part) {
    static_assert(G >= 1 && G <= 8, "the query heads of a KV head fill at most 8 MMA rows");
    extern __shared__ uint4 dyn[];  // [NW][STAGES][K, V][BS tokens][16 chunks of 8 dims]
    const int kvh = blockIdx.x, b = blockIdx.y, p = blockIdx.z, nparts = gridDim.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int ctx = ctx_lens[b];
    const int t0 = p * part;
    const int n = max(0, min(ctx, t0 + part) - t0);
    const int nb = (n + BS - 1) / BS;  // blocks of the partition
    // Fragment coordinates: row (query head) g, column pair 2 * qd of an m16n8 tile; ldmatrix
    // matrix mi and row r of the address this lane supplies.
    const int g = lane >> 2, qd = lane & 3, mi = lane >> 3, r = lane & 7;
    // Q as the A operand, held for the whole kernel: (row g, dims 16 ks + 2 qd + {0, 1}) and + 8.
    unsigned qa[HD / 16][2];
#pragma unroll
    for (int ks = 0; ks < HD / 16; ++ks) {
        qa[ks][0] = qa[ks][1] = 0u;
        if (g < G) {
            const half* qp = q + ((size_t)b * H + kvh * G + g) * HD + 16 * ks + 2 * qd;
            qa[ks][0] = *reinterpret_cast<const unsigned*>(qp);
            qa[ks][1] = *reinterpret_cast<const unsigned*>(qp + 8);
        }
    }
    const float sc = scale * kv_scale;
    const size_t head_off = (size_t)kvh * BS * HD;
    const size_t blk_stride = (size_t)KVH * BS * HD;
    const int* bt = block_table + (size_t)b * max_blocks + t0 / BS;
    constexpr int STAGE_CHUNKS = 2 * BS * HD / 8;  // K and V of one block, 16-byte chunks
    uint4* wbuf = dyn + (size_t)warp * STAGES * STAGE_CHUNKS;
    const unsigned wbase = (unsigned)__cvta_generic_to_shared(wbuf);
    auto issue = [&](int c, int st) {
        const size_t off = (size_t)bt[c] * blk_stride + head_off;
        const uint4* kp = reinterpret_cast<const uint4*>(kc + off);
        const uint4* vp = reinterpret_cast<const uint4*>(vc + off);
        const unsigned kd = wbase + st * STAGE_CHUNKS * 16, vd = kd + BS * HD * 2;
        const int valid = n - c * BS;  // tokens of this block inside the partition
#pragma unroll
        for (int i = 0; i < BS * HD / 8 / 32; ++i) {
            const int ch = i * 32 + lane, tok = ch >> 4, col = ch & 15;
            const unsigned dst = (tok * 16 + (col ^ (tok & 7))) * 16;
            const int bytes = tok < valid ? 16 : 0;
            cp_async16_zfill(kd + dst, kp + ch, bytes);
            cp_async16_zfill(vd + dst, vp + ch, bytes);
        }
    };
    float m = -INFINITY, l = 0.f;  // row g's running max; this lane's share of its sum
    float o[HD / 8][4];
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    cp_async_pipeline<STAGES, NW>(warp, nb, issue, [&](int c, int st) {
        __syncwarp();  // every lane's copies of this stage are visible to the warp
        const unsigned kb = wbase + st * STAGE_CHUNKS * 16, vb = kb + BS * HD * 2;
        // S = Q.K^T over two n8 tiles (tokens 0-7, 8-15); ldmatrix matrices: (tokens r, chunk
        // 2 ks), (tokens r, 2 ks + 1), (tokens 8 + r, 2 ks), (tokens 8 + r, 2 ks + 1).
        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int ks = 0; ks < HD / 16; ++ks) {
            const int tok = r + ((mi >> 1) << 3), chunk = 2 * ks + (mi & 1);
            unsigned kf[4];
            ldsm_x4(kf, kb + (tok * 16 + (chunk ^ r)) * 16);
            mma_top8(s[0], qa[ks][0], qa[ks][1], kf[0], kf[1]);
            mma_top8(s[1], qa[ks][0], qa[ks][1], kf[2], kf[3]);
        }
        // Online softmax of row g: its 16 scores sit in the 4 lanes of a quad (s[t][0..1]).
        const int base = c * BS;
        float mx = -INFINITY;
#pragma unroll
        for (int t = 0; t < 2; ++t)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const bool ok = base + 8 * t + 2 * qd + e < n;
                s[t][e] = ok ? s[t][e] * sc : -INFINITY;
                mx = fmaxf(mx, s[t][e]);
            }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
        const float mn = fmaxf(m, mx);  // finite: every block has a token inside the context
        const float alpha = __expf(m - mn);
        m = mn;
        l *= alpha;
#pragma unroll
        for (int j = 0; j < HD / 8; ++j) {
            o[j][0] *= alpha;
            o[j][1] *= alpha;
        }
        float pw[2][2];
#pragma unroll
        for (int t = 0; t < 2; ++t)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                pw[t][e] = __expf(s[t][e] - mn);
                l += pw[t][e];
            }
        // P as the A operand: (row g, tokens 2 qd + {0, 1}) is tile 0's pair, + 8 tile 1's.
        const unsigned p0 = pack_half2(pw[0][0], pw[0][1]), p2 = pack_half2(pw[1][0], pw[1][1]);
        // O += P.V over 16 n8 tiles of dims; ldmatrix.trans matrices: (tokens r, chunk 2 jp),
        // (tokens 8 + r, 2 jp), (tokens r, 2 jp + 1), (tokens 8 + r, 2 jp + 1).
#pragma unroll
        for (int jp = 0; jp < HD / 16; ++jp) {
            const int tok = r + ((mi & 1) << 3), chunk = 2 * jp + (mi >> 1);
            unsigned vf[4];
            ldsm_x4_t(vf, vb + (tok * 16 + (chunk ^ r)) * 16);
            mma_top8(o[2 * jp], p0, p2, vf[0], vf[1]);
            mma_top8(o[2 * jp + 1], p0, p2, vf[2], vf[3]);
        }
        __syncwarp();  // the warp has read this stage before it is refilled
    });
    l += __shfl_xor_sync(0xffffffff, l, 1);
    l += __shfl_xor_sync(0xffffffff, l, 2);
    __syncthreads();  // every warp is done with the pipeline: its memory holds the merge now
    float* red = reinterpret_cast<float*>(dyn);  // [NW][G][HD]
    float* wm = red + NW * G * HD;               // [NW][G]
    float* wl = wm + NW * G;
    if (g < G) {
#pragma unroll
        for (int j = 0; j < HD / 8; ++j) {
            red[(warp * G + g) * HD + 8 * j + 2 * qd] = o[j][0];
            red[(warp * G + g) * HD + 8 * j + 2 * qd + 1] = o[j][1];
        }
        if (qd == 0) {
            wm[warp * G + g] = m;
            wl[warp * G + g] = l;
        }
    }
    __syncthreads();
    merge_warps<G, NW>(red, wm, wl, out, part_o, part_m, part_l, kv_scale, H, kvh, b, p, nparts);
}
#define TC_KERNEL(NAME, G, NW, STAGES, MINB)                                                     \
    extern "C" __global__ void __launch_bounds__(NW * 32, MINB) NAME(                             \
        const half* q, const half* kc, const half* vc, const int* block_table, const int* ctx_lens, \
        half* out, float* part_o, float* part_m, float* part_l, float scale, float kv_scale,     \
        int H, int KVH, int max_blocks, int part) {                                              \
        paged_decode_tc<G, NW, STAGES>(q, kc, vc, block_table, ctx_lens, out, part_o, part_m,     \
                                       part_l, scale, kv_scale, H, KVH, max_blocks, part);        \
    }
// 4 warps x 3 stages (96 KB: two CTAs per SM) and 8 warps x 2 stages (128 KB, one CTA per SM).
#define TC_G(G)                                                                                  \
    TC_KERNEL(paged_decode_t_f16_g##G##_w4, G, 4, 3, 2)                                          \
    TC_KERNEL(paged_decode_t_f16_g##G##_w8, G, 8, 2, 1)
DECODE_GROUPS(TC_G)

// Combine partition partials: grid (H, B), HD threads. The per-partition weights are computed
// once in shared memory (in parallel), then each thread sums its dimension over partitions with
// independent loads.
#define MAX_PARTS 1024
extern "C" __global__ void paged_decode_reduce(const float* __restrict__ part_o,
                                               const float* __restrict__ part_m,
                                               const float* __restrict__ part_l,
                                               half* __restrict__ out, int H, int nparts) {
    __shared__ float wgt[MAX_PARTS];
    __shared__ float red[HD / 32];
    const size_t bh = (size_t)blockIdx.y * H + blockIdx.x;
    const int d = threadIdx.x, lane = d & 31, warp = d >> 5;
    float M = -INFINITY;
    for (int p = d; p < nparts; p += blockDim.x) M = fmaxf(M, part_m[bh * nparts + p]);
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffff, M, o));
    if (lane == 0) red[warp] = M;
    __syncthreads();
    M = -INFINITY;
    for (int i = 0; i < (int)(blockDim.x >> 5); ++i) M = fmaxf(M, red[i]);
    for (int p = d; p < nparts; p += blockDim.x) {
        const float m = part_m[bh * nparts + p];
        wgt[p] = m == -INFINITY ? 0.f : part_l[bh * nparts + p] * __expf(m - M);
    }
    __syncthreads();
    float num = 0.f, den = 0.f;
#pragma unroll 8
    for (int p = 0; p < nparts; ++p) {
        const float w = wgt[p];
        num += w * part_o[(bh * nparts + p) * HD + d];
        den += w;
    }
    out[bh * HD + d] = __float2half(den > 0.f ? num / den : 0.f);
}

// ---------------------------------------------------------------------------------------------
// Causal prefill: q [T][H][HD], k, v [T][KVH][HD], o [T][H][HD]. Grid (ceil(T / 64), H),
// 4 warps, each owning 16 query rows; key/value tiles of 64 rows. Dynamic shared memory:
// Q, K, V tiles (64 x LDH halfs each), S (4 x 16 x LDS floats), P (4 x 16 x LDP halfs).
using namespace nvcuda;
#define QT 64
#define KT 64
#define LDH (HD + 8)
#define LDS (KT + 4)
#define LDP (KT + 8)

__device__ __forceinline__ void load_tile(half* dst, const half* src, int row0, int T, int stride) {
    // 64 rows x 128 halfs = 1024 uint4, 128 threads.
    for (int i = threadIdx.x; i < QT * HD / 8; i += blockDim.x) {
        const int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (row0 + r < T) v = *reinterpret_cast<const uint4*>(src + (size_t)(row0 + r) * stride + c);
        *reinterpret_cast<uint4*>(dst + r * LDH + c) = v;
    }
}

extern "C" __global__ void __launch_bounds__(128) prefill_attn(const half* __restrict__ q,
                                                               const half* __restrict__ k,
                                                               const half* __restrict__ v,
                                                               half* __restrict__ o, int T, int H,
                                                               int KVH, float scale_log2) {
    extern __shared__ __align__(32) unsigned char smem[];
    half* Qs = reinterpret_cast<half*>(smem);
    half* Ks = Qs + QT * LDH;
    half* Vs = Ks + KT * LDH;
    float* S = reinterpret_cast<float*>(Vs + KT * LDH);
    half* P = reinterpret_cast<half*>(S + NWARPS * 16 * LDS);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int h = blockIdx.y, kvh = h / (H / KVH);
    const int q0 = blockIdx.x * QT;
    float* Sw = S + warp * 16 * LDS;
    half* Pw = P + warp * 16 * LDP;

    load_tile(Qs, q + (size_t)h * HD, q0, T, H * HD);
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> qf[HD / 16];
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
        wmma::load_matrix_sync(qf[kk], Qs + warp * 16 * LDH + kk * 16, LDH);

    const int r = lane >> 1, hc = lane & 1;
    const int qi = q0 + warp * 16 + r;
    float O[HD / 16][8];
#pragma unroll
    for (int a = 0; a < HD / 16; ++a)
#pragma unroll
        for (int e = 0; e < 8; ++e) O[a][e] = 0.f;
    float m = -INFINITY, l = 0.f;

    const int kv_end = min(T, q0 + QT);
    for (int j0 = 0; j0 < kv_end; j0 += KT) {
        __syncthreads();
        load_tile(Ks, k + (size_t)kvh * HD, j0, T, KVH * HD);
        load_tile(Vs, v + (size_t)kvh * HD, j0, T, KVH * HD);
        __syncthreads();
        // S = Q K^T for this warp's 16 rows.
#pragma unroll
        for (int ct = 0; ct < KT / 16; ++ct) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < HD / 16; ++kk) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, Ks + ct * 16 * LDH + kk * 16, LDH);
                wmma::mma_sync(acc, qf[kk], kf, acc);
            }
            wmma::store_matrix_sync(Sw + ct * 16, acc, LDS, wmma::mem_row_major);
        }
        __syncwarp();
        // Online softmax: 2 lanes per row, 32 columns each.
        float s[32];
        float mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < 32; ++c) {
            const int key = j0 + hc * 32 + c;
            float x = Sw[r * LDS + hc * 32 + c] * scale_log2;
            if (key > qi || key >= T) x = -INFINITY;
            s[c] = x;
            mx = fmaxf(mx, x);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
        const float mn = fmaxf(m, mx);
        const float alpha = (m == -INFINITY) ? 0.f : exp2f(m - mn);
        float sum = 0.f;
#pragma unroll
        for (int c = 0; c < 32; ++c) {
            const float pv = (s[c] == -INFINITY) ? 0.f : exp2f(s[c] - mn);
            sum += pv;
            Pw[r * LDP + hc * 32 + c] = __float2half(pv);
        }
        sum += __shfl_xor_sync(0xffffffff, sum, 1);
        l = l * alpha + sum;
        m = mn;
#pragma unroll
        for (int a = 0; a < HD / 16; ++a)
#pragma unroll
            for (int e = 0; e < 8; ++e) O[a][e] *= alpha;
        __syncwarp();
        // O += P V, one 16-column tile at a time through the S scratch.
#pragma unroll
        for (int ct = 0; ct < HD / 16; ++ct) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < KT / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> pf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::row_major> vf;
                wmma::load_matrix_sync(pf, Pw + kk * 16, LDP);
                wmma::load_matrix_sync(vf, Vs + kk * 16 * LDH + ct * 16, LDH);
                wmma::mma_sync(acc, pf, vf, acc);
            }
            wmma::store_matrix_sync(Sw, acc, LDS, wmma::mem_row_major);
            __syncwarp();
#pragma unroll
            for (int e = 0; e < 8; ++e) O[ct][e] += Sw[r * LDS + hc * 8 + e];
            __syncwarp();
        }
    }
    if (qi < T) {
        const float inv = l > 0.f ? 1.f / l : 0.f;
        half* orow = o + ((size_t)qi * H + h) * HD;
#pragma unroll
        for (int ct = 0; ct < HD / 16; ++ct) {
            half2 hv[4];
#pragma unroll
            for (int e = 0; e < 4; ++e)
                hv[e] = __floats2half2_rn(O[ct][2 * e] * inv, O[ct][2 * e + 1] * inv);
            *reinterpret_cast<uint4*>(orow + ct * 16 + hc * 8) = *reinterpret_cast<uint4*>(hv);
        }
    }
}

// Bytes of dynamic shared memory prefill_attn needs.
// (QT + 2 * KT) * LDH * 2 + NWARPS * 16 * LDS * 4 + NWARPS * 16 * LDP * 2
