// What the AVX512_BF16 files (sbgemm_avx512bf16.cpp, sbgemv_avx512bf16.cpp) share: the fix-up
// that makes VCVTNE2PS2BF16 round as bf16_round_bits (sbgemm.h). Include only from files
// compiled with -mavx512bf16: the function has internal linkage, a copy per such file.
#pragma once
#include <immintrin.h>

namespace pynn::gemm {
namespace {

// VCVTNE2PS2BF16 rounds exactly as bf16_round_bits (nearest even; a NaN keeps its top half
// with the quiet bit set; overflow to infinity) but reads every subnormal input as zero, while
// bf16_round_bits rounds the largest ones (|x| >= FLT_MIN - 2^-134, within half a bf16 step
// of FLT_MIN) up to +-FLT_MIN and flushes only the rest. Those few are set to +-FLT_MIN first.
inline __m512 fix_subnormals(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i mag = _mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 up = _mm512_cmplt_epu32_mask(
      _mm512_sub_epi32(mag, _mm512_set1_epi32(0x007F8000)), _mm512_set1_epi32(0x8000));
  // up lanes: (u & sign) | FLT_MIN, as one ternary-logic op on (u, sign, FLT_MIN): A&B | C
  return _mm512_castsi512_ps(_mm512_mask_ternarylogic_epi32(
      u, up, _mm512_set1_epi32(int(0x80000000u)), _mm512_set1_epi32(0x00800000), 0xEA));
}

}  // namespace
}  // namespace pynn::gemm
