// AVX2 + FMA instantiation of the vectorised activations (8 floats a vector; the < 8 float
// tail is copied through a small stack buffer so nothing past n is ever read or written).
#include <immintrin.h>

#include <cstring>

#include "nn/activations_simd_impl.h"

namespace pynn::nn {
namespace {

struct V256 {
  using v = __m256;
  static constexpr int64_t W = 8;
  static inline v load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, v x) { _mm256_storeu_ps(p, x); }
  static inline v loadn(const float* p, int64_t k) {
    alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(buf, p, size_t(k) * sizeof(float));
    return _mm256_load_ps(buf);
  }
  static inline void storen(float* p, v x, int64_t k) {
    alignas(32) float buf[8];
    _mm256_store_ps(buf, x);
    std::memcpy(p, buf, size_t(k) * sizeof(float));
  }
  static inline v set1(float a) { return _mm256_set1_ps(a); }
  static inline v add(v a, v b) { return _mm256_add_ps(a, b); }
  static inline v sub(v a, v b) { return _mm256_sub_ps(a, b); }
  static inline v mul(v a, v b) { return _mm256_mul_ps(a, b); }
  static inline v div(v a, v b) { return _mm256_div_ps(a, b); }
  static inline v fma(v a, v b, v c) { return _mm256_fmadd_ps(a, b, c); }
  static inline v max(v a, v b) { return _mm256_max_ps(a, b); }
  static inline v min(v a, v b) { return _mm256_min_ps(a, b); }
  static inline v abs(v a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static inline v neg_abs(v a) { return _mm256_or_ps(_mm256_set1_ps(-0.0f), a); }
  static inline v copysign(v mag, v sgn) {
    const v s = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sgn));
  }
  static inline v round(v a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  using mask = __m256;
  static inline mask cmp_gt(v a, v b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static inline mask cmp_lt(v a, v b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static inline mask isnan(v a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  static inline v select(mask m, v a, v b) { return _mm256_blendv_ps(b, a, m); }
  static inline v pow2i(v n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
};

}  // namespace

const SimdActivation* simd_activations_avx2() { return simd_impl::Kernels<V256>::table(); }

}  // namespace pynn::nn
