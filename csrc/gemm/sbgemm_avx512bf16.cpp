// The AVX512_BF16 micro-kernel of the bf16 GEMM (sbgemm.h): a 12 x 32 tile of C in 24 zmm
// accumulators. Each VDPBF16PS step adds, per float32 lane, the two products of one K pair
// (packed A holds the pair of row i as one 32-bit word, broadcast; packed B holds the pairs of
// 16 columns in a zmm). Compiled with -mavx512bf16; called only when cpuid reports it.
//
// Also the AVX-512 packer of the pairs layout (the AMX kernel uses it for B too): bit for bit
// bf16_round_bits, by VCVTNE2PS2BF16 where that agrees, else in integer lanes.
#include <immintrin.h>

#include <algorithm>

#include "gemm/sbgemm.h"
#include "gemm/sbgemm_avx512bf16.h"

namespace pynn::gemm {
namespace {

constexpr int kMR = 12;
constexpr int kNR = 32;

// The r-th lanes of a panel are contiguous (rs == 1): each K pair is two rows of up to w
// floats, rounded and interleaved into w words. Pairs outermost: the source is read row after
// row, whole rows across all panels (a stream the hardware prefetcher follows; panel by panel
// it was a 2-line-per-row stride that left the loads waiting on L2/L3).
void pack_rows_contiguous(int w, int64_t count, int64_t kc, int64_t kcp, const float* src,
                          int64_t cs, uint32_t* dst) {
  for (int64_t q = 0; q < kcp / 2; ++q) {
    const float* p0 = src + 2 * q * cs;
    const bool even = 2 * q < kc, odd = 2 * q + 1 < kc;  // past kc (odd kc, AMX's pad): zeros
    for (int64_t r0 = 0; r0 < count; r0 += w) {
      const int64_t rows = std::min<int64_t>(w, count - r0);
      uint32_t* d = dst + r0 * kcp / 2 + q * w;
      for (int j = 0; j < w; j += 16) {
        const __mmask16 m = even ? first(rows - j) : __mmask16(0);
        const __m512 e = _mm512_maskz_loadu_ps(m, p0 + r0 + j);
        const __m512 o = _mm512_maskz_loadu_ps(odd ? m : __mmask16(0), p0 + cs + r0 + j);
        _mm512_mask_storeu_epi32(d + j, first(w - j), (__m512i)pair_words(e, o, pair_index()));
      }
    }
  }
}

// 16 x 16 words transposed in registers: rows 4i..4i+3 of one column gathered per 128-bit
// lane (unpacks), then the four lanes of a column brought together (two lane shuffles).
// (GCC 12 warns inside the unpack and shuffle intrinsics, whose unused merge operand is
// "undefined": GCC bug 105593, an error under -Werror.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // r[4i + j], lane L: column 4L + j, rows 4i..4i+3
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i y0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88);
    const __m512i y1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xDD);
    const __m512i y2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
    const __m512i y3 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xDD);
    t[j] = _mm512_shuffle_i32x4(y0, y2, 0x88);
    t[4 + j] = _mm512_shuffle_i32x4(y1, y3, 0x88);
    t[8 + j] = _mm512_shuffle_i32x4(y0, y2, 0xDD);
    t[12 + j] = _mm512_shuffle_i32x4(y1, y3, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}
#pragma GCC diagnostic pop

// K is contiguous (cs == 1): each lane's row gives 16 pair words per 32 floats; 16 lanes by
// 16 pairs are transposed into the [pair][lane] order of the panel.
void pack_depth_contiguous(int w, int64_t count, int64_t kc, int64_t kcp, const float* src,
                           int64_t rs, uint32_t* dst) {
  const int64_t pairs = kcp / 2;
  for (int64_t r0 = 0; r0 < count; r0 += w) {
    uint32_t* d = dst + r0 * pairs;
    for (int j0 = 0; j0 < w; j0 += 16) {
      const int64_t lanes = std::clamp<int64_t>(count - r0 - j0, 0, 16);
      const __mmask16 store = first(w - j0);
      for (int64_t q0 = 0; q0 < pairs; q0 += 16) {
        const int64_t k0 = 2 * q0;
        const __mmask16 m0 = first(kc - k0), m1 = first(kc - k0 - 16);
        __m512i v[16];
        for (int i = 0; i < 16; ++i) {
          if (i < lanes) {
            const float* p = src + (r0 + j0 + i) * rs + k0;
            v[i] = to_bf16x32(_mm512_maskz_loadu_ps(m0, p), _mm512_maskz_loadu_ps(m1, p + 16));
          } else {
            v[i] = _mm512_setzero_si512();
          }
        }
        transpose16(v);
        const int64_t nq = std::min<int64_t>(16, pairs - q0);
        for (int64_t q = 0; q < nq; ++q)
          _mm512_mask_storeu_epi32(d + (q0 + q) * w + j0, store, v[q]);
      }
    }
  }
}

void ukr_avx512bf16(int64_t kcp, const void* av, const void* bv, float* c, int64_t ldc,
                    float beta) {
  const int* a = static_cast<const int*>(av);             // [kcp/2][12] pairs
  const __m512i* b = static_cast<const __m512i*>(bv);     // [kcp/2][2] zmm of 16 pairs
  __m512 acc[kMR][2];
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) {
    acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    // The C tile is read or written only after the K loop: its lines (often far out in L3 or
    // memory, one K panel after the other) are fetched meanwhile.
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 31), _MM_HINT_T0);
  }
  for (int64_t q = 0; q < kcp / 2; ++q) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b + 2 * q);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + 2 * q + 1);
#pragma GCC unroll 12
    for (int i = 0; i < kMR; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(a[q * kMR + i]);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
  }
  const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      _mm512_storeu_ps(ci, acc[i][0]);
      _mm512_storeu_ps(ci + 16, acc[i][1]);
    } else {
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), acc[i][0]));
      _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), acc[i][1]));
    }
  }
}

// An edge tile, written in place through masks with the full tile's arithmetic per element.
// Only the first R rows (mv rounded up to 4) and V column vectors (nv rounded up to 16) are
// computed: a 128-row layer's last 8 rows do not pay for 12.
template <int R, int V>
void ukr_edge_rv(int64_t kcp, const int* a, const __m512i* b, float* c, int64_t ldc, float beta,
                 int mv, int nv) {
  __m512 acc[R][V];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t q = 0; q < kcp / 2; ++q) {
    __m512bh bq[V];
    for (int v = 0; v < V; ++v) bq[v] = (__m512bh)_mm512_load_si512(b + 2 * q + v);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(a[q * kMR + i]);
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bq[v]);
    }
  }
  const __m512 vb = _mm512_set1_ps(beta);
  const __mmask16 mask[2] = {first(nv), first(nv - 16)};
  for (int i = 0; i < mv; ++i) {
    float* ci = c + i * ldc;
    for (int v = 0; v < V; ++v) {
      __m512 r = acc[i][v];
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], ci + 16 * v), r);
      _mm512_mask_storeu_ps(ci + 16 * v, mask[v], r);
    }
  }
}

void ukr_edge_avx512bf16(int64_t kcp, const void* av, const void* bv, float* c, int64_t ldc,
                         float beta, int mv, int nv) {
  using Fn = void (*)(int64_t, const int*, const __m512i*, float*, int64_t, float, int, int);
  static constexpr Fn kFns[3][2] = {{ukr_edge_rv<4, 1>, ukr_edge_rv<4, 2>},
                                    {ukr_edge_rv<8, 1>, ukr_edge_rv<8, 2>},
                                    {ukr_edge_rv<12, 1>, ukr_edge_rv<12, 2>}};
  kFns[(mv - 1) / 4][nv > 16](kcp, static_cast<const int*>(av), static_cast<const __m512i*>(bv),
                              c, ldc, beta, mv, nv);
}

}  // namespace

bool sb_pack_avx512(SbLayout layout, int w, int64_t count, int64_t kc, int64_t kcp,
                    const float* src, int64_t rs, int64_t cs, void* dst) {
  if (layout != SbLayout::pairs) return false;
  uint32_t* d = static_cast<uint32_t*>(dst);
  // With one row or a depth of one, the stride along that dimension is never followed.
  if (cs == 1 || kc == 1) pack_depth_contiguous(w, count, kc, kcp, src, rs, d);
  else if (rs == 1 || count == 1) pack_rows_contiguous(w, count, kc, kcp, src, cs, d);
  else return false;
  return true;
}

const SbKernelInfo kSbKernelAvx512Bf16 = {
    "avx512_bf16_12x32", kMR, kNR, 512, 960, 480, 2, SbLayout::pairs, SbLayout::pairs,
    ukr_avx512bf16, nullptr, nullptr, nullptr, sb_pack_avx512, ukr_edge_avx512bf16};

}  // namespace pynn::gemm
