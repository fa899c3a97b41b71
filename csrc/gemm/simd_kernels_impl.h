// The SIMD GEMM kernels, written once over an ISA traits type `V` and instantiated by
// kernels_avx2.cpp and kernels_avx512.cpp (each compiled with the flags of its ISA, see
// CMakeLists.txt). Include only from those files: every function here is a member of a class
// template whose argument lives in the including file's anonymous namespace, so each
// instantiation has internal linkage and the linker can never hand an AVX-512 copy to code
// that runs on an AVX2-only CPU.
//
// Three kernel kinds live here:
//   ukr       the packed micro-kernel (contract in kernel.h): an MR x NR tile, NR = NB vectors;
//   direct    the small-m kernel reading A and B in place (contract in kernel.h), with its
//             one-row case (gemv) for m = 1;
//   fma_loop  the FMA-throughput probe behind _core.measure_fma_peak().
//
// What V provides:
//   vec, mask          vector of W floats; a per-lane mask for partial loads and stores
//   W                  floats per vector
//   MR, NR             register block of the micro-kernel (NR a multiple of W)
//   kPrefetchRows      the micro-kernel prefetches the packed B row this many rows ahead
//                      (every 64-byte line of it); 0 turns prefetching off
//   kPrefetchC         the micro-kernel prefetches its tile of C before the k loop
//   kDirectRows        most rows of A the direct kernel handles together
//   direct_vectors(r)  vectors of columns the direct kernel takes for a group of r rows
//   kNarrowRows        rows the direct kernel takes together when n is one or two vectors
//                      (kNarrowRows * 2 + 3 registers at most)
//   kColsMaxN          n up to this (with A's rows adjacent, m >= W) runs cols_block, which
//                      vectorises along C's rows (0: never; 2 * kColsMaxN + 3 registers)
//   kGemvVectors       vectors of columns the one-row kernel (gemv) takes per pass
//   kGemvPrefetchRows  gemv prefetches B this many rows ahead (0: off)
//   kPeakChains        independent FMA chains in fma_loop (register_system.cpp counts
//                      kPeakChains * W * 2 flops per iteration)
//   zero, set1, broadcast(p) (= set1(*p)), load (64-byte aligned), loadu, storeu,
//   fmadd(a, b, c) = a*b + c rounded once, mul, add, prefetch(p),
//   tail(left): lanes [0, left) on (left clamped to [0, W]), maskload (lanes off read as 0,
//   their memory never touched), maskstore (lanes off left unwritten).
//
// Arithmetic invariants shared by ukr and direct (what makes the direct path bitwise equal to
// the packed one, see kernel.h): per element of C, one accumulator starting at zero per K
// panel, V::fmadd(a, b, acc) in increasing p, then mul(alpha, acc) when beta == 0 (C never
// read) or fmadd(beta, C, mul(alpha, acc)) otherwise. Register blocking only decides which
// elements share a loop, never an element's sequence of roundings.
#pragma once
#include <cstdint>

#include "gemm/kernel.h"
#include "gemm/sparse_a_impl.h"

namespace pynn::gemm::simd_impl {

template <class V>
struct Kernels {
  using vec = typename V::vec;
  using mask = typename V::mask;
  static constexpr int W = V::W;
  static constexpr int MR = V::MR;
  static constexpr int NR = V::NR;
  static constexpr int NB = NR / W;  // vectors per row of a micro-tile
  static_assert(NR % W == 0, "NR must be a whole number of vectors");
  static_assert(MR <= kMaxMR && NR <= kMaxNR, "the driver's edge tile is too small");
  static_assert(MR <= 16 && NB <= 4, "raise the unroll pragmas of ukr");
  static_assert(V::kDirectRows <= 8 && V::kNarrowRows <= 8 && V::direct_vectors(1) <= 8,
                "raise the unroll pragmas of block");
  static_assert(V::kGemvVectors <= 16, "raise the unroll pragmas of gemv_block");

  // Not std::min: an inline function from a shared header, emitted here with ISA flags, could
  // be the copy the linker keeps for the portable files too (ODR), and run on a CPU without the
  // ISA. Members of this template are local to the including file (see the top).
  static inline int64_t lesser(int64_t x, int64_t y) { return x < y ? x : y; }

  // ---- packed micro-kernel --------------------------------------------------------------
  // MR*NB accumulators, NB vectors of B and one broadcast of A per step of p; the unroll
  // pragmas carry literal bounds at least as large as any MR / NB so they always unroll fully.
  // ukr_part<NV> computes only the first NV vectors of the tile (the column-tail kernel of
  // kernel.h); ukr is ukr_part<NB>.
  //
  // ukr_gen is both: kRowsA false reads A packed (row i of step p at a[p * MR + i]); kRowsA
  // true reads it where it lies in a row-major matrix (a[i * lda + p], ukr_rows_a), so that a
  // block of A need not be packed at all. The values and the arithmetic are the same, so the
  // two give bitwise the same tile.
  template <int NV, bool kRowsA>
  static void ukr_gen(int64_t k, const float* __restrict a, int64_t lda,
                      const float* __restrict b, float* c, int64_t ldc, float alpha,
                      float beta) {
    vec acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = V::zero();
    if constexpr (V::kPrefetchC) {
      // The tile of C is read (beta != 0) or written at the end, after k steps of arithmetic:
      // asking for its lines now hides their miss (C of a large product lives in L3 or DRAM,
      // its rows a whole row stride apart where no hardware prefetcher follows them).
      float* cp = c;
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i, cp += ldc) {
#pragma GCC unroll 4
        for (int l = 0; l < NV * W; l += 16) V::prefetch(cp + l);
        V::prefetch(cp + NV * W - 1);  // the row's last line when c is not 64-byte aligned
      }
    }
#pragma GCC unroll 4
    for (int64_t p = 0; p < k; ++p) {
      if constexpr (V::kPrefetchRows > 0) {
#pragma GCC unroll 4
        for (int l = 0; l < NV * W; l += 16) V::prefetch(b + V::kPrefetchRows * NR + l);
      }
      vec bv[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) bv[j] = V::load(b + j * W);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const vec ai = V::broadcast(kRowsA ? a + i * lda : a + i);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[i][j] = V::fmadd(ai, bv[j], acc[i][j]);
      }
      a += kRowsA ? 1 : MR;
      b += NR;
    }
    // C is addressed through a row pointer advanced by ldc: written as c + i * ldc, GCC 12
    // computes all MR*NB store addresses ahead of the beta test and spills some of them.
    const vec va = V::set1(alpha);
    if (beta == 0.0f) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i, c += ldc)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) V::storeu(c + j * W, V::mul(va, acc[i][j]));
    } else {
      const vec vb = V::set1(beta);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i, c += ldc)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j)
          V::storeu(c + j * W, V::fmadd(vb, V::loadu(c + j * W), V::mul(va, acc[i][j])));
    }
  }

  template <int NV>
  static void ukr_part(int64_t k, const float* a, const float* b, float* c, int64_t ldc,
                       float alpha, float beta) {
    ukr_gen<NV, false>(k, a, 0, b, c, ldc, alpha, beta);
  }

  template <int NV>
  static void ukr_rows_a(int64_t k, const float* a, int64_t lda, const float* b, float* c,
                         int64_t ldc, float alpha, float beta) {
    ukr_gen<NV, true>(k, a, lda, b, c, ldc, alpha, beta);
  }

  static void ukr(int64_t k, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                  float beta) {
    ukr_part<NB>(k, a, b, c, ldc, alpha, beta);
  }

  // One row of a direct kernel's finished K panel (sparse_a_impl.h: C = alpha * acc, or
  // beta_p * C + alpha * acc, through the column masks).
  template <int CB>
  static inline void store_row(float* c, const mask* mk, const vec* acc, vec va, float beta_p) {
    RowStore<V>::template store_row<CB>(c, mk, acc, va, beta_p);
  }

  // ---- direct small-m kernel ------------------------------------------------------------
  // RG rows x up to CB*W columns (n of them, n <= CB*W), all K panels. Column tails go through
  // masks, so nothing past column n is read or written.
  template <int RG, int CB>
  static void block(int64_t n, int64_t k, int64_t kc_max, const float* a, int64_t a_rs,
                    int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                    float alpha, float beta) {
    mask mk[CB];
#pragma GCC unroll 8
    for (int v = 0; v < CB; ++v) mk[v] = V::tail(n - int64_t(v) * W);
    const vec va = V::set1(alpha);
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = lesser(kc_max, k - pc);
      vec acc[RG][CB];
#pragma GCC unroll 8
      for (int r = 0; r < RG; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < CB; ++v) acc[r][v] = V::zero();
      const float* ap = a + pc * a_cs;
      const float* bp = b + pc * ldb;
      for (int64_t p = 0; p < kc; ++p, ap += a_cs, bp += ldb) {
        vec bv[CB];
#pragma GCC unroll 8
        for (int v = 0; v < CB; ++v) bv[v] = V::maskload(bp + v * W, mk[v]);
#pragma GCC unroll 8
        for (int r = 0; r < RG; ++r) {
          const vec ar = V::broadcast(ap + r * a_rs);
#pragma GCC unroll 8
          for (int v = 0; v < CB; ++v) acc[r][v] = V::fmadd(ar, bv[v], acc[r][v]);
        }
      }
      const float beta_p = pc == 0 ? beta : 1.0f;
#pragma GCC unroll 8
      for (int r = 0; r < RG; ++r) store_row<CB>(c + r * ldc, mk, acc[r], va, beta_p);
    }
  }

  // RG rows, all n columns, CB vectors at a time.
  template <int RG, int CB>
  static void rows(int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs, int64_t a_cs,
                   const float* b, int64_t ldb, float* c, int64_t ldc, float alpha, float beta) {
    constexpr int64_t BW = int64_t(CB) * W;
    for (int64_t j = 0; j < n; j += BW)
      block<RG, CB>(lesser(BW, n - j), k, kc, a, a_rs, a_cs, b + j, ldb, c + j, ldc, alpha,
                    beta);
  }

  // Runs the instantiation for exactly `rg` rows (1 <= rg <= RG), chosen at compile time, with
  // CB vectors of columns (CB = 0: direct_vectors(rg)).
  template <int RG, int CB>
  static void rows_of(int rg, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                      int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                      float alpha, float beta) {
    if constexpr (RG > 1) {
      if (rg < RG) {
        rows_of<RG - 1, CB>(rg, n, k, kc, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta);
        return;
      }
    }
    rows<RG, CB == 0 ? V::direct_vectors(RG) : CB>(n, k, kc, a, a_rs, a_cs, b, ldb, c, ldc,
                                                   alpha, beta);
  }

  // All m rows, G at a time.
  template <int G, int CB>
  static void row_groups(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a,
                         int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c,
                         int64_t ldc, float alpha, float beta) {
    for (int64_t i = 0; i < m;) {
      const int step = m - i >= G ? G : int(m - i);
      rows_of<G, CB>(step, n, k, kc, a + i * a_rs, a_rs, a_cs, b, ldb, c + i * ldc, ldc, alpha,
                     beta);
      i += step;
    }
  }

  // ---- one row of A (a single sample's forward pass) ------------------------------------
  // C (1 x n) from one row of A and B read in place: B's bytes dominate, arithmetic is
  // nothing, so this loop is about feeding the core from L2. Each pass takes CB vectors of
  // columns with CB independent accumulators (enough chains to cover the FMA latency), and
  // prefetches B PF rows ahead into L1: the hardware prefetchers stay about one row ahead on
  // B's row stride, too little to hide L2's latency at one row every few cycles. The same
  // per-element arithmetic as block<1, CB> (kernel.h): bitwise the packed path's result.
  static constexpr int64_t kGemvSparseMax = 1024;   // K panels up to this list zero rows

  template <int CB, int PF>
  static void gemv_block(int64_t n, int64_t k, int64_t kc_max, const float* a, int64_t a_cs,
                         const float* b, int64_t ldb, float* c, float alpha, float beta) {
    mask mk[CB];
#pragma GCC unroll 16
    for (int v = 0; v < CB; ++v) mk[v] = V::tail(n - int64_t(v) * W);
    const vec va = V::set1(alpha);
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = lesser(kc_max, k - pc);
      vec acc[CB];
#pragma GCC unroll 16
      for (int v = 0; v < CB; ++v) acc[v] = V::zero();
      const float* ap = a + pc * a_cs;
      const float* bp = b + pc * ldb;
      // Rows of B whose A entry is zero add nothing: a single sample's inputs are often
      // half zeros (ReLU outputs, an image's background), and skipping their rows halves
      // the bytes read. Exact for finite B: a zero term leaves the running sum unchanged
      // (the sum starts at +0 and never becomes -0), so the result is bitwise the full
      // sum's; only an Inf or NaN weight meeting a zero input would have given NaN there.
      // The nonzero rows are listed first (no branch per row), then read in order.
      int32_t nz[kGemvSparseMax];
      int64_t nnz = 0;
      if (kc <= kGemvSparseMax) {
        for (int64_t q = 0; q < kc; ++q) {
          nz[nnz] = int32_t(q);
          nnz += ap[q * a_cs] != 0.0f;
        }
      }
      if (kc <= kGemvSparseMax && nnz * 8 < kc * 7) {   // worth it below 7/8 nonzero
        for (int64_t i = 0; i < nnz; ++i) {
          if constexpr (PF > 0) {
            const float* pf = bp + int64_t(nz[i + PF < nnz ? i + PF : nnz - 1]) * ldb;
#pragma GCC unroll 16
            for (int v = 0; v < CB * W; v += 16) V::prefetch(pf + v);
          }
          const int64_t q = nz[i];
          const vec ar = V::broadcast(ap + q * a_cs);
          const float* bq = bp + q * ldb;
#pragma GCC unroll 16
          for (int v = 0; v < CB; ++v)
            acc[v] = V::fmadd(ar, V::maskload(bq + v * W, mk[v]), acc[v]);
        }
        store_row<CB>(c, mk, acc, va, pc == 0 ? beta : 1.0f);
        continue;
      }
      // Prefetch only rows of this panel that exist (a prefetch never faults, but one past
      // the matrix would fetch lines nobody reads).
      const int64_t kpf = kc > PF ? kc - PF : 0;
      int64_t p = 0;
      for (; p < kpf; ++p, ap += a_cs, bp += ldb) {
        if constexpr (PF > 0) {
          // one prefetch per 64-byte line of the CB vectors (16 floats a line)
#pragma GCC unroll 16
          for (int v = 0; v < CB * W; v += 16) V::prefetch(bp + PF * ldb + v);
        }
        const vec ar = V::broadcast(ap);
#pragma GCC unroll 16
        for (int v = 0; v < CB; ++v)
          acc[v] = V::fmadd(ar, V::maskload(bp + v * W, mk[v]), acc[v]);
      }
      for (; p < kc; ++p, ap += a_cs, bp += ldb) {
        const vec ar = V::broadcast(ap);
#pragma GCC unroll 16
        for (int v = 0; v < CB; ++v)
          acc[v] = V::fmadd(ar, V::maskload(bp + v * W, mk[v]), acc[v]);
      }
      store_row<CB>(c, mk, acc, va, pc == 0 ? beta : 1.0f);
    }
  }

  template <int CB, int PF>
  static void gemv_cols(int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_cs,
                        const float* b, int64_t ldb, float* c, float alpha, float beta) {
    constexpr int64_t BW = int64_t(CB) * W;
    for (int64_t j = 0; j < n; j += BW)
      gemv_block<CB, PF>(lesser(BW, n - j), k, kc, a, a_cs, b + j, ldb, c + j, alpha, beta);
  }

  static void gemv(int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_cs,
                   const float* b, int64_t ldb, float* c, float alpha, float beta) {
    gemv_cols<V::kGemvVectors, V::kGemvPrefetchRows>(n, k, kc, a, a_cs, b, ldb, c, alpha, beta);
  }

  // ---- narrow n with A's rows adjacent (a_rs == 1) ------------------------------------
  // The weight gradient of an output layer, dW = X^T dZ with N = 10: A = X^T has unit row
  // stride, so a vector can run along C's rows instead of its columns. NJ columns (n == NJ,
  // NJ * 2 + 3 registers) x two vectors of rows: per step of p two loads of A and NJ
  // broadcasts of B feed 2 * NJ FMAs on full lanes, where the row-wise kernel spends one
  // broadcast per FMA on a vector 10/16 full. Each element still accumulates
  // fmadd(a, b, acc) in increasing p from zero per K panel (a * b is b * a exactly) and is
  // stored as alpha * acc, or beta_p * C + alpha * acc with one rounding (an FMA): bitwise
  // the other kernels' result. The finished panel goes to C element by element (transposed).
  template <int NJ>
  static void cols_block(int64_t m, int64_t k, int64_t kc_max, const float* a, int64_t a_cs,
                         const float* b, int64_t ldb, float* c, int64_t ldc, float alpha,
                         float beta) {
    const vec va = V::set1(alpha);
    for (int64_t i0 = 0; i0 < m; i0 += 2 * W) {
      const int64_t mv = lesser(2 * W, m - i0);
      const mask m0 = V::tail(mv), m1 = V::tail(mv - W);
      for (int64_t pc = 0; pc < k; pc += kc_max) {
        const int64_t kc = lesser(kc_max, k - pc);
        vec acc[NJ][2];
#pragma GCC unroll 16
        for (int j = 0; j < NJ; ++j) acc[j][0] = acc[j][1] = V::zero();
        const float* ap = a + i0 + pc * a_cs;
        const float* bp = b + pc * ldb;
        for (int64_t p = 0; p < kc; ++p, ap += a_cs, bp += ldb) {
          const vec a0 = V::maskload(ap, m0), a1 = V::maskload(ap + W, m1);
#pragma GCC unroll 16
          for (int j = 0; j < NJ; ++j) {
            const vec bj = V::broadcast(bp + j);
            acc[j][0] = V::fmadd(a0, bj, acc[j][0]);
            acc[j][1] = V::fmadd(a1, bj, acc[j][1]);
          }
        }
        const float beta_p = pc == 0 ? beta : 1.0f;
        alignas(64) float t[2 * W];
#pragma GCC unroll 16
        for (int j = 0; j < NJ; ++j) {  // unrolled, so that acc stays in registers
          V::storeu(t, V::mul(va, acc[j][0]));
          V::storeu(t + W, V::mul(va, acc[j][1]));
          float* cj = c + i0 * ldc + j;
          if (beta_p == 0.0f) {
            for (int64_t l = 0; l < mv; ++l) cj[l * ldc] = t[l];
          } else {
            for (int64_t l = 0; l < mv; ++l) cj[l * ldc] = __builtin_fmaf(beta_p, cj[l * ldc], t[l]);
          }
        }
      }
    }
  }

  // cols_block for exactly n (1 <= n <= NJ) columns, chosen at compile time.
  template <int NJ>
  static void cols_of(int64_t n, int64_t m, int64_t k, int64_t kc, const float* a,
                      int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                      float alpha, float beta) {
    if constexpr (NJ > 1) {
      if (n < NJ) {
        cols_of<NJ - 1>(n, m, k, kc, a, a_cs, b, ldb, c, ldc, alpha, beta);
        return;
      }
    }
    cols_block<NJ>(m, k, kc, a, a_cs, b, ldb, c, ldc, alpha, beta);
  }

  // Narrow n (one or two vectors of columns: a classifier's output layer, N = 10) takes
  // exactly that many vectors and kNarrowRows rows at a time, so that no FMA works on columns
  // that do not exist and kNarrowRows * CB independent chains cover the FMA latency. (The
  // packed 12 x 32 tile would compute 32 columns for 10.) Same per-element arithmetic.
  static void direct(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                     int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                     float alpha, float beta) {
    if constexpr (V::kColsMaxN > 0) {
      if (a_rs == 1 && m >= W && n <= V::kColsMaxN) {
        cols_of<V::kColsMaxN>(n, m, k, kc, a, a_cs, b, ldb, c, ldc, alpha, beta);
        return;
      }
    }
    if (m == 1 && n > 2 * W)
      gemv(n, k, kc, a, a_cs, b, ldb, c, alpha, beta);
    else if (n <= W)
      row_groups<V::kNarrowRows, 1>(m, n, k, kc, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta);
    else if (n <= 2 * W)
      row_groups<V::kNarrowRows, 2>(m, n, k, kc, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta);
    else
      row_groups<V::kDirectRows, 0>(m, n, k, kc, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta);
  }

  // ---- FMA throughput probe -------------------------------------------------------------
  // kPeakChains independent multiply-add chains and no memory traffic: the rate of the FMA
  // units alone. The lanes are summed at the end only so that the loop cannot be dropped.
  static float fma_loop(int64_t iters) {
    constexpr int C = V::kPeakChains;
    vec acc[C];
    for (int i = 0; i < C; ++i) acc[i] = V::set1(float(i) * 1e-3f);
    const vec x = V::set1(0.999999f), y = V::set1(1e-6f);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 32
      for (int i = 0; i < C; ++i) acc[i] = V::fmadd(acc[i], x, y);
    }
    vec s = acc[0];
    for (int i = 1; i < C; ++i) s = V::add(s, acc[i]);
    float lanes[W];
    V::storeu(lanes, s);
    float total = lanes[0];
    for (int i = 1; i < W; ++i) total += lanes[i];
    return total;
  }
};

}  // namespace pynn::gemm::simd_impl
