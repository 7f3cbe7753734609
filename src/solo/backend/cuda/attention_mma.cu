// Tensor-core FlashAttention-2 for bf16 with head dim 64 or 128: the same algorithm and
// results as the CUDA-core kernels in attention.cu, with both products of each step on
// mma.sync.m16n8k16 (bf16 in, f32 accumulate).
//
// Every kernel runs 4 warps on a 64 x 64 tile pair; each warp owns 16 rows of the tile its block
// is indexed by (queries in the forward and dq, keys in dk/dv) and loops over 64-row tiles of
// the other side, which are staged in shared memory as bf16 by cp.async (16 bytes a thread,
// double buffered: the next tile loads while this one is computed). Shared rows are padded to
// D + 8 elements: the 32-bit fragment loads of 8 rows x 4 lanes and the 8 row addresses of an
// ldmatrix then fall in distinct banks (row stride = 4 banks mod 32).
//
// Fragment layouts of mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (PTX ISA, "Matrix
// Fragments for mma.m16n8k16"), with g = lane / 4 and t = lane % 4, two bf16 per 32-bit
// register, the lower-indexed element in the low half:
//   A 16 x 16 (row-major): reg 0 = (row g,     cols 2t, 2t+1)   reg 1 = (row g + 8, cols 2t, 2t+1)
//                          reg 2 = (row g,     cols 2t+8, 2t+9) reg 3 = (row g + 8, cols 2t+8,
//                          2t+9)
//   B 16 x 8 ("col"):      reg 0 = (k 2t, 2t+1; n g)           reg 1 = (k 2t+8, 2t+9; n g)
//   C/D 16 x 8 (f32):      c0, c1 = (row g, cols 2t, 2t+1)     c2, c3 = (row g + 8, cols 2t, 2t+1)
// So a C tile pair (n-tiles 2j, 2j+1) of one 16-row strip is, element for element, the A
// fragment of the same strip over k = 16j..16j+15: the scores P feed P V without leaving
// registers (the FA2 trick), and likewise dS in dq and P^T, dS^T in dk/dv.
//
// B operands. When B[k][n] = X[n][k] for a row-major shared tile X (K for S = Q K^T, V for
// dP = dO V^T, Q and dO for the transposed products in dk/dv), both halves of a B register are
// adjacent in a row of X: one 32-bit shared load. When B[k][n] = X[k][n] (V for O += P V, K for
// dQ += dS K, dO for dV += P^T dO, Q for dK += dS^T Q), the pair runs down a column of X;
// ldmatrix.x4.trans loads it: lanes 8i..8i+7 give the row addresses of 8 x 8 matrix i, and
// with .trans lane (g, t) receives (rows 2t, 2t+1; column g) of each matrix in its register i,
// which is the B layout above. Matrices 0..3 are (k 0-7, n 0-7), (k 8-15, n 0-7),
// (k 0-7, n 8-15), (k 8-15, n 8-15): registers 0, 1 are the B fragment of the first n-tile,
// 2, 3 of the second.
//
// Rows past the end (queries >= T, keys >= S) are zero-filled in shared memory so products stay
// finite; masked scores are -inf before the softmax (forward) or give P = 0 (backward).
// Softmax runs in base 2 (exp2 of scores pre-multiplied by scale * log2 e); lse is stored in
// natural log like the CUDA-core kernel.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "solo/backend/cuda/attention_mma.h"
#include "solo/backend/cuda/cuda_util.cuh"

namespace solo::cuda {
namespace {

using attn::load_key_ok;
using attn::mask_at;
using attn::Params;
using attn::quad_max;
using attn::quad_sum;
using attn::row_of;
using bf16 = __nv_bfloat16;

constexpr int kTile = 64;  // rows of a tile, both sides
constexpr int kWarps = 4;  // each owns 16 rows of the block's tile
constexpr int kThreads = kWarps * 32;
constexpr int kPad = 8;         // shared row padding (elements)
constexpr int kNT = kTile / 8;  // n8 tiles across a 64-wide tile of scores
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- warp-level primitives -------------------------------------------------------------------

// d += a b on tensor cores (layouts in the file comment).
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8 x 8 bf16 matrices, transposed; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* row) {
  const auto a = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
}

__device__ __forceinline__ uint32_t lds32(const bf16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Two floats as bf16x2, lo in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// A fragment of rows r0..r0+15, cols c0..c0+15 of a row-major shared tile with stride LD.
template <int LD>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* s, int r0, int c0, int g,
                                       int t) {
  const bf16* p = s + (r0 + g) * LD + c0 + 2 * t;
  a[0] = lds32(p);
  a[1] = lds32(p + 8 * LD);
  a[2] = lds32(p + 8);
  a[3] = lds32(p + 8 * LD + 8);
}

// The A fragment over k = 16 kk..16 kk + 15 made of C tiles 2 kk and 2 kk + 1.
template <int NT>
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c)[NT][4], int kk) {
  a[0] = pack_bf16(c[2 * kk][0], c[2 * kk][1]);
  a[1] = pack_bf16(c[2 * kk][2], c[2 * kk][3]);
  a[2] = pack_bf16(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = pack_bf16(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// acc[16 x D] += A[16 x 8 NT] X[8 NT x D] for a warp, A from the C tiles c (rows = the warp's
// strip, k = the first 8 NT rows of shared tile x), X row-major in shared memory.
template <int D, int NT>
__device__ __forceinline__ void mma_c_by_tile(float (&acc)[D / 8][4], const float (&c)[NT][4],
                                              const bf16* x, int lane) {
  constexpr int LD = D + kPad;
  // ldmatrix rows: matrix lane / 8 = (k half (lane / 8) % 2, n half lane / 16).
  const bf16* base = x + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
  for (int kk = 0; kk < NT / 2; ++kk) {
    uint32_t a[4];
    c_to_a(a, c, kk);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, base + kk * 16 * LD + dp * 16);
      mma(acc[2 * dp], a, b[0], b[1]);
      mma(acc[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

// c[16 x 8 NT] += X[16 rows at r0 of sx] Y^T for a warp: Y is the first 8 NT rows of a shared
// tile (n = its rows, k = D). Both row-major with stride D + kPad.
template <int D, int NT>
__device__ __forceinline__ void mma_rows_by_rows(float (&c)[NT][4], const bf16* sx, int r0,
                                                 const bf16* y, int g, int t) {
  constexpr int LD = D + kPad;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    uint32_t a[4];
    load_a<LD>(a, sx, r0, ks * 16, g, t);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const bf16* p = y + (nt * 8 + g) * LD + ks * 16 + 2 * t;
      mma(c[nt], a, lds32(p), lds32(p + 8));
    }
  }
}

// ---- loads -----------------------------------------------------------------------------------

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const auto s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  // src-size 0 reads nothing and fills the 16 bytes with zeros.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s),
               "l"(__cvta_generic_to_global(gmem)), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Starts copying rows [r0, r0 + 64) of x [B, L, H, D] at (b, ., h) into s [64][D + kPad]
// (zeros past L).
template <int D>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* __restrict__ x, int r0, int b, int h,
                                          int L, int H) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert(kTile * kChunks % kThreads == 0);
#pragma unroll
  for (int n = 0; n < kTile * kChunks / kThreads; ++n) {
    const int i = n * kThreads + static_cast<int>(threadIdx.x);
    const int r = i / kChunks, col = (i % kChunks) * 8, l = r0 + r;
    const bool ok = l < L;
    cp_async16(s + r * (D + kPad) + col, ok ? x + row_of(b, l, h, L, H, D) + col : x, ok);
  }
}

// Stores rows g and g + 8 of a warp's [16 x D] f32 accumulator (times mul[r]) as bf16 at
// x [B, L, H, D] rows (b, l0 + g (+ 8), h); rows >= L are skipped.
template <int D>
__device__ __forceinline__ void store_rows(bf16* __restrict__ x, const float (&acc)[D / 8][4],
                                           const float (&mul)[2], int l0, int b, int h, int L,
                                           int H, int g, int t) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int l = l0 + g + 8 * r;
    if (l >= L) continue;
    bf16* row = x + row_of(b, l, h, L, H, D) + 2 * t;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<uint32_t*>(row + dt * 8) =
          pack_bf16(acc[dt][2 * r] * mul[r], acc[dt][2 * r + 1] * mul[r]);
  }
}

// ---- forward ---------------------------------------------------------------------------------

template <int D>
constexpr size_t fwd_smem() {
  return 5 * kTile * (D + kPad) * sizeof(bf16) + 2 * kTile * sizeof(float);
}

// q [B, T, Hq, D], k, v [B, S, Hkv, D] -> out [B, T, Hq, D], lse [B, Hq, T].
// Grid (ceil(T / 64), Hq, B), 128 threads. Shared: sQ [64][D + 8], sK, sV [2][64][D + 8],
// key flags [2][64]. Warp w keeps the A fragments of queries 16w..16w+15 in registers, the
// running max m and (per-lane partial) sum l of rows g, g + 8, and O [16 x D] in f32.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_mma_fwd_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                             const bf16* __restrict__ v, bf16* __restrict__ out,
                             float* __restrict__ lse, Params p) {
  constexpr int LD = D + kPad;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sK = sQ + kTile * LD;
  bf16* sV = sK + 2 * kTile * LD;
  float* sOk = reinterpret_cast<float*>(sV + 2 * kTile * LD);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  // Highest query tiles first: under causal masking they have the most key tiles.
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kTile, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / p.group;
  const int kend = p.causal ? min(p.S, q0 + kTile) : p.S;  // later tiles: all above diagonal
  const int ntiles = (kend + kTile - 1) / kTile;

  load_tile<D>(sQ, q, q0, b, h, p.T, p.Hq);
  if (ntiles > 0) {
    load_tile<D>(sK, k, 0, b, hk, p.S, p.Hkv);
    load_tile<D>(sV, v, 0, b, hk, p.S, p.Hkv);
    load_key_ok<kThreads>(sOk, kTile, 0, b, p);
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) load_a<LD>(qf[ks], sQ, warp * 16, ks * 16, g, t);

  const float sl = p.scale * kLog2e;
  const int row0 = q0 + warp * 16 + g;  // query of c0, c1; row0 + 8 for c2, c3
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;

  for (int it = 0; it < ntiles; ++it) {
    const int buf = it & 1, k0 = it * kTile;
    if (it + 1 < ntiles) {  // buffer buf ^ 1 was last read before the previous iteration's end
      const int nb = buf ^ 1;
      load_tile<D>(sK + nb * kTile * LD, k, k0 + kTile, b, hk, p.S, p.Hkv);
      load_tile<D>(sV + nb * kTile * LD, v, k0 + kTile, b, hk, p.S, p.Hkv);
      load_key_ok<kThreads>(sOk + nb * kTile, kTile, k0 + kTile, b, p);
    }
    cp_async_commit();   // possibly empty: keeps one group per iteration
    cp_async_wait<1>();  // this tile's group has landed (the prefetch may be in flight)
    __syncthreads();
    const bf16* cK = sK + buf * kTile * LD;
    const bf16* cV = sV + buf * kTile * LD;
    const float* ok = sOk + buf * kTile;

    float s[kNT][4];
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks)
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const bf16* kp = cK + (nt * 8 + g) * LD + ks * 16 + 2 * t;
        mma(s[nt], qf[ks], lds32(kp), lds32(kp + 8));
      }

    // Only tiles with a mask, the ragged end or the diagonal (k0 == q0) need per-key checks.
    const bool edge = p.mask != nullptr || k0 + kTile > p.S || (p.causal && k0 + kTile > q0);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = nt * 8 + 2 * t + (e & 1), r = e >> 1;
        float x = s[nt][e] * sl;
        if (edge && (ok[j] == 0.f || (p.causal && k0 + j > row0 + 8 * r))) x = -INFINITY;
        s[nt][e] = x;
        mx[r] = fmaxf(mx[r], x);
      }
    float alpha[2], mu[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float mn = fmaxf(m[r], quad_max(mx[r]));
      mu[r] = mn == -INFINITY ? 0.f : mn;  // no visible key yet: every p is exp2(-inf) = 0
      alpha[r] = exp2f(m[r] - mu[r]);      // m = -inf (first visible tile): 0, and O, l are 0
      m[r] = mn;
    }
    float rs[2] = {0.f, 0.f};
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - mu[e >> 1]);
        rs[e >> 1] += s[nt][e];
      }
    l[0] = l[0] * alpha[0] + rs[0];
    l[1] = l[1] * alpha[1] + rs[1];
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }
    mma_c_by_tile<D, kNT>(o, s, cV, lane);
    __syncthreads();  // buffer buf is refilled by the next iteration's prefetch
  }

  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] = quad_sum(l[r]);
    inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;  // a query that sees no key outputs zeros
  }
  store_rows<D>(out, o, inv, q0 + warp * 16, b, h, p.T, p.Hq, g, t);
  if (t == 0)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + 8 * r;
      if (row < p.T)
        lse[(static_cast<int64_t>(b) * p.Hq + h) * p.T + row] =
            l[r] > 0.f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
    }
}

// ---- backward: dq ----------------------------------------------------------------------------

template <int D>
constexpr size_t dq_smem() {
  return 6 * kTile * (D + kPad) * sizeof(bf16) + 2 * kTile * sizeof(float);
}

// dq [B, T, Hq, D] = scale * dS K with dS = P * (dP - delta), P = exp(scale q.k - lse),
// dP = dout V^T. Grid (ceil(T / 64), Hq, B), 128 threads. Shared: sQ, sDO [64][D + 8],
// sK, sV [2][64][D + 8], key flags [2][64]. Warp w accumulates dQ of queries 16w..16w+15.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_mma_dq_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                            const bf16* __restrict__ v, const float* __restrict__ lse,
                            const bf16* __restrict__ dout, const float* __restrict__ delta,
                            bf16* __restrict__ dq, Params p) {
  constexpr int LD = D + kPad;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sDO = sQ + kTile * LD;
  bf16* sK = sDO + kTile * LD;
  bf16* sV = sK + 2 * kTile * LD;
  float* sOk = reinterpret_cast<float*>(sV + 2 * kTile * LD);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kTile, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / p.group;
  const int kend = p.causal ? min(p.S, q0 + kTile) : p.S;
  const int ntiles = (kend + kTile - 1) / kTile;
  const int row0 = q0 + warp * 16 + g;

  float lse2[2], di[2];  // lse in base 2 (-inf: no visible key or past T) and delta of the rows
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + 8 * r;
    const int64_t li = (static_cast<int64_t>(b) * p.Hq + h) * p.T + row;
    lse2[r] = row < p.T ? lse[li] * kLog2e : -INFINITY;
    di[r] = row < p.T ? delta[li] : 0.f;
  }

  load_tile<D>(sQ, q, q0, b, h, p.T, p.Hq);
  load_tile<D>(sDO, dout, q0, b, h, p.T, p.Hq);
  if (ntiles > 0) {
    load_tile<D>(sK, k, 0, b, hk, p.S, p.Hkv);
    load_tile<D>(sV, v, 0, b, hk, p.S, p.Hkv);
    load_key_ok<kThreads>(sOk, kTile, 0, b, p);
  }
  cp_async_commit();

  const float sl = p.scale * kLog2e;
  float acc[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.f;

  for (int it = 0; it < ntiles; ++it) {
    const int buf = it & 1, k0 = it * kTile;
    if (it + 1 < ntiles) {
      const int nb = buf ^ 1;
      load_tile<D>(sK + nb * kTile * LD, k, k0 + kTile, b, hk, p.S, p.Hkv);
      load_tile<D>(sV + nb * kTile * LD, v, k0 + kTile, b, hk, p.S, p.Hkv);
      load_key_ok<kThreads>(sOk + nb * kTile, kTile, k0 + kTile, b, p);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const bf16* cK = sK + buf * kTile * LD;
    const bf16* cV = sV + buf * kTile * LD;
    const float* ok = sOk + buf * kTile;

    float s[kNT][4], dp[kNT][4];
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.f;
    mma_rows_by_rows<D, kNT>(s, sQ, warp * 16, cK, g, t);    // S = Q K^T
    mma_rows_by_rows<D, kNT>(dp, sDO, warp * 16, cV, g, t);  // dP = dO V^T

    const bool edge = p.mask != nullptr || k0 + kTile > p.S || (p.causal && k0 + kTile > q0);
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = nt * 8 + 2 * t + (e & 1), r = e >> 1;
        const bool vis = lse2[r] != -INFINITY &&
                         !(edge && (ok[j] == 0.f || (p.causal && k0 + j > row0 + 8 * r)));
        const float pr = vis ? exp2f(s[nt][e] * sl - lse2[r]) : 0.f;
        s[nt][e] = pr * (dp[nt][e] - di[r]);  // dS
      }
    mma_c_by_tile<D, kNT>(acc, s, cK, lane);  // dQ += dS K
    __syncthreads();
  }
  if (ntiles == 0) cp_async_wait<0>();  // no copy may outlive the block
  const float mul[2] = {p.scale, p.scale};
  store_rows<D>(dq, acc, mul, q0 + warp * 16, b, h, p.T, p.Hq, g, t);
}

// ---- backward: dk, dv ------------------------------------------------------------------------

template <int D>
constexpr size_t dkv_smem() {
  return 6 * kTile * (D + kPad) * sizeof(bf16) + 4 * kTile * sizeof(float);
}

// dk, dv [B, S, Hkv, D]: for the key tile, over every query head of the group and every query
// tile, dV += P^T dout and dK += scale * dS^T q. Grid (ceil(S / 64), Hkv, B), 128 threads.
// Shared: sK, sV [64][D + 8], sQ, sDO [2][64][D + 8], lse (base 2) and delta [2][64].
// Warp w owns keys 16w..16w+15 and computes S^T = K Q^T (keys x queries) directly, so P^T
// and dS^T come out as C tiles whose rows are its keys: the A operands of dV and dK.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_mma_dkv_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                             const bf16* __restrict__ v, const float* __restrict__ lse,
                             const bf16* __restrict__ dout, const float* __restrict__ delta,
                             bf16* __restrict__ dk, bf16* __restrict__ dv, Params p) {
  constexpr int LD = D + kPad;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);
  bf16* sV = sK + kTile * LD;
  bf16* sQ = sV + kTile * LD;
  bf16* sDO = sQ + 2 * kTile * LD;
  float* sLse = reinterpret_cast<float*>(sDO + 2 * kTile * LD);
  float* sDi = sLse + 2 * kTile;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int k0 = blockIdx.x * kTile, hk = blockIdx.y, b = blockIdx.z;
  const int key0 = k0 + warp * 16 + g;  // key of rows c0, c1; key0 + 8 for c2, c3
  bool key_ok[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key0 + 8 * r;
    key_ok[r] = key < p.S && mask_at(p.mask, p.mask_kind, static_cast<int64_t>(b) * p.S + key);
  }
  // Causal: queries before k0 see none of these keys; tiles are aligned, so the query tile
  // at q0 == k0 is the only one that straddles the diagonal.
  const int qstart = p.causal ? k0 : 0;
  const int qtiles = p.T > qstart ? (p.T - qstart + kTile - 1) / kTile : 0;
  const int n = p.group * qtiles;  // (head of the group, query tile) pairs

  // Stages pair i (head hk * group + i / qtiles, query tile i % qtiles) into buffer nb.
  auto load_pair = [&](int i, int nb) {
    const int h = hk * p.group + i / qtiles, q0 = qstart + (i % qtiles) * kTile;
    load_tile<D>(sQ + nb * kTile * LD, q, q0, b, h, p.T, p.Hq);
    load_tile<D>(sDO + nb * kTile * LD, dout, q0, b, h, p.T, p.Hq);
    for (int j = threadIdx.x; j < kTile; j += kThreads) {
      const int row = q0 + j;
      const int64_t li = (static_cast<int64_t>(b) * p.Hq + h) * p.T + row;
      sLse[nb * kTile + j] = row < p.T ? lse[li] * kLog2e : -INFINITY;
      sDi[nb * kTile + j] = row < p.T ? delta[li] : 0.f;
    }
  };
  load_tile<D>(sK, k, k0, b, hk, p.S, p.Hkv);
  load_tile<D>(sV, v, k0, b, hk, p.S, p.Hkv);
  if (n > 0) load_pair(0, 0);
  cp_async_commit();

  const float sl = p.scale * kLog2e;
  float ak[D / 8][4], av[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) ak[dt][e] = av[dt][e] = 0.f;

  for (int it = 0; it < n; ++it) {
    const int buf = it & 1, q0 = qstart + (it % qtiles) * kTile;
    if (it + 1 < n) load_pair(it + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const bf16* cQ = sQ + buf * kTile * LD;
    const bf16* cDO = sDO + buf * kTile * LD;
    const float* cLse = sLse + buf * kTile;
    const float* cDi = sDi + buf * kTile;

    const bool diag = p.causal && q0 == k0;
    // Two halves of 32 queries: the f32 score tiles of a whole 64-query tile next to the dK and
    // dV accumulators would not fit in 255 registers at D = 128.
#pragma unroll 1
    for (int half = 0; half < 2; ++half) {
      constexpr int NT = kNT / 2;
      const int i0 = half * (kTile / 2);  // first query of the half within the tile
      const bf16* hQ = cQ + i0 * LD;
      const bf16* hDO = cDO + i0 * LD;
      float s[NT][4];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      mma_rows_by_rows<D, NT>(s, sK, warp * 16, hQ, g, t);  // S^T = K Q^T
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = i0 + nt * 8 + 2 * t + (e & 1), r = e >> 1;
          const float l2 = cLse[i];
          const bool vis = key_ok[r] && l2 != -INFINITY && !(diag && key0 + 8 * r > q0 + i);
          s[nt][e] = vis ? exp2f(s[nt][e] * sl - l2) : 0.f;  // P^T
        }
      mma_c_by_tile<D, NT>(av, s, hDO, lane);  // dV += P^T dO

      float dp[NT][4];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.f;
      mma_rows_by_rows<D, NT>(dp, sV, warp * 16, hDO, g, t);  // dP^T = V dO^T
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          s[nt][e] *= dp[nt][e] - cDi[i0 + nt * 8 + 2 * t + (e & 1)];  // dS^T
      mma_c_by_tile<D, NT>(ak, s, hQ, lane);                           // dK += dS^T Q
    }
    __syncthreads();
  }
  if (n == 0) cp_async_wait<0>();
  const float mul_k[2] = {p.scale, p.scale}, one[2] = {1.f, 1.f};
  store_rows<D>(dk, ak, mul_k, k0 + warp * 16, b, hk, p.S, p.Hkv, g, t);
  store_rows<D>(dv, av, one, k0 + warp * 16, b, hk, p.S, p.Hkv, g, t);
}

// ---- launchers -------------------------------------------------------------------------------

bool aligned16(const TensorRef& x) {
  return reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
}

template <class Kernel>
void set_smem(Kernel kernel, size_t bytes) {
  SOLO_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <int D>
void launch_fwd(const KernelCall& c, const Params& p) {
  auto kernel = attention_mma_fwd_kernel<D>;
  set_smem(kernel, fwd_smem<D>());
  const dim3 grid((p.T + kTile - 1) / kTile, p.Hq, p.B);
  kernel<<<grid, kThreads, fwd_smem<D>(), stream_of(c)>>>(c.in[0].as<bf16>(), c.in[1].as<bf16>(),
                                                          c.in[2].as<bf16>(), c.out[0].as<bf16>(),
                                                          c.out[1].as<float>(), p);
  check_launch("Attention");
}

template <int D>
void launch_bwd(const KernelCall& c, const Params& p, const float* delta) {
  const TensorRef &q = c.in[0], &k = c.in[1], &v = c.in[2], &lse = c.in[4], &dout = c.in[5];
  if (static_cast<int64_t>(p.B) * p.T * p.Hq > 0) {
    auto kernel = attention_mma_dq_kernel<D>;
    set_smem(kernel, dq_smem<D>());
    const dim3 grid((p.T + kTile - 1) / kTile, p.Hq, p.B);
    kernel<<<grid, kThreads, dq_smem<D>(), stream_of(c)>>>(q.as<bf16>(), k.as<bf16>(), v.as<bf16>(),
                                                           lse.as<float>(), dout.as<bf16>(), delta,
                                                           c.out[0].as<bf16>(), p);
    check_launch("AttentionBackward");
  }
  if (static_cast<int64_t>(p.B) * p.S * p.Hkv > 0) {
    auto kernel = attention_mma_dkv_kernel<D>;
    set_smem(kernel, dkv_smem<D>());
    const dim3 grid((p.S + kTile - 1) / kTile, p.Hkv, p.B);
    kernel<<<grid, kThreads, dkv_smem<D>(), stream_of(c)>>>(
        q.as<bf16>(), k.as<bf16>(), v.as<bf16>(), lse.as<float>(), dout.as<bf16>(), delta,
        c.out[1].as<bf16>(), c.out[2].as<bf16>(), p);
    check_launch("AttentionBackward");
  }
}

}  // namespace

bool attention_mma_supports(const KernelCall& c, const Params& p) {
  if (c.in[0].dtype != DType::BF16 || (p.D != 64 && p.D != 128)) return false;
  if (p.window > 0) return false;  // sliding windows run on the CUDA-core kernels
  for (const TensorRef& x : c.in.first(c.op == OpKind::AttentionBackward ? 6 : 3))
    if (!aligned16(x)) return false;
  for (const TensorRef& x : c.out)
    if (!aligned16(x)) return false;
  return true;
}

void attention_mma_forward(const KernelCall& c, const Params& p) {
  if (p.D == 64)
    launch_fwd<64>(c, p);
  else
    launch_fwd<128>(c, p);
}

void attention_mma_backward(const KernelCall& c, const Params& p, const float* delta) {
  if (p.D == 64)
    launch_bwd<64>(c, p, delta);
  else
    launch_bwd<128>(c, p, delta);
}

}  // namespace solo::cuda
