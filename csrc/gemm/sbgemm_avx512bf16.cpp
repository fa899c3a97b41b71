// The AVX512_BF16 micro-kernel of the bf16 GEMM (sbgemm.h): a 12 x 32 tile of C in 24 zmm
// accumulators. Each VDPBF16PS step adds, per float32 lane, the two products of one K pair
// (packed A holds the pair of row i as one 32-bit word, broadcast; packed B holds the pairs of
// 16 columns in a zmm). Compiled with -mavx512bf16; called only when cpuid reports it.
#include <immintrin.h>

#include "gemm/sbgemm.h"

namespace pynn::gemm {
namespace {

constexpr int kMR = 12;
constexpr int kNR = 32;

void ukr_avx512bf16(int64_t kcp, const void* av, const void* bv, float* c, int64_t ldc,
                    float beta) {
  const int* a = static_cast<const int*>(av);             // [kcp/2][12] pairs
  const __m512i* b = static_cast<const __m512i*>(bv);     // [kcp/2][2] zmm of 16 pairs
  __m512 acc[kMR][2];
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t q = 0; q < kcp / 2; ++q) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b + 2 * q);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + 2 * q + 1);
#pragma GCC unroll 12
    for (int i = 0; i < kMR; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(a[q * kMR + i]);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
  }
  const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      _mm512_storeu_ps(ci, acc[i][0]);
      _mm512_storeu_ps(ci + 16, acc[i][1]);
    } else {
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), acc[i][0]));
      _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), acc[i][1]));
    }
  }
}

}  // namespace

const SbKernelInfo kSbKernelAvx512Bf16 = {
    "avx512_bf16_12x32", kMR, kNR, 512, 960, 480, 2, SbLayout::pairs, SbLayout::pairs,
    ukr_avx512bf16, nullptr, nullptr, nullptr};

}  // namespace pynn::gemm
