// What the AVX512_BF16 files (sbgemm_avx512bf16.cpp, sbgemv_avx512bf16.cpp) share: rounding
// to bf16 as bf16_round_bits (sbgemm.h) with VCVTNE2PS2BF16, and the pair words of the
// kernel's layout. Include only from files compiled with -mavx512bf16: the functions have
// internal linkage, a copy per such file.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "gemm/avx512_lanes.h"

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

// even and odd rounded to 32 bf16 (even's 16 first), bit for bit bf16_round_bits. Only an
// input VCVTNE2PS2BF16 turns into a zero can need fix_subnormals (a subnormal within half a
// bf16 step of FLT_MIN, which bf16_round_bits rounds up to +-FLT_MIN and the instruction
// reads as zero), so the fix-up runs on a zero result only: one test per 32 weights, where
// finding the subnormals themselves takes integer ops on every input (VFPCLASSPS cannot tell
// them: under DAZ, which pynn's calls run with, it classes them as zeros).
inline __m512i to_bf16x32(__m512 even, __m512 odd) {
  const __m512i r = (__m512i)_mm512_cvtne2ps_pbh(odd, even);
  if (_mm512_testn_epi16_mask(r, _mm512_set1_epi16(0x7FFF)) == 0) return r;
  return (__m512i)_mm512_cvtne2ps_pbh(fix_subnormals(odd), fix_subnormals(even));
}

// 16 pair words (W[2q][j] low, W[2q+1][j] high) from the two rows' 16 floats.
inline __m512bh pair_words(__m512 even, __m512 odd, __m512i idx) {
  return (__m512bh)_mm512_permutexvar_epi16(idx, to_bf16x32(even, odd));
}

// The word order that interleaves the conversion's halves (even row's 16, then odd row's).
inline __m512i pair_index() {
  alignas(64) static const uint16_t idx[32] = {
      0, 16, 1, 17, 2, 18, 3, 19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_load_si512(idx);
}

}  // namespace
}  // namespace pynn::gemm
