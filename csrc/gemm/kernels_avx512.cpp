// AVX-512 instantiation of the SIMD GEMM kernels (simd_kernels_impl.h): 16 floats a zmm,
// micro-kernel 6 x 64 (24 accumulators + 4 vectors of B + 1 broadcast of A, of 32 zmm).
#include <immintrin.h>

#include "gemm/simd_kernels_impl.h"

namespace pynn::gemm {
namespace {

struct Avx512 {
  using vec = __m512;
  using mask = __mmask16;
  static constexpr int W = 16;
  // 6 x 64 rather than 12 x 32 or 8 x 48: the same 24 accumulators, but 4 loads of B and 6
  // broadcasts of A per 24 FMAs (12 x 32 needs 2 + 12). Measured on the Ice Lake Xeon, the
  // micro-kernel alone on a 480 KB packed B block (kc = 384, best of 1000 windows, thread
  // CPU time): 12 x 32 92%, 8 x 48 99%, 6 x 64 99% of the FMA peak; and 64 divides the
  // widths of the MLP, LSTM and convnet layers (64 .. 512) where 48 does not.
  static constexpr int MR = 6;
  static constexpr int NR = 64;
  // Prefetching the packed B block ahead of the micro-kernel: measured no faster (L2 streams
  // it in time), so off.
  static constexpr int kPrefetchRows = 0;
  static constexpr bool kPrefetchC = true;
  // Direct kernel, 32 zmm: RG*CB accumulators + CB of B + 1 broadcast. One or two rows take
  // 8 vectors (128 columns) so that 8+ independent FMA chains hide the FMA latency; three to
  // six rows take 4 vectors (at most 24 + 4 + 1 registers).
  static constexpr int kDirectRows = 6;
  static constexpr int direct_vectors(int rows) { return rows <= 2 ? 8 : 4; }
  static constexpr int kNarrowRows = 8;
  static constexpr int kColsMaxN = 14;
  // One row (a single sample): 8 vectors (128 columns, one pass per 512 bytes of a B row),
  // B prefetched 4 rows ahead. Measured on the Ice Lake Xeon (1-row predict of the
  // 784-256-128-10 MLP, 1 thread, best of 600 windows, 3 runs): no prefetch 17.4 us,
  // 2 rows ahead 13.2, 4 rows 13.1, 8 rows 13.4, 16 rows 14.1; 16 vectors (a whole 1 KB row
  // per pass) 14.5-15.4 whatever the distance.
  static constexpr int kGemvVectors = 8;
  static constexpr int kGemvPrefetchRows = 4;
  static constexpr int kPeakChains = 16;
  // Sparse-A kernel (sparse_a_impl.h): 8 vectors (128 columns) a pass, 8 independent FMA
  // chains per row as in gemv; the nonzeros listed with vcompressps.
  static constexpr int kSparseVectors = 8;
  static constexpr bool kCompress = true;

  static inline vec zero() { return _mm512_setzero_ps(); }
  static inline vec set1(float x) { return _mm512_set1_ps(x); }
  static inline vec broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static inline vec load(const float* p) { return _mm512_load_ps(p); }
  static inline vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static inline void storeu(float* p, vec x) { _mm512_storeu_ps(p, x); }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static inline vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static inline void prefetch(const float* p) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
  }
  static inline mask tail(int64_t left) {
    if (left >= W) return mask(0xFFFF);
    if (left <= 0) return mask(0);
    return mask((1u << left) - 1u);
  }
  static inline vec maskload(const float* p, mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static inline void maskstore(float* p, mask m, vec x) { _mm512_mask_storeu_ps(p, m, x); }
  static inline bool any_negzero(vec x) {
    return _mm512_cmpeq_epi32_mask(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN)) != 0;
  }
  // 16 lanes at a time: compare with zero (unordered: NaN counts as nonzero), compress the
  // values and their positions into the front of a vector, store all 16 lanes (the lanes
  // past the count are overwritten by the next group or ignored).
  static inline int64_t compress_nonzeros(const float* x, int64_t len, int32_t base,
                                          int32_t* idx, float* val) {
    int64_t cnt = 0;
    __m512i pos = _mm512_add_epi32(_mm512_set1_epi32(base),
                                   _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                     13, 14, 15));
    for (int64_t q = 0; q < len; q += W) {
      const mask lm = tail(len - q);
      const vec v = _mm512_maskz_loadu_ps(lm, x + q);
      const mask nz = _mm512_mask_cmp_ps_mask(lm, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
      _mm512_storeu_ps(val + cnt, _mm512_maskz_compress_ps(nz, v));
      _mm512_storeu_si512(idx + cnt, _mm512_maskz_compress_epi32(nz, pos));
      // popcount of 16 bits without the POPCNT flag (not implied by -mavx512f)
      unsigned u = nz;
      u = u - ((u >> 1) & 0x5555u);
      u = (u & 0x3333u) + ((u >> 2) & 0x3333u);
      u = (u + (u >> 4)) & 0x0F0Fu;
      cnt += int64_t((u + (u >> 8)) & 0x1Fu);
      pos = _mm512_add_epi32(pos, _mm512_set1_epi32(W));
    }
    return cnt;
  }
};

using K = simd_impl::Kernels<Avx512>;
using S = simd_impl::SparseA<Avx512>;

// ---- packing (pack.h's layouts, vectorised for the cases that need a transpose) ----------
// The packed panels are bitwise what pack_a<6> / pack_b<64> write; these only move the same
// floats with fewer instructions. Each returns false for a layout it does not handle, and the
// driver then runs pack.h's template. (pack.h's templates are not instantiated here: an
// AVX-512 copy of them could be the one the linker keeps for the portable files.)
static_assert(Avx512::MR == 6 && Avx512::NR == 64, "the packers below assume the 6 x 64 tile");

// In place: r[j] (row j of a 16 x 16 block) becomes column j of the block. (GCC 12 warns
// inside the unpack and shuffle intrinsics, whose unused merge operand is "undefined".)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
}
#pragma GCC diagnostic pop

// The interleave of 6 rows of 16 floats into 96 (out[q*6 + i] = row_i[q]), output vector o:
// lane t holds e = 16 o + t, i.e. q = e / 6 of row i = e % 6. Rows are taken in pairs
// (2s, 2s+1) by one two-source permute with index q + 16 * (i % 2) (the same for every
// pair), then merged under masks selecting the lanes of pair s = i / 2.
struct Interleave6 {
  __m512i idx[6];
  __mmask16 pair[6][3];
  Interleave6() {
    for (int o = 0; o < 6; ++o) {
      alignas(64) int32_t v[16];
      unsigned m[3] = {0, 0, 0};
      for (int t = 0; t < 16; ++t) {
        const int e = 16 * o + t, q = e / 6, i = e % 6;
        v[t] = q + 16 * (i % 2);
        m[i / 2] |= 1u << t;
      }
      idx[o] = _mm512_load_si512(v);
      for (int s = 0; s < 3; ++s) pair[o][s] = __mmask16(m[s]);
    }
  }
};

// A block with rows contiguous along k (cs == 1): per 16 columns of k, 6 row loads, 18
// permutes and 12 masked moves replace 96 scalar loads and stores.
bool pack_a_avx512(int64_t mc, int64_t kc, const float* src, int64_t rs, int64_t cs,
                   float* dst) {
  constexpr int MR = 6;
  if (cs != 1) return false;
  static const Interleave6 il;
  for (int64_t ir = 0; ir < mc; ir += MR, dst += MR * kc, src += MR * rs) {
    const int64_t mv = mc - ir < MR ? mc - ir : MR;
    int64_t p = 0;
    {
      // A last panel of mv < MR rows: its missing rows enter the interleave as zeros.
      for (; p + 16 <= kc; p += 16) {
        __m512 r[MR];
        for (int i = 0; i < MR; ++i)
          r[i] = i < mv ? _mm512_loadu_ps(src + i * rs + p) : _mm512_setzero_ps();
        for (int o = 0; o < 6; ++o) {
          __m512 x = _mm512_permutex2var_ps(r[0], il.idx[o], r[1]);
          x = _mm512_mask_mov_ps(x, il.pair[o][1], _mm512_permutex2var_ps(r[2], il.idx[o], r[3]));
          x = _mm512_mask_mov_ps(x, il.pair[o][2], _mm512_permutex2var_ps(r[4], il.idx[o], r[5]));
          _mm512_storeu_ps(dst + p * MR + 16 * o, x);
        }
      }
    }
    for (; p < kc; ++p)
      for (int64_t i = 0; i < MR; ++i) dst[p * MR + i] = i < mv ? src[i * rs + p] : 0.0f;
  }
  return true;
}

// A B block: rows contiguous along n (cs == 1), or columns contiguous along k (rs == 1, a
// transposed operand: 16 x 16 transposes). A last panel narrower than NR takes the same
// vector paths through masked loads, its missing columns written as zeros.
bool pack_b_avx512(int64_t kc, int64_t nc, const float* src, int64_t rs, int64_t cs,
                   float* dst) {
  constexpr int NR = 64;
  if (cs != 1 && rs != 1) return false;
  const int64_t panels = (nc + NR - 1) / NR;
  if (cs == 1) {
    // Row by row across all panels: the source is read in its own order (one stream the
    // prefetchers follow), the panels written as `panels` sequential streams.
    for (int64_t p = 0; p < kc; ++p) {
      const float* s = src + p * rs;
      for (int64_t jp = 0; jp < panels; ++jp) {
        float* d = dst + jp * NR * kc + p * NR;
        const int64_t j0 = jp * NR;
        if (nc - j0 >= NR) {
          for (int v = 0; v < NR; v += 16) _mm512_store_ps(d + v, _mm512_loadu_ps(s + j0 + v));
        } else {
          for (int v = 0; v < NR; v += 16) {
            const int64_t left = nc - j0 - v;
            const __mmask16 mk =
                left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1u);
            _mm512_store_ps(d + v, _mm512_maskz_loadu_ps(mk, s + j0 + v));
          }
        }
      }
    }
    return true;
  }
  for (int64_t jr = 0; jr < nc; jr += NR, dst += NR * kc, src += NR * cs) {
    const int64_t nv = nc - jr < NR ? nc - jr : NR;
    int64_t p = 0;
    for (; p + 16 <= kc; p += 16)
      for (int j0 = 0; j0 < NR; j0 += 16) {
        __m512 r[16];
        if (j0 + 16 <= nv) {
          for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(src + (j0 + j) * cs + p);
        } else {
          for (int j = 0; j < 16; ++j)
            r[j] = j0 + j < nv ? _mm512_loadu_ps(src + (j0 + j) * cs + p) : _mm512_setzero_ps();
        }
        transpose16(r);
        for (int q = 0; q < 16; ++q) _mm512_store_ps(dst + (p + q) * NR + j0, r[q]);
      }
    for (; p < kc; ++p)
      for (int64_t j = 0; j < NR; ++j) dst[p * NR + j] = j < nv ? src[p * rs + j * cs] : 0.0f;
  }
  return true;
}

// Largest m the direct (unpacked) kernel takes; measured with benchmarks/bench_gemm_small.py
// under PYNN_GEMM_DIRECT_MAX_M=0 and =64.
// Measured on an EPYC (AVX-512, 1 thread, 784x256 and 256x128 weights): the direct kernel
// beats packing up to m = 64 there; 16 leaves a margin for large K x N, where B no longer
// sits in L2 and the direct path re-reads it once per 6 rows.
constexpr int kDirectMaxM = 16;

}  // namespace

void direct_avx512(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                   int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                   float alpha, float beta) {
  K::direct(m, n, k, kc, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta);
}

float fma_loop_avx512(int64_t iters) { return K::fma_loop(iters); }

void sparse_avx512(int64_t m, int64_t n, int64_t k, int64_t kc, int64_t depth, const float* a,
                   int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c,
                   int64_t ldc, float alpha, float beta, const SparseWork& w) {
  S::run(m, n, k, kc, depth, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, w);
}

const KernelInfo kKernelAvx512 = {"avx512_6x64",
                                  Arch::avx512,
                                  Avx512::MR,
                                  Avx512::NR,
                                  384,
                                  1020,
                                  480,
                                  K::ukr,
                                  direct_avx512,
                                  kDirectMaxM,
                                  2 * Avx512::W,
                                  Avx512::W,
                                  {K::ukr_part<1>, K::ukr_part<2>, K::ukr_part<3>},
                                  pack_a_avx512,
                                  pack_b_avx512,
                                  {K::ukr_rows_a<1>, K::ukr_rows_a<2>, K::ukr_rows_a<3>,
                                   K::ukr_rows_a<4>},
                                  sparse_avx512,
                                  int(S::BW),
                                  0};

}  // namespace pynn::gemm
