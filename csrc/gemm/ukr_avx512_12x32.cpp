// AVX-512 micro-kernel, 12 x 32: 24 zmm accumulators, 2 zmm of B, A broadcast from memory.
#include <immintrin.h>

#include "gemm/kernel.h"

namespace pynn::gemm {
namespace {

constexpr int MR = 12;
constexpr int NR = 32;
// Largest m the direct (unpacked) kernel takes; measured with benchmarks/bench_gemm_small.py
// under PYNN_GEMM_DIRECT_MAX_M=0 and =64.
// Measured on an EPYC (AVX-512, 1 thread, 784x256 and 256x128 weights): the direct kernel
// beats packing up to m = 64 there; 16 leaves a margin for large K x N, where B no longer
// sits in L2 and the direct path re-reads it once per 6 rows.
constexpr int kDirectMaxM = 16;

void ukr_avx512_12x32(int64_t k, const float* __restrict a, const float* __restrict b, float* c,
                      int64_t ldc, float alpha, float beta) {
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t p = 0; p < k; ++p) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR + 16), _MM_HINT_T0);
    const __m512 b0 = _mm512_load_ps(b);
    const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += MR;
    b += NR;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, acc[i][0]));
      _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      float* ci = c + i * ldc;
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), _mm512_mul_ps(va, acc[i][0])));
      _mm512_storeu_ps(ci + 16,
                       _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), _mm512_mul_ps(va, acc[i][1])));
    }
  }
}

}  // namespace

const KernelInfo kKernelAvx512 = {"avx512_12x32", Arch::avx512, MR, NR, 384, 1020, 480,
                                  ukr_avx512_12x32, direct_avx512, kDirectMaxM};

}  // namespace pynn::gemm
