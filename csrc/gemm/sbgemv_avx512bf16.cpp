// The few-row bf16 product (sbgemv.h) in the arithmetic of the AVX512_BF16 micro-kernel
// (sbgemm_avx512bf16.cpp). Compiled with -mavx512bf16; chosen only when that kernel is.
//
// Per K pair q and 16 columns: rows 2q and 2q+1 of W loaded as float32, rounded together by
// one VCVTNE2PS2BF16 and interleaved by one word permute into the 16 pair words the packer
// would have stored, then for each row of X one VDPBF16PS with its pair word broadcast, as
// the micro-kernel's step for that row. The subnormal fix-up that makes VCVTNE2PS2BF16 agree
// with bf16_round_bits runs only where the conversion gives a zero (to_bf16x32): weights are
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

// Vectors of 16 columns per block for r rows: the r * V sums and a K pair's V pair words stay
// in registers beside the word index, one broadcast and the conversion's temporaries (32 zmm
// registers: (r + 1) V <= 27).
constexpr int vectors_for(int r) { return r <= 2 ? 8 : r <= 4 ? 27 / (r + 1) : r <= 7 ? 3 : 2; }

// 16 floats at p, those of lanes off in m as zeros (kFull: every lane on, a plain load).
template <bool kFull>
inline __m512 load16(const char* p, __mmask16 m) {
  if (kFull) return _mm512_loadu_ps(p);
  return _mm512_maskz_loadu_ps(m, p);
}

template <bool kFull>
inline __m512 load16(const float* p, __mmask16 m) {
  return load16<kFull>(reinterpret_cast<const char*>(p), m);
}

// Columns [0, 16 V) (those < nv written) of R rows, all K panels (k > 0); kFull: nv = 16 V.
// W is addressed in bytes from one pointer per K pair, every vector at a constant offset from
// it or from it plus a row (the compiler then keeps a handful of registers, not one pointer
// per vector and row). Each panel's sums go to Y as the micro-kernel stores a panel: Y = acc
// on the first, then Y = 1 * Y + acc (one FMA).
template <int R, int V, bool kFull>
struct Block {
  static void run(const uint32_t* xp, int64_t k, int64_t kc, const float* w,
                  int64_t ldw, int64_t nv, float* y, int64_t ldy) {
    const __m512i idx = pair_index();
    __mmask16 mk[V];
    for (int v = 0; v < V; ++v) mk[v] = first(nv - 16 * v);
    const int64_t row = ldw * int64_t(sizeof(float)), ahead = 2 * kPrefetchPairs * row;
    for (int64_t pc = 0; pc < k; pc += kc) {
      const int64_t kcc = std::min(kc, k - pc);
      __m512 acc[R][V];
      for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
      const int64_t q0 = pc / 2, q1 = q0 + kcc / 2;  // whole pairs (a panel starts on a pair)
      const char* r0 = reinterpret_cast<const char*>(w + 2 * q0 * ldw);
      const uint32_t* xq = xp + q0 * R;
      for (int64_t q = q0; q < q1; ++q, r0 += 2 * row, xq += R) {
        __m512bh wv[V];
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) {
          _mm_prefetch(r0 + ahead + 64 * v, _MM_HINT_T0);  // past K: harmless
          _mm_prefetch(r0 + ahead + row + 64 * v, _MM_HINT_T0);
          wv[v] = pair_words(load16<kFull>(r0 + 64 * v, mk[v]),
                             load16<kFull>(r0 + row + 64 * v, mk[v]), idx);
        }
        for (int i = 0; i < R; ++i) {
          const __m512bh xb = (__m512bh)_mm512_set1_epi32(int(xq[i]));
          for (int v = 0; v < V; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], xb, wv[v]);
        }
      }
      if (kcc % 2 != 0) {  // the last row alone, paired with the packer's zero row
        __m512bh wv[V];
        for (int v = 0; v < V; ++v)
          wv[v] = pair_words(load16<kFull>(r0 + 64 * v, mk[v]), _mm512_setzero_ps(), idx);
        for (int i = 0; i < R; ++i) {
          const __m512bh xb = (__m512bh)_mm512_set1_epi32(int(xq[i]));
          for (int v = 0; v < V; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], xb, wv[v]);
        }
      }
      for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) {
          float* yv = y + i * ldy + 16 * v;
          const __m512 t = pc == 0 ? acc[i][v]
                                   : _mm512_fmadd_ps(_mm512_set1_ps(1.0f),
                                                     load16<kFull>(yv, mk[v]), acc[i][v]);
          _mm512_mask_storeu_ps(yv, mk[v], t);
        }
    }
  }
};

template <int R>
void rows(const uint32_t* xp, int64_t k, int64_t kc, const float* w, int64_t ldw,
          int64_t n, float* y, int64_t ldy) {
  sb_rows_by_blocks<Block, R, vectors_for(R)>(xp, k, kc, w, ldw, n, y, ldy);
}

// The crossover with the packed path. At 8 rows a block already runs at about 70% of the
// VDPBF16PS rate (the weights' rounding shared 8 ways), so more rows cost the row path about
// as much each as the packed path's 12-row tiles, and what is left between the two is the
// packing (~30 us for the MLP) against the row path's smaller margin per row. Measured on a
// Zen 4 (predict of the 784-256-128-10 MLP, best of 300 windows of 10 calls, load 4.5, us,
// row path / packed): 2 rows 12.3 / 33.8, 8: 23.6 / 43.5, 16: 46.3 / 63.0, 32: 91.6 / 100.7,
// 48: 136 / 138, 64: 181 / 177, 96: 272 / 252; the same on 2 threads (a busy machine).
// 32 keeps a margin past the noise.
constexpr int64_t kMaxRows = 32;

}  // namespace

const SbRowKernel kSbRowAvx512Bf16 = {
    prep, 2, kMaxRows, {rows<1>, rows<2>, rows<3>, rows<4>, rows<5>, rows<6>, rows<7>, rows<8>}};

}  // namespace pynn::gemm
