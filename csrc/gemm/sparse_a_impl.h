// The zero-skipping ("sparse A") GEMM kernel, written once over an ISA traits type `V` (the
// same V as simd_kernels_impl.h, plus the members listed below) and instantiated by
// kernels_avx512.cpp, kernels_avx2.cpp and sparse_a_generic.cpp. Include only from those
// files (see simd_kernels_impl.h on why every function here is a member of a class template).
//
// A block of rows of A multiplies B (row-major, read in place) skipping A's zeros: per K panel
// of the dense path's depth, each row's nonzero positions are listed once, then for a column
// block of CB vectors
//
//     acc = 0;  acc = fmadd(a[i][p], B[p][cols], acc)  over the listed p, in increasing p,
//     C = alpha * acc (beta_p == 0, C unread)  or  beta_p * C + alpha * acc (beta_p = beta,
//     then 1 on later panels)
//
// which is the dense kernels' per-element sequence of roundings (kernel.h) minus the terms
// with a[i][p] == 0. Dropping such a term is exact when B is finite: fmadd(±0, b, acc) is
// acc + (±0), which returns acc unchanged unless acc is itself a zero. A zero accumulator can
// only be -0 after a negative product too small to represent (below 2^-150, or below 2^-126
// when the thread flushes to zero, as pynn's threads do) rounds to -0; the dense sum then
// turns that -0 into +0 at its next zero term whose product is +0, where the sparse sum keeps
// -0. So whenever a finished panel's accumulator holds -0 in some lane, that row's column
// block is recomputed with every term (the dense loop): the result is then bitwise the dense
// path's in every case with finite B. (Any other accumulator is equal bit for bit: a nonzero
// term gives the same rounded a*b + acc whichever zero acc is. The portable kernel, which
// rounds a*b before adding it, never holds -0: +0 + (-0) is +0.)
//
// Semantics at the edges:
//  - B finite: bitwise the dense path's C, whatever A holds;
//  - a zero of A meeting an Inf or NaN of B: the term is skipped, so C is what the sum
//    without it gives (the dense path gives NaN there); the one-row path (gemv) does the same;
//  - NaN in A is a nonzero (the comparison is unordered) and propagates as in the dense path;
//  - -0 in A is skipped like +0 (its term is a zero too);
//  - under DAZ (pynn's threads) a subnormal A entry compares equal to zero and is skipped,
//    and the dense FMA reads it as zero: the same term either way.
//
// The cost is loads, not multiply-adds (one vector of B per FMA, where the packed kernel
// reuses a vector of B for MR rows), so a column block's rows of B are cut into sub-blocks
// of `depth` rows that stay in L1 while the block's rows stream over them; each row's
// accumulators wait in a scratch between sub-blocks (a store and a reload are exact, so the
// sum's order is unchanged).
//
// What V provides beyond simd_kernels_impl.h's list:
//   kSparseVectors          CB: vectors of columns per pass (independent FMA chains of a row)
//   kCompress               whether V::compress_nonzeros exists (else a branch-free scalar
//                           loop lists the nonzeros)
//   compress_nonzeros(x, len, base, idx, val)  lists the nonzero x[q] (q < len: x[q] != 0,
//                           NaN included) as idx = base + q, val = x[q], in increasing q;
//                           returns the count; may write up to W - 1 entries past it
//   any_negzero(v)          whether a lane of v is -0
#pragma once
#include <cstdint>

#include "gemm/kernel.h"

namespace pynn::gemm::simd_impl {

// One row of a finished K panel: C = alpha * acc when beta_p == 0 (C never read), else
// beta_p * C + alpha * acc, through the column masks. Shared by the direct kernels of
// simd_kernels_impl.h and the sparse kernel below.
template <class V>
struct RowStore {
  using vec = typename V::vec;
  using mask = typename V::mask;
  template <int CB>
  static inline void store_row(float* c, const mask* mk, const vec* acc, vec va, float beta_p) {
    constexpr int W = V::W;
    if (beta_p == 0.0f) {
#pragma GCC unroll 16
      for (int v = 0; v < CB; ++v) V::maskstore(c + v * W, mk[v], V::mul(va, acc[v]));
    } else {
      const vec vb = V::set1(beta_p);
#pragma GCC unroll 16
      for (int v = 0; v < CB; ++v) {
        const vec old = V::maskload(c + v * W, mk[v]);
        V::maskstore(c + v * W, mk[v], V::fmadd(vb, old, V::mul(va, acc[v])));
      }
    }
  }
};

template <class V>
struct SparseA {
  using vec = typename V::vec;
  using mask = typename V::mask;
  static constexpr int W = V::W;
  static constexpr int CB = V::kSparseVectors;
  static constexpr int64_t BW = int64_t(CB) * W;  // columns per pass
  static_assert(CB <= 16, "raise the unroll pragmas of the sparse kernel");

  static inline int64_t lesser(int64_t x, int64_t y) { return x < y ? x : y; }

  static int64_t nonzeros(const float* x, int64_t len, int32_t base, int32_t* idx, float* val) {
    if constexpr (V::kCompress) {
      return V::compress_nonzeros(x, len, base, idx, val);
    } else {
      // Branch-free: every element is written, and the count only moves past a nonzero.
      int64_t cnt = 0;
      for (int64_t q = 0; q < len; ++q) {
        const float v = x[q];
        idx[cnt] = base + int32_t(q);
        val[cnt] = v;
        cnt += v != 0.0f;
      }
      return cnt;
    }
  }

  // Every term of one row's panel (the dense direct kernel's loop): the rare row whose
  // sparse accumulator ended at -0 (see the top). b: the packed block (row stride CV * W).
  template <int CV>
  static void dense_row(vec* acc, const float* a, int64_t a_cs, int64_t kc, const float* b) {
#pragma GCC unroll 16
    for (int v = 0; v < CV; ++v) acc[v] = V::zero();
    for (int64_t p = 0; p < kc; ++p, a += a_cs, b += CV * W) {
      const vec ar = V::broadcast(a);
#pragma GCC unroll 16
      for (int v = 0; v < CV; ++v) acc[v] = V::fmadd(ar, V::loadu(b + v * W), acc[v]);
    }
  }

  // One column block (nv <= CV * W columns of c; b its packed rows of B, CV * W floats apart,
  // zero past nv) of `rows` rows over one K panel whose lists are built: sub-block s of row r
  // is entries [seg[r * segs + s], seg[r * segs + s + 1]).
  template <int CV>
  static void panel(int64_t rows, int64_t nv, int64_t kc, int64_t nsub, const SparseWork& w,
                    int64_t lds, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                    float* c, int64_t ldc, float alpha, float beta_p) {
    mask mk[CV];
#pragma GCC unroll 16
    for (int v = 0; v < CV; ++v) mk[v] = V::tail(nv - int64_t(v) * W);
    const vec va = V::set1(alpha);
    const int64_t segs = nsub + 1;
    for (int64_t s = 0; s < nsub; ++s) {
      const bool first = s == 0, last = s + 1 == nsub;
      for (int64_t r = 0; r < rows; ++r) {
        vec acc[CV];
        float* sc = w.acc + r * CV * W;
        if (first) {
#pragma GCC unroll 16
          for (int v = 0; v < CV; ++v) acc[v] = V::zero();
        } else {
#pragma GCC unroll 16
          for (int v = 0; v < CV; ++v) acc[v] = V::loadu(sc + v * W);
        }
        const int32_t* idx = w.idx + r * lds;
        const float* val = w.val + r * lds;
        const int64_t e1 = w.seg[r * segs + s + 1];
        for (int64_t e = w.seg[r * segs + s]; e < e1; ++e) {
          const vec ar = V::set1(val[e]);
          const float* bq = b + int64_t(idx[e]) * (CV * W);
#pragma GCC unroll 16
          for (int v = 0; v < CV; ++v) acc[v] = V::fmadd(ar, V::loadu(bq + v * W), acc[v]);
        }
        if (!last) {
#pragma GCC unroll 16
          for (int v = 0; v < CV; ++v) V::storeu(sc + v * W, acc[v]);
          continue;
        }
        bool negzero = false;
#pragma GCC unroll 16
        for (int v = 0; v < CV; ++v) negzero |= V::any_negzero(acc[v]);
        if (negzero) dense_row<CV>(acc, a + r * a_rs, a_cs, kc, b);
        RowStore<V>::template store_row<CV>(c + r * ldc, mk, acc, va, beta_p);
      }
    }
  }

  // C (m x n, row stride ldc) = alpha * A B + beta * C over K panels of depth kc_max, B's
  // rows read in sub-blocks of `depth` (a multiple of 16) rows; w holds room for
  // kSparseRows rows and one packed panel of B (see SparseWork). No epilogue: the driver
  // applies it.
  // CV vectors of columns a pass (CV <= CB: fewer for a narrow C, so that no FMA computes
  // lanes that do not exist).
  template <int CV>
  static void run_cols(int64_t m, int64_t n, int64_t k, int64_t kc_max, int64_t depth,
                       const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb,
                       float* c, int64_t ldc, float alpha, float beta, const SparseWork& w) {
    constexpr int64_t CW = int64_t(CV) * W;  // columns per pass
    const int64_t lds = kc_max + 16;  // a row's list: up to kc entries plus compress overrun
    const int64_t nb = (n + CW - 1) / CW;
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = lesser(kc_max, k - pc);
      const int64_t nsub = (kc + depth - 1) / depth;
      const float beta_p = pc == 0 ? beta : 1.0f;
      // The panel of B, column block after column block, each row of a block CW floats
      // (zeros past n): a sub-block is then one contiguous run of L1 (rows of B read in place
      // are a row stride apart, and a power-of-two stride piles them into a few cache sets).
      for (int64_t jb = 0; jb < nb; ++jb) {
        mask mk[CV];
#pragma GCC unroll 16
        for (int v = 0; v < CV; ++v) mk[v] = V::tail(n - jb * CW - int64_t(v) * W);
        const float* src = b + pc * ldb + jb * CW;
        float* dst = w.bpack + jb * kc * CW;
        for (int64_t p = 0; p < kc; ++p, src += ldb, dst += CW) {
#pragma GCC unroll 16
          for (int v = 0; v < CV; ++v) V::storeu(dst + v * W, V::maskload(src + v * W, mk[v]));
        }
      }
      for (int64_t i0 = 0; i0 < m; i0 += kSparseRows) {
        const int64_t rows = lesser(kSparseRows, m - i0);
        const float* ai = a + i0 * a_rs + pc * a_cs;
        // The block's rows of this panel, contiguous: A itself when its rows are, else a
        // copy (A = X^T of a weight gradient: each row of A is a column of X, so the copy
        // runs along X's rows, p outer).
        const float* src = ai;
        int64_t ld = a_rs;
        if (a_cs != 1) {
          if (a_rs == 1) {
            for (int64_t p = 0; p < kc; ++p)
              for (int64_t r = 0; r < rows; ++r) w.tmp[r * lds + p] = ai[p * a_cs + r];
          } else {
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t p = 0; p < kc; ++p) w.tmp[r * lds + p] = ai[r * a_rs + p * a_cs];
          }
          src = w.tmp;
          ld = lds;
        }
        for (int64_t r = 0; r < rows; ++r) {
          int32_t* seg = w.seg + r * (nsub + 1);
          int64_t cnt = 0;
          for (int64_t s = 0; s < nsub; ++s) {
            seg[s] = int32_t(cnt);
            const int64_t p0 = s * depth;
            cnt += nonzeros(src + r * ld + p0, lesser(depth, kc - p0), int32_t(p0),
                            w.idx + r * lds + cnt, w.val + r * lds + cnt);
          }
          seg[nsub] = int32_t(cnt);
        }
        for (int64_t jb = 0; jb < nb; ++jb)
          panel<CV>(rows, lesser(CW, n - jb * CW), kc, nsub, w, lds, ai, a_rs, a_cs,
                w.bpack + jb * kc * CW, c + i0 * ldc + jb * CW, ldc, alpha, beta_p);
      }
    }
  }

  // A sub-block holds the same bytes of B whatever CV is: depth is given for CB vectors.
  static void run(int64_t m, int64_t n, int64_t k, int64_t kc_max, int64_t depth,
                  const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb,
                  float* c, int64_t ldc, float alpha, float beta, const SparseWork& w) {
    if constexpr (CB % 2 == 0) {
      if (n <= BW / 4 && CB % 4 == 0) {
        run_cols<(CB % 4 == 0 ? CB / 4 : 1)>(m, n, k, kc_max, depth * 4, a, a_rs, a_cs, b, ldb,
                                             c, ldc, alpha, beta, w);
        return;
      }
      if (n <= BW / 2) {
        run_cols<CB / 2>(m, n, k, kc_max, depth * 2, a, a_rs, a_cs, b, ldb, c, ldc, alpha,
                         beta, w);
        return;
      }
    }
    run_cols<CB>(m, n, k, kc_max, depth, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, w);
  }
};

}  // namespace pynn::gemm::simd_impl
