// AVX-512 instantiation of the vectorised activations (16 floats a vector, masked tails).
//
// min, max, round, the float->int conversion and the shift below use the zero-masking (maskz)
// forms with every lane selected rather than the plain intrinsics. With all 16 mask bits set
// GCC emits exactly the same unmasked instruction, but the plain forms pass
// _mm512_undefined_*() as the merge source, a deliberately uninitialised variable in which
// GCC 12.2 sees a "may be used uninitialized" read (GCC bug 105593, hundreds of warnings in
// avx512fintrin.h, and a hard error under -Werror).
#include <immintrin.h>

#include "nn/activations_simd_impl.h"

namespace pynn::nn {
namespace {

struct V512 {
  using v = __m512;
  static constexpr int64_t W = 16;
  static constexpr __mmask16 kAll = 0xFFFF;  // every lane (see the note at the top)
  static inline __mmask16 tail(int64_t k) { return __mmask16((1u << k) - 1u); }
  static inline v load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, v x) { _mm512_storeu_ps(p, x); }
  static inline v loadn(const float* p, int64_t k) { return _mm512_maskz_loadu_ps(tail(k), p); }
  static inline void storen(float* p, v x, int64_t k) { _mm512_mask_storeu_ps(p, tail(k), x); }
  static inline v set1(float a) { return _mm512_set1_ps(a); }
  static inline v add(v a, v b) { return _mm512_add_ps(a, b); }
  static inline v sub(v a, v b) { return _mm512_sub_ps(a, b); }
  static inline v mul(v a, v b) { return _mm512_mul_ps(a, b); }
  static inline v div(v a, v b) { return _mm512_div_ps(a, b); }
  static inline v fma(v a, v b, v c) { return _mm512_fmadd_ps(a, b, c); }
  static inline v max(v a, v b) { return _mm512_maskz_max_ps(kAll, a, b); }
  static inline v min(v a, v b) { return _mm512_maskz_min_ps(kAll, a, b); }
  static inline v abs(v a) { return _mm512_abs_ps(a); }
  static inline v neg_abs(v a) {
    return _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(a), _mm512_set1_epi32(int(0x80000000u))));
  }
  static inline v copysign(v mag, v sgn) {
    const __m512i m = _mm512_set1_epi32(0x7fffffff);
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(m, _mm512_castps_si512(mag),
                                                         _mm512_castps_si512(sgn), 0xca));
  }
  static inline v round(v a) {
    return _mm512_maskz_roundscale_ps(kAll, a, _MM_FROUND_TO_NEAREST_INT);
  }
  using mask = __mmask16;
  static inline mask cmp_gt(v a, v b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static inline mask cmp_lt(v a, v b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static inline mask isnan(v a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static inline v select(mask m, v a, v b) { return _mm512_mask_blend_ps(m, b, a); }
  static inline v pow2i(v n) {
    const __m512i e =
        _mm512_add_epi32(_mm512_maskz_cvtps_epi32(kAll, n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, e, 23));
  }
};

}  // namespace

const SimdActivation* simd_activations_avx512() { return simd_impl::Kernels<V512>::table(); }

}  // namespace pynn::nn
