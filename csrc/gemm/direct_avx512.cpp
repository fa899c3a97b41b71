// AVX-512 direct small-m kernel: the product of a few rows of A with B read in place, for
// predicting one or a few samples, where packing all of B would cost more than the product.
//
// Invariants (see kernel.h): per element of C the operations are those of ukr_avx512_12x32 —
// one accumulator per K panel starting at zero, _mm512_fmadd_ps(a, b, acc) in increasing p,
// then alpha * acc (beta_p == 0) or fmadd(beta_p, C, alpha * acc) — so the result is bitwise
// that of the packed path. Rows are taken RG at a time and columns CB vectors at a time; that
// blocking only changes which elements share a loop, never an element's arithmetic. Column
// tails use masked loads and stores, so nothing past column n is read or written.
#include <immintrin.h>

#include "gemm/kernel.h"

namespace pynn::gemm {
namespace {

// Not std::min: an inline function from a shared header, instantiated in this file with ISA
// flags, could be the copy the linker keeps for the portable files too (ODR), and run on a CPU
// without the ISA.
inline int64_t lesser(int64_t x, int64_t y) { return x < y ? x : y; }

constexpr int V = 16;  // floats per zmm

inline __mmask16 tail_mask(int64_t left) {
  if (left >= V) return __mmask16(0xFFFF);
  if (left <= 0) return __mmask16(0);
  return __mmask16((1u << left) - 1u);
}

// RG rows x up to CB*V columns (n of them), all K panels.
template <int RG, int CB>
void block(int64_t n, int64_t k, int64_t kc_max, const float* a, int64_t a_rs, int64_t a_cs,
           const float* b, int64_t ldb, float* c, int64_t ldc, float alpha, float beta) {
  __mmask16 mask[CB];
#pragma GCC unroll 8
  for (int v = 0; v < CB; ++v) mask[v] = tail_mask(n - int64_t(v) * V);
  const __m512 va = _mm512_set1_ps(alpha);
  for (int64_t pc = 0; pc < k; pc += kc_max) {
    const int64_t kc = lesser(kc_max, k - pc);
    __m512 acc[RG][CB];
#pragma GCC unroll 8
    for (int r = 0; r < RG; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < CB; ++v) acc[r][v] = _mm512_setzero_ps();
    const float* ap = a + pc * a_cs;
    const float* bp = b + pc * ldb;
    for (int64_t p = 0; p < kc; ++p, ap += a_cs, bp += ldb) {
      __m512 bv[CB];
#pragma GCC unroll 8
      for (int v = 0; v < CB; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], bp + v * V);
#pragma GCC unroll 8
      for (int r = 0; r < RG; ++r) {
        const __m512 ar = _mm512_set1_ps(ap[r * a_rs]);
#pragma GCC unroll 8
        for (int v = 0; v < CB; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
      }
    }
    const float beta_p = pc == 0 ? beta : 1.0f;
    if (beta_p == 0.0f) {
#pragma GCC unroll 8
      for (int r = 0; r < RG; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < CB; ++v)
          _mm512_mask_storeu_ps(c + r * ldc + v * V, mask[v], _mm512_mul_ps(va, acc[r][v]));
    } else {
      const __m512 vb = _mm512_set1_ps(beta_p);
#pragma GCC unroll 8
      for (int r = 0; r < RG; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < CB; ++v) {
          float* cp = c + r * ldc + v * V;
          const __m512 old = _mm512_maskz_loadu_ps(mask[v], cp);
          _mm512_mask_storeu_ps(cp, mask[v],
                                _mm512_fmadd_ps(vb, old, _mm512_mul_ps(va, acc[r][v])));
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

// Register budget (32 zmm): RG*CB accumulators + CB of B + 1 broadcast. One or two rows take
// 8 vectors (128 columns) so that 8+ independent FMA chains hide the FMA latency; more rows
// take 4 vectors, up to 6 rows (24 + 4 + 1 registers).
void direct_avx512(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                   int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc, float alpha,
                   float beta) {
  for (int64_t i = 0; i < m;) {
    const int64_t left = m - i;
    const float* ai = a + i * a_rs;
    float* ci = c + i * ldc;
    int step;
    switch (left >= 6 ? 6 : left) {
      case 6: rows<6, 4>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 6; break;
      case 5: rows<5, 4>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 5; break;
      case 4: rows<4, 4>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 4; break;
      case 3: rows<3, 4>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 3; break;
      case 2: rows<2, 8>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 2; break;
      default: rows<1, 8>(n, k, kc, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta); step = 1; break;
    }
    i += step;
  }
}

}  // namespace pynn::gemm
