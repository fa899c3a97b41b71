// AVX2 instantiation of the direct convolution kernels (conv_direct_impl.h): 8 floats a ymm,
// blocks of 6 positions (or kernel rows) x 16 filters: 12 accumulators + 2 vectors of
// weights (or gradients) + 1 broadcast, of 16 registers.
#include <immintrin.h>

#include "nn/conv_direct_impl.h"

namespace pynn::nn {
namespace {

struct V256 {
  using vec = __m256;
  static constexpr int W = 8;
  static constexpr int R = 6;
  static constexpr int KB = 6;
  // Lanes [0, k) selected: a lane's sign bit set where its index is below k.
  static inline __m256i tail(int k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline vec zero() { return _mm256_setzero_ps(); }
  static inline vec set1(float a) { return _mm256_set1_ps(a); }
  static inline vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  static inline void storeu(float* p, vec x) { _mm256_storeu_ps(p, x); }
  static inline vec loadn(const float* p, int k) { return _mm256_maskload_ps(p, tail(k)); }
  static inline void storen(float* p, vec x, int k) { _mm256_maskstore_ps(p, tail(k), x); }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static inline vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static inline vec sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
  static inline vec where_pos(vec g, vec y) {
    return _mm256_and_ps(g, _mm256_cmp_ps(y, zero(), _CMP_GT_OQ));
  }
  static inline vec relu(vec a) { return _mm256_and_ps(a, _mm256_cmp_ps(a, zero(), _CMP_NLE_UQ)); }
  using mask = __m256;  // all ones in a selected lane
  static inline mask beats(vec u, vec b) {
    return _mm256_or_ps(_mm256_cmp_ps(u, b, _CMP_GT_OQ),
                        _mm256_and_ps(_mm256_cmp_ps(u, u, _CMP_UNORD_Q),
                                      _mm256_cmp_ps(b, b, _CMP_ORD_Q)));
  }
  static inline vec select(mask m, vec u, vec b) { return _mm256_blendv_ps(b, u, m); }
  static inline mask eq(vec a, vec b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static inline mask gt0(vec a) { return _mm256_cmp_ps(a, zero(), _CMP_GT_OQ); }
  static inline mask both(mask a, mask b) { return _mm256_and_ps(a, b); }
  static inline vec keep(mask m, vec g) { return _mm256_and_ps(g, m); }
};

}  // namespace

const DirectConvKernels* direct_conv_kernels_avx2() {
  return direct_impl::Kernels<V256>::table();
}

}  // namespace pynn::nn
