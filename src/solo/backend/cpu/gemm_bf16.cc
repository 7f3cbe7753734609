// The AVX512_BF16 GEMM. vdpbf16ps multiplies 16 lanes of bf16 pairs and adds both products
// to f32 lanes: lane j gets a[2q] b[2q][j] + a[2q+1] b[2q+1][j]. So both operands are packed
// as 32-bit pairs along k (even k in the low half): A in panels of kMR rows, [pair][row], one
// pair broadcast per row; B in panels of kNR columns, [pair][column], two zmm per pair. A
// micro-tile of kMR x kNR f32 sums stays in 16 zmm registers over all of k and is rounded
// once when stored.
//
// Blocking: B is packed in column blocks of up to kPackedBBytes, shared by the threads. The
// rows are split into blocks of mc rows whose packed A (mc x k) stays in L2; a task packs
// its A block and sweeps it over the B panels of its columns, each B panel (k x kNR) reused
// across the A block from L1/L2.
#include "solo/backend/cpu/gemm_bf16.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace solo {
namespace {

#define SOLO_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

constexpr int kMR = 8;                        // rows of a micro-tile
constexpr int kNR = 32;                       // columns of a micro-tile: two zmm of f32
constexpr int64_t kPackedABytes = 384 << 10;  // an A block, to stay in a 1 MiB L2 with B panels
constexpr int64_t kPackedBBytes = 8 << 20;    // a B column block, shared through L3
constexpr int64_t kParallelFlops = 1 << 20;   // below this a GEMM runs on one thread

std::atomic<int> g_enabled{-1};  // -1: not decided yet
std::atomic<uint64_t> g_count{0};

// (lo, hi) as the 32-bit lane vdpbf16ps reads: lo is the even k.
inline uint32_t pair(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
}

struct Operand {
  const uint16_t* data;
  int64_t ld;
  bool trans;
};

// Rows [i0, i0 + rows) of a [M, K] into panels of kMR rows: dst[panel][q][r] holds the pair
// (a[i][2q], a[i][2q + 1]) of row i = i0 + panel * kMR + r; rows past the end and the odd
// k's missing partner are zero.
void pack_a(const Operand& a, int64_t i0, int64_t rows, int64_t k, uint32_t* dst) {
  const int64_t kp = (k + 1) / 2, k2 = k / 2;
  for (int64_t p0 = 0; p0 < rows; p0 += kMR) {
    uint32_t* panel = dst + p0 * kp;
    const int64_t mr = std::min<int64_t>(kMR, rows - p0);
    if (!a.trans) {  // a row is contiguous in k: its pairs go down a column of the panel
      for (int64_t r = 0; r < kMR; ++r) {
        if (r >= mr) {
          for (int64_t q = 0; q < kp; ++q) panel[q * kMR + r] = 0;
          continue;
        }
        const uint16_t* src = a.data + (i0 + p0 + r) * a.ld;
        for (int64_t q = 0; q < k2; ++q) panel[q * kMR + r] = pair(src[2 * q], src[2 * q + 1]);
        if (k % 2) panel[k2 * kMR + r] = pair(src[k - 1], 0);
      }
      continue;
    }
    for (int64_t q = 0; q < kp; ++q) {  // a [K, M] stored: rows 2q and 2q + 1 interleave
      const uint16_t* lo = a.data + 2 * q * a.ld + i0 + p0;
      const uint16_t* hi = 2 * q + 1 < k ? lo + a.ld : nullptr;
      uint32_t* d = panel + q * kMR;
      for (int64_t r = 0; r < kMR; ++r) d[r] = r < mr ? pair(lo[r], hi ? hi[r] : 0) : 0;
    }
  }
}

// Columns [j0, j0 + nr) of b [K, N] into one panel: dst[q][j] holds (b[2q][j], b[2q + 1][j]);
// columns past nr and the odd k's missing partner are zero.
void pack_b_panel(const Operand& b, int64_t j0, int64_t nr, int64_t k, uint32_t* dst) {
  const int64_t kp = (k + 1) / 2, k2 = k / 2;
  if (!b.trans) {  // b [K, N] stored: rows 2q and 2q + 1 interleave
    for (int64_t q = 0; q < kp; ++q) {
      const uint16_t* lo = b.data + 2 * q * b.ld + j0;
      const uint16_t* hi = 2 * q + 1 < k ? lo + b.ld : nullptr;
      uint32_t* d = dst + q * kNR;
      for (int64_t j = 0; j < kNR; ++j) d[j] = j < nr ? pair(lo[j], hi ? hi[j] : 0) : 0;
    }
    return;
  }
  for (int64_t j = 0; j < kNR; ++j) {  // b [N, K] stored: a column is contiguous in k
    if (j >= nr) {
      for (int64_t q = 0; q < kp; ++q) dst[q * kNR + j] = 0;
      continue;
    }
    const uint16_t* src = b.data + (j0 + j) * b.ld;
    for (int64_t q = 0; q < k2; ++q) dst[q * kNR + j] = pair(src[2 * q], src[2 * q + 1]);
    if (k % 2) dst[k2 * kNR + j] = pair(src[k - 1], 0);
  }
}

// Lanes as unsigned integers: shifts on them stay clear of the intrinsics whose undefined
// pass-through operand GCC 12 reports as uninitialised.
typedef uint32_t u32x16 __attribute__((vector_size(64)));

SOLO_AVX512_BF16 inline void store(float* dst, __mmask16 m, __m512 v) {
  _mm512_mask_storeu_ps(dst, m, v);
}
// f32 -> bf16, round to nearest even, NaN kept quiet: f32_to_bf16 on 16 lanes.
SOLO_AVX512_BF16 inline void store(uint16_t* dst, __mmask16 m, __m512 v) {
  const u32x16 u = (u32x16)_mm512_castps_si512(v);
  const __m512i rounded = (__m512i)((u + ((u >> 16) & 1u) + 0x7fffu) >> 16);
  const __m512i quiet_nan = (__m512i)((u >> 16) | 0x40u);
  const __mmask16 nan =
      _mm512_cmpgt_epu32_mask((__m512i)(u & 0x7fffffffu), _mm512_set1_epi32(0x7f800000));
  _mm512_mask_cvtepi32_storeu_epi16(dst, m, _mm512_mask_mov_epi32(rounded, nan, quiet_nan));
}

// c [mr, nr] (row stride ldc) = a [kMR rows, kp pairs] . b [kp pairs, kNR columns], packed as
// above; mr <= kMR and nr <= kNR select the part of the tile that is stored.
template <class Out>
SOLO_AVX512_BF16 void micro_kernel(int64_t kp, const uint32_t* a, const uint32_t* b, Out* c,
                                   int64_t ldc, int64_t mr, int64_t nr) {
  __m512 acc[kMR][2];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t q = 0; q < kp; ++q, a += kMR, b += kNR) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], ar, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], ar, b1);
    }
  }
  const auto lanes = [](int64_t n) {
    return n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1);
  };
  const __mmask16 m0 = lanes(nr), m1 = lanes(std::max<int64_t>(nr - 16, 0));
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r)
    if (r < mr) {
      store(c + r * ldc, m0, acc[r][0]);
      store(c + r * ldc + 16, m1, acc[r][1]);
    }
}

// A buffer kept by the calling thread across calls: packing buffers of a few MiB would
// otherwise be mapped (and zeroed by the OS) on every GEMM.
uint32_t* scratch(size_t words) {
  struct Free {
    void operator()(uint32_t* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<uint32_t, Free> buf;
  thread_local size_t capacity = 0;
  if (words > capacity) {
    buf.reset();
    const size_t bytes = (words * sizeof(uint32_t) + 63) / 64 * 64;
    buf.reset(static_cast<uint32_t*>(std::aligned_alloc(64, bytes)));
    if (!buf) throw std::bad_alloc();
    capacity = words;
  }
  return buf.get();
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// One batch: y [M, N] (row stride n) = a [M, K] b [K, N]. packed_b holds b's column block
// [jc, jc + nc) when b_ready, else it is packed here.
template <class Out>
void gemm_one(int64_t m, int64_t n, int64_t k, const Operand& a, const Operand& b, Out* y,
              uint32_t* packed_b, uint32_t* packed_a, int64_t mc, int64_t nc, bool b_ready) {
  const int64_t kp = (k + 1) / 2;
  const int threads = omp_get_max_threads();
  const bool parallel =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) >=
      kParallelFlops;
  for (int64_t jc = 0; jc < n; jc += nc) {
    const int64_t cols = std::min(nc, n - jc), panels = ceil_div(cols, kNR);
    const int64_t row_blocks = ceil_div(m, mc);
    // Few row blocks (a short M): split the columns too, each task packing its own A block.
    const int64_t col_groups = row_blocks >= threads ? 1 : std::min<int64_t>(panels, threads);
    const int64_t tasks = row_blocks * col_groups;
#pragma omp parallel if (parallel)
    {
      if (!b_ready) {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < panels; ++p)
          pack_b_panel(b, jc + p * kNR, std::min<int64_t>(kNR, cols - p * kNR), k,
                       packed_b + p * kp * kNR);
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < tasks; ++t) {
        const int64_t i0 = t / col_groups * mc, rows = std::min(mc, m - i0);
        const int64_t g = t % col_groups;
        const int64_t p_begin = panels * g / col_groups, p_end = panels * (g + 1) / col_groups;
        uint32_t* pa = packed_a + omp_get_thread_num() * mc * kp;
        pack_a(a, i0, rows, k, pa);
        for (int64_t p = p_begin; p < p_end; ++p) {
          const int64_t j = jc + p * kNR, nr = std::min<int64_t>(kNR, n - j);
          for (int64_t r0 = 0; r0 < rows; r0 += kMR)
            micro_kernel(kp, pa + r0 * kp, packed_b + p * kp * kNR, y + (i0 + r0) * n + j, n,
                         std::min<int64_t>(kMR, rows - r0), nr);
        }
      }
    }
  }
}

template <class Out>
void gemm_typed(int64_t batch, int64_t m, int64_t n, int64_t k, const Bf16Matrix& a,
                const Bf16Matrix& b, Out* y) {
  if (k == 0) {  // an empty sum
    std::fill_n(y, batch * m * n, Out{});
    return;
  }
  const int64_t kp = (k + 1) / 2;
  const int64_t threads = omp_get_max_threads();
  // mc: the packed A block fits kPackedABytes, and the rows give every thread a block.
  int64_t mc = std::clamp<int64_t>(kPackedABytes / (kp * 4) / kMR * kMR, kMR, 512);
  mc = std::min(mc, std::max<int64_t>(kMR, ceil_div(ceil_div(m, threads), kMR) * kMR));
  const int64_t nc = std::min(std::max<int64_t>(kNR, kPackedBBytes / (kp * 4) / kNR * kNR),
                              ceil_div(n, kNR) * kNR);
  const size_t b_words = static_cast<size_t>(nc * kp);
  uint32_t* buf = scratch(b_words + static_cast<size_t>(threads * mc * kp));
  uint32_t* packed_b = buf;
  uint32_t* packed_a = buf + b_words;
  const auto* pa = reinterpret_cast<const uint16_t*>(a.data);
  const auto* pb = reinterpret_cast<const uint16_t*>(b.data);
  for (int64_t p = 0; p < batch; ++p) {
    // A shared b in one column block is packed once for all batches.
    const bool b_ready = p > 0 && b.batch_stride == 0 && nc >= n;
    gemm_one(m, n, k, Operand{pa + p * a.batch_stride, a.ld, a.trans},
             Operand{pb + p * b.batch_stride, b.ld, b.trans}, y + p * m * n, packed_b, packed_a, mc,
             nc, b_ready);
  }
}

}  // namespace

bool cpu_has_avx512_bf16() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
}

bool native_bf16_gemm_enabled() {
  int on = g_enabled.load(std::memory_order_relaxed);
  if (on < 0) {
    const char* env = std::getenv("SOLO_CPU_BF16_GEMM");
    on = cpu_has_avx512_bf16() && !(env && std::strcmp(env, "0") == 0);
    g_enabled.store(on, std::memory_order_relaxed);
  }
  return on != 0;
}

void set_native_bf16_gemm(bool on) {
  g_enabled.store(on && cpu_has_avx512_bf16(), std::memory_order_relaxed);
}

uint64_t native_bf16_gemm_count() {
  return g_count.load(std::memory_order_relaxed);
}

void gemm_bf16(int64_t batch, int64_t m, int64_t n, int64_t k, const Bf16Matrix& a,
               const Bf16Matrix& b, void* y, DType y_dtype) {
  SOLO_CHECK(cpu_has_avx512_bf16(), "gemm_bf16: this CPU has no AVX512_BF16");
  SOLO_CHECK(y_dtype == DType::BF16 || y_dtype == DType::F32,
             "gemm_bf16: the result must be bf16 or f32, got ", dtype_name(y_dtype));
  g_count.fetch_add(1, std::memory_order_relaxed);
  if (batch * m * n == 0) return;
  if (y_dtype == DType::F32)
    gemm_typed(batch, m, n, k, a, b, static_cast<float*>(y));
  else
    gemm_typed(batch, m, n, k, a, b, static_cast<uint16_t*>(y));
}

}  // namespace solo
