// The fused predict path's AVX-512 parts (nn/dense_chain.cpp): the bias + ReLU epilogue and
// the one-row kernel. Compiled with AVX-512 flags, called only when cpuid reports AVX-512
// (see the dispatch there).
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

namespace pynn::nn {

// The positions q < k where x[q] is not zero (NaN counts, -0 does not: the test x != 0 of the
// direct kernel's gemv), in increasing order, into idx; returns how many. idx must hold
// k + 16 entries (whole vectors are stored). The register form of vpcompressd: its memory form
// is microcoded and slow on some cores.
int64_t nonzero_rows_avx512(const float* x, int64_t k, int32_t* idx) {
  const __m512 zero = _mm512_setzero_ps();
  __m512i pos = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  int64_t cnt = 0;
  for (int64_t q = 0; q < k; q += 16) {
    const __mmask16 in = k - q >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - q)) - 1);
    const __mmask16 nz =
        _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, x + q), zero, _CMP_NEQ_UQ);
    _mm512_storeu_si512(idx + cnt, _mm512_maskz_compress_epi32(nz, pos));
    cnt += __builtin_popcount(unsigned(nz));
    pos = _mm512_add_epi32(pos, step);
  }
  return cnt;
}

namespace {

// Rows of W prefetched ahead of the one being read: L2's latency at a row every few cycles.
constexpr int kRowPrefetch = 4;

// y[0, n) (n <= 16 * CB) += or = the K panel's sum over its rows q (the listed ones, or all kc
// of them): acc = fma(x[q], W[q][j], acc) in increasing q from zero, then y = acc on the
// first panel and y = y + acc (one rounding, as fma(1, y, acc)) after it. Bitwise the gemv of
// the direct kernel (gemm/simd_kernels_impl.h), whose arithmetic this repeats.
template <int CB>
void row_panel(const float* x, const int32_t* idx, int64_t cnt, const float* w, int64_t ldw,
               int64_t n, float* y, bool first) {
  __mmask16 mk[CB];
#pragma GCC unroll 16
  for (int v = 0; v < CB; ++v) {
    const int64_t r = n - int64_t(v) * 16;
    mk[v] = r >= 16 ? __mmask16(0xFFFF) : r <= 0 ? __mmask16(0) : __mmask16((1u << r) - 1);
  }
  __m512 acc[CB];
#pragma GCC unroll 16
  for (int v = 0; v < CB; ++v) acc[v] = _mm512_setzero_ps();
  if (idx != nullptr) {
    for (int64_t i = 0; i < cnt; ++i) {
      const int64_t ahead = i + kRowPrefetch < cnt ? i + kRowPrefetch : cnt - 1;
      const float* pf = w + int64_t(idx[ahead]) * ldw;
#pragma GCC unroll 16
      for (int v = 0; v < CB; ++v)  // a prefetch per 64-byte line
        _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * v), _MM_HINT_T0);
      const int64_t q = idx[i];
      const __m512 a = _mm512_set1_ps(x[q]);
      const float* wq = w + q * ldw;
#pragma GCC unroll 16
      for (int v = 0; v < CB; ++v)
        acc[v] = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(mk[v], wq + 16 * v), acc[v]);
    }
  } else {
    for (int64_t q = 0; q < cnt; ++q) {
      if (q + kRowPrefetch < cnt) {  // only rows of this panel
#pragma GCC unroll 16
        for (int v = 0; v < CB; ++v)
          _mm_prefetch(reinterpret_cast<const char*>(w + (q + kRowPrefetch) * ldw + 16 * v),
                       _MM_HINT_T0);
      }
      const __m512 a = _mm512_set1_ps(x[q]);
      const float* wq = w + q * ldw;
#pragma GCC unroll 16
      for (int v = 0; v < CB; ++v)
        acc[v] = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(mk[v], wq + 16 * v), acc[v]);
    }
  }
#pragma GCC unroll 16
  for (int v = 0; v < CB; ++v) {
    float* yv = y + 16 * v;
    const __m512 r = first ? acc[v] : _mm512_add_ps(_mm512_maskz_loadu_ps(mk[v], yv), acc[v]);
    _mm512_mask_storeu_ps(yv, mk[v], r);
  }
}

template <int CB>
void row_panel_of(int cb, const float* x, const int32_t* idx, int64_t cnt, const float* w,
                  int64_t ldw, int64_t n, float* y, bool first) {
  if constexpr (CB > 1) {
    if (cb < CB) {
      row_panel_of<CB - 1>(cb, x, idx, cnt, w, ldw, n, y, first);
      return;
    }
  }
  row_panel<CB>(x, idx, cnt, w, ldw, n, y, first);
}

}  // namespace

// One row through a layer's columns [0, n) of W (row stride ldw, K = k in panels of kc_max):
// y[j] = sum_q x[q] W[q][j] per K panel as the direct kernel's gemv computes it (n > 32; the
// caller leaves narrower ranges to that kernel). lists[p], counts[p]: panel p's nonzero
// positions of x relative to its start (from nonzero_rows_avx512), or null where the panel is
// read whole.
void row_layer_avx512(const float* x, int64_t k, int64_t kc_max, const int32_t* const* lists,
                      const int64_t* counts, const float* w, int64_t ldw, int64_t n, float* y) {
  // Columns per pass: 8 accumulators, as the gemv (16, reading whole rows of the 784 x 256
  // layer, measured no faster on Zen 4).
  constexpr int kVecs = 8;
  constexpr int64_t kCols = kVecs * 16;
  for (int64_t j = 0; j < n; j += kCols) {
    const int64_t nj = n - j < kCols ? n - j : kCols;
    const int cb = int((nj + 15) / 16);
    int p = 0;
    for (int64_t pc = 0; pc < k; pc += kc_max, ++p) {
      const int64_t kc = k - pc < kc_max ? k - pc : kc_max;
      row_panel_of<kVecs>(cb, x + pc, lists[p], lists[p] ? counts[p] : kc, w + pc * ldw + j, ldw,
                       nj, y + j, pc == 0);
    }
  }
}

}  // namespace pynn::nn
