// AVX2 + FMA direct small-m kernel: the twin of direct_avx512.cpp for ukr_avx2_6x16.
//
// Invariants (see kernel.h): per element of C the operations are those of ukr_avx2_6x16 —
// one accumulator per K panel starting at zero, _mm256_fmadd_ps(a, b, acc) in increasing p,
// then alpha * acc (beta_p == 0) or fmadd(beta_p, C, alpha * acc) — so the result is bitwise
// that of the packed path. Row/column blocking never changes an element's arithmetic. Column
// tails use maskload/maskstore, so nothing past column n is read or written.
#include <immintrin.h>

#include "gemm/kernel.h"

namespace pynn::gemm {
namespace {

// Not std::min: an inline function from a shared header, instantiated in this file with ISA
// flags, could be the copy the linker keeps for the portable files too (ODR), and run on a CPU
// without the ISA.
inline int64_t lesser(int64_t x, int64_t y) { return x < y ? x : y; }

constexpr int V = 8;  // floats per ymm

inline __m256i tail_mask(int64_t left) {
  const int l = left >= V ? V : (left <= 0 ? 0 : int(left));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int RG, int CB>
void block(int64_t n, int64_t k, int64_t kc_max, const float* a, int64_t a_rs, int64_t a_cs,
           const float* b, int64_t ldb, float* c, int64_t ldc, float alpha, float beta) {
  __m256i mask[CB];
#pragma GCC unroll 8
  for (int v = 0; v < CB; ++v) mask[v] = tail_mask(n - int64_t(v) * V);
  const __m256 va = _mm256_set1_ps(alpha);
  for (int64_t pc = 0; pc < k; pc += kc_max) {
    const int64_t kc = lesser(kc_max, k - pc);
    __m256 acc[RG][CB];
#pragma GCC unroll 8
    for (int r = 0; r < RG; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < CB; ++v) acc[r][v] = _mm256_setzero_ps();
    const float* ap = a + pc * a_cs;
    const float* bp = b + pc * ldb;
    for (int64_t p = 0; p < kc; ++p, ap += a_cs, bp += ldb) {
      __m256 bv[CB];
#pragma GCC unroll 8
      for (int v = 0; v < CB; ++v) bv[v] = _mm256_maskload_ps(bp + v * V, mask[v]);
#pragma GCC unroll 8
      for (int r = 0; r < RG; ++r) {
        const __m256 ar = _mm256_broadcast_ss(ap + r * a_rs);
#pragma GCC unroll 8
        for (int v = 0; v < CB; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
      }
    }
    const float beta_p = pc == 0 ? beta : 1.0f;
    if (beta_p == 0.0f) {
#pragma GCC unroll 8
      for (int r = 0; r < RG; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < CB; ++v)
          _mm256_maskstore_ps(c + r * ldc + v * V, mask[v], _mm256_mul_ps(va, acc[r][v]));
    } else {
      const __m256 vb = _mm256_set1_ps(beta_p);
#pragma GCC unroll 8
      for (int r = 0; r < RG; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < CB; ++v) {
          float* cp = c + r * ldc + v * V;
          const __m256 old = _mm256_maskload_ps(cp, mask[v]);
          _mm256_maskstore_ps(cp, mask[v],
                              _mm256_fmadd_ps(vb, old, _mm256_mul_ps(va, acc[r][v])));
        }
    }
  }
}

template <int RG, int CB>
void rows(int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs, int64_t a_cs,
          const float* b, int64_t ldb, float* c, int64_t ldc, float alpha, float beta) {
  constexpr int64_t W = int64_t(CB) * V;
  for (int64_t j = 0; j < n; j += W)
    block<RG, CB>(lesser(W, n - j), k, kc, a, a_rs, a_cs, b + j, ldb, c + j, ldc, alpha, beta);
}

}  // namespace

// Register budget (16 ymm): RG*CB accumulators + CB of B + 1 broadcast (+ masks kept in
// registers or spilled; they are loop invariants). 1-2 rows: 4 vectors (32 columns);
// 3-4 rows: 2 vectors.
void direct_avx2(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                 int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc, float alpha,
                 float beta) {
  for (int64_t i = 0; i < m;) {
    const int64_t left = m - i;
    const float* ai = a + i * a_rs;
    float* ci = c + i * ldc;
    int step;
    switch (left >= 4 ? 4 : left) {
      case 4: rows<4, 2>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 4; break;
      case 3: rows<3, 2>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 3; break;
      case 2: rows<2, 4>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 2; break;
      default: rows<1, 4>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 1; break;
    }
    i += step;
  }
}

}  // namespace pynn::gemm
