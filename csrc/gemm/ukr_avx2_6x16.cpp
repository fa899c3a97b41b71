// AVX2 + FMA micro-kernel, 6 x 16: 12 ymm accumulators, 2 ymm of B, 1 broadcast of A.
#include <immintrin.h>

#include "gemm/kernel.h"

namespace pynn::gemm {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;
// Largest m the direct (unpacked) kernel takes; measured with benchmarks/bench_gemm_small.py
// under PYNN_GEMM_DIRECT_MAX_M=0 and =64.
// Measured (AVX2 kernel on the same EPYC): direct wins up to m = 8-11 on MLP-sized weights and
// loses from m = 24; it re-reads B once per 4 rows.
constexpr int kDirectMaxM = 8;

void ukr_avx2_6x16(int64_t k, const float* __restrict a, const float* __restrict b, float* c,
                   int64_t ldc, float alpha, float beta) {
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += MR;
    b += NR;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc[i][0]));
      _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      float* ci = c + i * ldc;
      _mm256_storeu_ps(ci, _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), _mm256_mul_ps(va, acc[i][0])));
      _mm256_storeu_ps(ci + 8,
                       _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), _mm256_mul_ps(va, acc[i][1])));
    }
  }
}

}  // namespace

const KernelInfo kKernelAvx2 = {"avx2_6x16", Arch::avx2, MR, NR, 256, 1020, 512, ukr_avx2_6x16,
                                   direct_avx2, kDirectMaxM};

}  // namespace pynn::gemm
