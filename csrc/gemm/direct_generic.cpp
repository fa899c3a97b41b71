// Portable direct small-m kernel, the twin of ukr_generic_4x16 (compiled for the baseline ISA
// like it).
//
// Invariants (see kernel.h): per element of C the operations are those of ukr_generic_4x16 —
// acc starts at 0 on each K panel, acc += a * b in increasing p, then alpha * acc
// (beta_p == 0) or beta_p * C + alpha * acc — written as the same expressions so that the
// compiler rounds them the same way (on x86-64 baseline there is no FMA to contract into).
// Columns go NB at a time; a tail block touches only its nv valid columns.
#include <algorithm>

#include "gemm/kernel.h"

namespace pynn::gemm {
namespace {

constexpr int NB = 32;

template <bool Full>
void block(int64_t nv, int64_t k, int64_t kc_max, const float* a, int64_t a_cs, const float* b,
           int64_t ldb, float* c, float alpha, float beta) {
  const int64_t w = Full ? NB : nv;
  for (int64_t pc = 0; pc < k; pc += kc_max) {
    const int64_t kc = std::min(kc_max, k - pc);
    float acc[NB] = {};
    const float* bp = b + pc * ldb;
    for (int64_t p = 0; p < kc; ++p, bp += ldb) {
      const float ai = a[(pc + p) * a_cs];
      for (int64_t j = 0; j < w; ++j) acc[j] += ai * bp[j];
    }
    const float beta_p = pc == 0 ? beta : 1.0f;
    if (beta_p == 0.0f) {
      for (int64_t j = 0; j < w; ++j) c[j] = alpha * acc[j];
    } else {
      for (int64_t j = 0; j < w; ++j) c[j] = beta_p * c[j] + alpha * acc[j];
    }
  }
}

}  // namespace

void direct_generic(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                    int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                    float alpha, float beta) {
  for (int64_t i = 0; i < m; ++i) {
    const float* ai = a + i * a_rs;
    float* ci = c + i * ldc;
    int64_t j = 0;
    for (; j + NB <= n; j += NB) block<true>(NB, k, kc, ai, a_cs, b + j, ldb, ci + j, alpha, beta);
    if (j < n) block<false>(n - j, k, kc, ai, a_cs, b + j, ldb, ci + j, alpha, beta);
  }
}

}  // namespace pynn::gemm
