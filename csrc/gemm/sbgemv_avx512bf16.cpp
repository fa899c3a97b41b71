// The one-row bf16 product (sbgemv.h) in the arithmetic of the AVX512_BF16 micro-kernel
// (sbgemm_avx512bf16.cpp). Compiled with -mavx512bf16; chosen only when that kernel is.
//
// Per K pair q and 16 columns: rows 2q and 2q+1 of W loaded as float32, rounded together by
// one VCVTNE2PS2BF16 and interleaved by one word permute into the 16 pair words the packer
// would have stored, then one VDPBF16PS with x's pair word broadcast, as the micro-kernel's
// step for its row. The subnormal fix-up that makes VCVTNE2PS2BF16 agree with
// bf16_round_bits runs only where the conversion gives a zero (to_bf16x32): weights are
// almost never zero or subnormal, and the fix-up is most of the conversion's cost.
#include <immintrin.h>

#include <algorithm>

#include "gemm/sbgemm_avx512bf16.h"
#include "gemm/sbgemv.h"

namespace pynn::gemm {
namespace {

// x's pair words: word q = (x[2q], x[2q+1]), a missing x[k] as zero, as the A packer
// writes them (32 floats rounded per conversion come out in order, pairs already adjacent).
void prep(const float* x, int64_t k, uint32_t* xp) {
  for (int64_t p = 0; p < k; p += 32) {
    const __m512 lo = _mm512_maskz_loadu_ps(first(k - p), x + p);
    const __m512 hi = _mm512_maskz_loadu_ps(first(k - p - 16), x + p + 16);
    _mm512_mask_storeu_epi32(xp + p / 2, first((k - p + 1) / 2), to_bf16x32(lo, hi));
  }
}

// W's rows are prefetched this many K pairs ahead, every line a block reads: measured on a
// Zen 4 (1-row predict of the 784-256-128-10 MLP, 1 thread, best of 40 windows of 100 calls,
// two runs, load 5.6): none 11.3-11.8 us, 1 pair 11.1, 2 pairs 11.2, 3 pairs 11.0-11.2,
// 4 pairs 11.4-11.7.
constexpr int kPrefetchPairs = 2;

// 16 floats at p, those of lanes off in m as zeros (kFull: every lane on, a plain load).
template <bool kFull>
inline __m512 load16(const char* p, __mmask16 m) {
  if (kFull) return _mm512_loadu_ps(p);
  return _mm512_maskz_loadu_ps(m, p);
}

// Columns [0, 16 * CB) (those < nv written) of one row, all K panels; kFull: nv = 16 CB.
// W is addressed in bytes from one pointer per K pair, every vector at a constant offset from
// it or from it plus a row (the compiler then keeps a handful of registers, not one pointer
// per vector and row).
template <int CB, bool kFull>
void cols_of(const uint32_t* xp, int64_t k, int64_t kc, const float* w, int64_t ldw,
             int64_t nv, float* y) {
  const __m512i idx = pair_index();
  __mmask16 mk[CB];
  for (int v = 0; v < CB; ++v) mk[v] = first(nv - 16 * v);
  const int64_t row = ldw * int64_t(sizeof(float)), ahead = 2 * kPrefetchPairs * row;
  __m512 tot[CB];  // every K panel's sum so far (k > 0: the first panel sets it)
  for (int v = 0; v < CB; ++v) tot[v] = _mm512_setzero_ps();
  for (int64_t pc = 0; pc < k; pc += kc) {
    const int64_t kcc = std::min(kc, k - pc);
    __m512 acc[CB];
    for (int v = 0; v < CB; ++v) acc[v] = _mm512_setzero_ps();
    const int64_t q0 = pc / 2, q1 = q0 + kcc / 2;  // whole pairs (a panel starts on a pair)
    const char* r0 = reinterpret_cast<const char*>(w + 2 * q0 * ldw);
    for (int64_t q = q0; q < q1; ++q, r0 += 2 * row) {
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(int(xp[q]));
#pragma GCC unroll 8
      for (int v = 0; v < CB; ++v) {
        _mm_prefetch(r0 + ahead + 64 * v, _MM_HINT_T0);  // past K: harmless
        _mm_prefetch(r0 + ahead + row + 64 * v, _MM_HINT_T0);
        const __m512bh wv = pair_words(load16<kFull>(r0 + 64 * v, mk[v]),
                                       load16<kFull>(r0 + row + 64 * v, mk[v]), idx);
        acc[v] = _mm512_dpbf16_ps(acc[v], xb, wv);
      }
    }
    if (kcc % 2 != 0) {  // the last row alone, paired with the packer's zero row
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(int(xp[q1]));
      for (int v = 0; v < CB; ++v) {
        const __m512bh wv = pair_words(load16<kFull>(r0 + 64 * v, mk[v]), _mm512_setzero_ps(), idx);
        acc[v] = _mm512_dpbf16_ps(acc[v], xb, wv);
      }
    }
    // As the micro-kernel stores a panel: C = acc first, then C = 1 * C + acc (one FMA).
    for (int v = 0; v < CB; ++v)
      tot[v] = pc == 0 ? acc[v] : _mm512_fmadd_ps(_mm512_set1_ps(1.0f), tot[v], acc[v]);
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

const SbRowKernel kSbRowAvx512Bf16 = {prep, {cols<1>, cols<2>, cols<3>, cols<4>,
                                             cols<5>, cols<6>, cols<7>, cols<8>}};

}  // namespace pynn::gemm
