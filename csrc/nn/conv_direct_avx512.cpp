// AVX-512 instantiation of the direct convolution kernels (conv_direct_impl.h): 16 floats a
// zmm, blocks of 12 positions (or kernel rows) x 32 filters: 24 accumulators + 2 vectors of
// weights (or gradients) + 1 broadcast, of 32 registers.
#include <immintrin.h>

#include "nn/conv_direct_impl.h"

namespace pynn::nn {
namespace {

struct V512 {
  using vec = __m512;
  static constexpr int W = 16;
  static constexpr int R = 12;
  static constexpr int KB = 12;
  static inline __mmask16 tail(int k) { return __mmask16((1u << k) - 1u); }
  static inline vec zero() { return _mm512_setzero_ps(); }
  static inline vec set1(float a) { return _mm512_set1_ps(a); }
  static inline vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static inline void storeu(float* p, vec x) { _mm512_storeu_ps(p, x); }
  static inline vec loadn(const float* p, int k) { return _mm512_maskz_loadu_ps(tail(k), p); }
  static inline void storen(float* p, vec x, int k) { _mm512_mask_storeu_ps(p, tail(k), x); }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static inline vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
  static inline vec where_pos(vec g, vec y) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, zero(), _CMP_GT_OQ), g);
  }
  static inline vec relu(vec a) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, zero(), _CMP_NLE_UQ), a);
  }
  using mask = __mmask16;
  static inline mask beats(vec u, vec b) {
    return _mm512_cmp_ps_mask(u, b, _CMP_GT_OQ) |
           (_mm512_cmp_ps_mask(u, u, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(b, b, _CMP_ORD_Q));
  }
  static inline vec select(mask m, vec u, vec b) { return _mm512_mask_blend_ps(m, b, u); }
  static inline mask eq(vec a, vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static inline mask gt0(vec a) { return _mm512_cmp_ps_mask(a, zero(), _CMP_GT_OQ); }
  static inline mask both(mask a, mask b) { return mask(a & b); }
  static inline vec keep(mask m, vec g) { return _mm512_maskz_mov_ps(m, g); }
};

}  // namespace

const DirectConvKernels* direct_conv_kernels_avx512() {
  return direct_impl::Kernels<V512>::table();
}

}  // namespace pynn::nn
