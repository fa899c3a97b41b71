// The fused predict path's bias + ReLU epilogue (nn/dense_chain.cpp), compiled with AVX-512
// flags and called only when cpuid reports AVX-512 (see the dispatch there).
#include <immintrin.h>

#include <cstdint>

namespace pynn::nn {

// The epilogue of a finished m x n tile (n <= 32, row stride ldc) for a ReLU layer: c + bias
// (when bias is not null), then relu as activations.cpp defines it (NaN kept, x > 0 kept,
// everything else +0). The same roundings as gemm::Epilogue::apply with relu_fwd: one add.
void bias_relu_avx512(float* c, int64_t ldc, int64_t m, int64_t n, const float* bias) {
  const __mmask16 k0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  const __mmask16 k1 = n >= 32 ? __mmask16(0xFFFF)
                       : n > 16 ? __mmask16((1u << (n - 16)) - 1) : __mmask16(0);
  const __m512 zero = _mm512_setzero_ps();
  const __m512 b0 = bias ? _mm512_maskz_loadu_ps(k0, bias) : zero;
  const __m512 b1 = bias ? _mm512_maskz_loadu_ps(k1, bias + 16) : zero;
  for (int64_t i = 0; i < m; ++i, c += ldc) {
    __m512 v0 = _mm512_maskz_loadu_ps(k0, c), v1 = _mm512_maskz_loadu_ps(k1, c + 16);
    if (bias) {
      v0 = _mm512_add_ps(v0, b0);
      v1 = _mm512_add_ps(v1, b1);
    }
    // keep x where x > 0 or x is NaN; +0 elsewhere
    const __mmask16 g0 = _mm512_cmp_ps_mask(v0, zero, _CMP_GT_OQ) |
                         _mm512_cmp_ps_mask(v0, v0, _CMP_UNORD_Q);
    const __mmask16 g1 = _mm512_cmp_ps_mask(v1, zero, _CMP_GT_OQ) |
                         _mm512_cmp_ps_mask(v1, v1, _CMP_UNORD_Q);
    _mm512_mask_storeu_ps(c, k0, _mm512_maskz_mov_ps(g0, v0));
    _mm512_mask_storeu_ps(c + 16, k1, _mm512_maskz_mov_ps(g1, v1));
  }
}

}  // namespace pynn::nn
