// The one-row bf16 product (sbgemv.h) in the arithmetic of the emulated kernel on the avx512
// float32 micro-kernel (sbgemm.cpp, emulated_from; kernels_avx512.cpp): per column, one
// float32 accumulator from zero per K panel, fmadd(bf16(x[p]), bf16(W[p][j]), acc) in
// increasing p, the panel stored as 1 * acc and added as fmadd(1, C, 1 * acc). W is rounded
// in registers by the integer form of bf16_round_bits (sbgemm.cpp's round_in_place).
#include <immintrin.h>

#include <algorithm>

#include "gemm/avx512_lanes.h"
#include "gemm/sbgemv.h"

namespace pynn::gemm {
namespace {

// (GCC 12 warns inside _mm512_srli_epi32, whose unused merge operand is "undefined": GCC bug
// 105593, an error under -Werror.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// bf16_round_bits on 16 lanes: nearest even; a result with a zero exponent (a subnormal
// flushed) keeps only its sign; a NaN keeps its top half, made quiet. Only zeros, subnormals,
// infinities and NaNs need more than the rounding add (a normal float never rounds to a zero
// exponent), and one VFPCLASSPS tells whether a vector holds any (under DAZ a subnormal
// classes as a zero, caught all the same).
constexpr int kNotNormal = 0xBF;  // VFPCLASSPS: NaNs, zeros, infinities, denormals

inline __m512 round16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i top = _mm512_set1_epi32(int(0xFFFF0000u));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_and_si512(
      _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), odd), top);
  if (_mm512_fpclass_ps_mask(x, kNotNormal) == 0) return _mm512_castsi512_ps(r);
  const __mmask16 tiny = _mm512_testn_epi32_mask(r, _mm512_set1_epi32(0x7F800000));
  r = _mm512_mask_and_epi32(r, tiny, r, _mm512_set1_epi32(int(0x80000000u)));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  r = _mm512_mask_and_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)), top);
  return _mm512_castsi512_ps(r);
}
#pragma GCC diagnostic pop

// x rounded to bf16, as float32 bits (xp[k] unused).
void prep(const float* x, int64_t k, uint32_t* xp) {
  for (int64_t p = 0; p < k; p += 16) {
    const __mmask16 m = first(k - p);
    _mm512_mask_storeu_ps(xp + p, m, round16(_mm512_maskz_loadu_ps(m, x + p)));
  }
}

// W's rows are prefetched this many rows ahead (every line a block reads), as the float32
// one-row kernel does (kGemvPrefetchRows in kernels_avx512.cpp).
constexpr int kPrefetchRows = 4;

// Columns [0, 16 * CB) (those < nv written) of one row, all K panels; kFull: nv = 16 CB,
// loads unmasked. W is addressed in bytes from one pointer per row (as the AVX512_BF16 row
// kernel, and for the same reason: a pointer per vector does not fit the registers).
template <int CB, bool kFull>
void cols_of(const uint32_t* xp, int64_t k, int64_t kc, const float* w, int64_t ldw,
             int64_t nv, float* y) {
  const float* xr = reinterpret_cast<const float*>(xp);
  __mmask16 mk[CB];
  for (int v = 0; v < CB; ++v) mk[v] = first(nv - 16 * v);
  const int64_t row = ldw * int64_t(sizeof(float)), ahead = kPrefetchRows * row;
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 tot[CB];  // every K panel's sum so far (k > 0: the first panel sets it)
  for (int v = 0; v < CB; ++v) tot[v] = _mm512_setzero_ps();
  for (int64_t pc = 0; pc < k; pc += kc) {
    const int64_t p1 = std::min(k, pc + kc);
    __m512 acc[CB];
    for (int v = 0; v < CB; ++v) acc[v] = _mm512_setzero_ps();
    const char* r = reinterpret_cast<const char*>(w + pc * ldw);
    for (int64_t p = pc; p < p1; ++p, r += row) {
      const __m512 xb = _mm512_set1_ps(xr[p]);
#pragma GCC unroll 8
      for (int v = 0; v < CB; ++v) {
        _mm_prefetch(r + ahead + 64 * v, _MM_HINT_T0);  // past K: harmless
        const __m512 wv = kFull ? _mm512_loadu_ps(r + 64 * v)
                                : _mm512_maskz_loadu_ps(mk[v], r + 64 * v);
        acc[v] = _mm512_fmadd_ps(xb, round16(wv), acc[v]);
      }
    }
    for (int v = 0; v < CB; ++v)
      tot[v] = pc == 0 ? _mm512_mul_ps(one, acc[v])
                       : _mm512_fmadd_ps(one, tot[v], _mm512_mul_ps(one, acc[v]));
  }
  for (int v = 0; v < CB; ++v) _mm512_mask_storeu_ps(y + 16 * v, mk[v], tot[v]);
}

template <int CB>
void cols(const uint32_t* xp, int64_t k, int64_t kc, const float* w, int64_t ldw, int64_t nv,
          float* y) {
  if (nv == 16 * CB) cols_of<CB, true>(xp, k, kc, w, ldw, nv, y);
  else cols_of<CB, false>(xp, k, kc, w, ldw, nv, y);
}

}  // namespace

const SbRowKernel kSbRowEmulatedAvx512 = {prep, {cols<1>, cols<2>, cols<3>, cols<4>,
                                             cols<5>, cols<6>, cols<7>, cols<8>}};

}  // namespace pynn::gemm
