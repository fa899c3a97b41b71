// The few-row bf16 product (sbgemv.h) in the arithmetic of the emulated kernel on the avx512
// float32 micro-kernel (sbgemm.cpp, emulated_from; kernels_avx512.cpp): per row and column,
// one float32 accumulator from zero per K panel, fmadd(bf16(x[p]), bf16(W[p][j]), acc) in
// increasing p, the panel stored as 1 * acc and added as fmadd(1, C, 1 * acc). W is rounded
// in registers by the integer form of bf16_round_bits (sbgemm.cpp's round_in_place), once
// for all the rows.
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

// acc + x * w as VFMADD231PS with w the third operand, x (broadcast) the second, acc the
// destination. Which operand's NaN comes out when both factors are NaN depends on the
// instruction form and the operands' places, which the compiler picks freely for an
// intrinsic (with the loop order here GCC 12 chose one that gives w's NaN where the packed
// path gives x's), so the form is pinned: the one the packed path's bits agree with (tests/
// test_dense_chain_bf16_row.py, NaN inputs meeting NaN weights).
inline __m512 fma_x_w(__m512 acc, __m512 x, __m512 w) {
  asm("vfmadd231ps %[w], %[x], %[acc]" : [acc] "+v"(acc) : [w] "v"(w), [x] "v"(x));
  return acc;
}

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

// Vectors of 16 columns per block for r rows: the r * V sums and a row's V rounded weight
// vectors stay in registers beside one broadcast, the rounding's constants and temporaries
// (32 zmm registers: (r + 1) V <= 26).
constexpr int vectors_for(int r) { return r <= 2 ? 8 : r <= 4 ? 26 / (r + 1) : r <= 7 ? 3 : 2; }

// Columns [0, 16 V) (those < nv written) of R rows, all K panels (k > 0); kFull: nv = 16 V,
// loads unmasked. W is addressed in bytes from one pointer per row (as the AVX512_BF16 row
// kernel, and for the same reason: a pointer per vector does not fit the registers). Each
// panel's sums go to Y as the micro-kernel stores a panel: Y = 1 * acc on the first, then
// Y = fmadd(1, Y, 1 * acc).
template <int R, int V, bool kFull>
struct Block {
  static void run(const uint32_t* xp, int64_t k, int64_t kc, const float* w,
                  int64_t ldw, int64_t nv, float* y, int64_t ldy) {
    const float* xr = reinterpret_cast<const float*>(xp);
    __mmask16 mk[V];
    for (int v = 0; v < V; ++v) mk[v] = first(nv - 16 * v);
    const int64_t row = ldw * int64_t(sizeof(float)), ahead = kPrefetchRows * row;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t pc = 0; pc < k; pc += kc) {
      const int64_t p1 = std::min(k, pc + kc);
      __m512 acc[R][V];
      for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
      const char* r = reinterpret_cast<const char*>(w + pc * ldw);
      const float* xq = xr + pc * R;
      for (int64_t p = pc; p < p1; ++p, r += row, xq += R) {
        __m512 wv[V];
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) {
          _mm_prefetch(r + ahead + 64 * v, _MM_HINT_T0);  // past K: harmless
          wv[v] = round16(kFull ? _mm512_loadu_ps(r + 64 * v)
                                : _mm512_maskz_loadu_ps(mk[v], r + 64 * v));
        }
        for (int i = 0; i < R; ++i) {
          const __m512 xb = _mm512_set1_ps(xq[i]);
          for (int v = 0; v < V; ++v) acc[i][v] = fma_x_w(acc[i][v], xb, wv[v]);
        }
      }
      for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) {
          float* yv = y + i * ldy + 16 * v;
          const __m512 t = _mm512_mul_ps(one, acc[i][v]);
          _mm512_mask_storeu_ps(
              yv, mk[v],
              pc == 0 ? t
                      : _mm512_fmadd_ps(one, kFull ? _mm512_loadu_ps(yv)
                                                   : _mm512_maskz_loadu_ps(mk[v], yv), t));
        }
    }
  }
};

template <int R>
void rows(const uint32_t* xp, int64_t k, int64_t kc, const float* w, int64_t ldw,
          int64_t n, float* y, int64_t ldy) {
  sb_rows_by_blocks<Block, R, vectors_for(R)>(xp, k, kc, w, ldw, n, y, ldy);
}

// The crossover with the packed path, whose packing (rounding every weight in memory) costs
// more here than on AVX512_BF16. Measured on a Zen 4 (PYNN_ARCH=avx512, predict of the
// 784-256-128-10 MLP, best of 100-300 windows of 10 calls, load 4.2, us, row path / packed):
// 2 rows 21.6 / 138, 8: 51 / 170, 16: 101 / 201, 32: 200 / 293, 48: 300 / 353, 64: 401 / 446,
// 96: 602 / 598; the same on 2 threads (a busy machine).
constexpr int64_t kMaxRows = 64;

}  // namespace

const SbRowKernel kSbRowEmulatedAvx512 = {
    prep, 1, kMaxRows, {rows<1>, rows<2>, rows<3>, rows<4>, rows<5>, rows<6>, rows<7>, rows<8>}};

}  // namespace pynn::gemm
