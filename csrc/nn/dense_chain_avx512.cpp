// The fused predict path's packing of a block's rows (nn/dense_chain.cpp) for the AVX-512
// kernel's 12-row micro-panels, compiled with AVX-512 flags and called only when cpuid
// reports AVX-512 (see the dispatch there). Same layout as gemm::pack_a<12> with a unit
// column stride (panel element (p, i) at p * 12 + i): a pure copy, so the packed values and
// everything computed from them are those of the scalar pack.
//
// The scalar pack is one load and one store per element; here 16 columns of 12 rows are
// loaded as 12 vectors, transposed in registers (the usual 4-stage 16 x 16 network, rows
// 12..15 zero) and written as 16 masked stores of 12 floats.
// GCC 12 reports its own _mm512_undefined_ps() (the don't-care source inside the shuffle
// intrinsics) as maybe-uninitialized once inlined; nothing here reads an undefined value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

namespace pynn::nn {
namespace {

// r[i] = row i (16 columns) -> r'[p] = column p (lanes 0..15 = rows 0..15).
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  // u[4g + c], 128-bit lane L: rows 4g..4g+3 of column 4L + c
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  // column 4L + c = lane L of u[c], u[4 + c], u[8 + c], u[12 + c]
  for (int c = 0; c < 4; ++c) {
    const __m512 v02 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);  // lanes 0, 2 of each
    const __m512 v13 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);  // lanes 1, 3
    const __m512 w02 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    const __m512 w13 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[0 + c] = _mm512_shuffle_f32x4(v02, w02, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v13, w13, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(v02, w02, 0xDD);
    r[12 + c] = _mm512_shuffle_f32x4(v13, w13, 0xDD);
  }
}

}  // namespace

// Rows [0, m) (m a multiple of 12) x columns [0, kc) of src (row stride ld) into dst. Rows
// [0, pf_rows) of src exist: while packing a group, the same columns of the next group are
// prefetched (the first layer's rows come from memory; a group ahead hides most of that).
void pack_rows12_avx512(int64_t m, int64_t kc, const float* src, int64_t ld, float* dst,
                        int64_t pf_rows) {
  constexpr __mmask16 kRows = 0x0FFF;
  for (int64_t ir = 0; ir + 12 <= m; ir += 12, src += 12 * ld, dst += 12 * kc) {
    const bool pf = ir + 24 <= pf_rows;
    int64_t p0 = 0;
    for (; p0 + 16 <= kc; p0 += 16) {
      if (pf) {
#pragma GCC unroll 12
        for (int i = 12; i < 24; ++i)
          _mm_prefetch(reinterpret_cast<const char*>(src + i * ld + p0), _MM_HINT_T0);
      }
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 12; ++i) r[i] = _mm512_loadu_ps(src + i * ld + p0);
#pragma GCC unroll 4
      for (int i = 12; i < 16; ++i) r[i] = _mm512_setzero_ps();
      transpose16(r);
#pragma GCC unroll 16
      for (int p = 0; p < 16; ++p) _mm512_mask_storeu_ps(dst + (p0 + p) * 12, kRows, r[p]);
    }
    for (; p0 < kc; ++p0)
      for (int i = 0; i < 12; ++i) dst[p0 * 12 + i] = src[i * ld + p0];
  }
}

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
