// The blocked GEMM driver: the five loops of Goto/BLIS around a micro-kernel.
//
// C is row-major, so our tile is MR rows of A by NR columns of B, and the roles BLIS gives to
// its loops are mirrored: the small packed A micro-panel (MR x KC) stays in L1 while the
// innermost loop streams B micro-panels (KC x NR) out of an L2-resident packed B block.
//
//   IC  loop over rows of A by MC          (packed A block lives in L2/L3)
//    PC  loop over K by KC                 (pack A block; beta applies on the first panel only)
//     JC  loop over columns of B by NC     (pack B block into L2)
//      IR  loop over the A block by MR     (one A micro-panel, kept in L1)
//       JR  loop over the B block by NR    (B micro-panels streamed from L2)
//        micro-kernel -> MR x NR tile of C; on the last K panel, the epilogue
//
// When all of a task's columns fit one NC block (a layer's width), B is packed once per K
// panel and A in sub-blocks of a few micro-panels, each used while still in cache (see
// gemm_block). Tiles narrower than NR run a column-tail kernel (kernel.h, ukr_cols).
//
// A row-major A (unit column stride) is not packed at all where the kernel table has
// ukr_rows_a: the micro-kernel broadcasts A's elements from the matrix itself (six rows read
// in order), and only a last group of fewer than MR rows is packed. The packed panel bought
// nothing for the broadcast operand but the cost of the copy: measured with ab_gemm.py on the
// Ice Lake Xeon (1 thread, median time ratio over thousands of alternating pairs), the MLP
// forward products 4-6%, 2048^2, 1024^2 and an LSTM step about 4% faster, bitwise the same C.
//
// Threads: C is cut into a grid of rectangles aligned to MR and NR, one per task of a region
// on pynn's pool (common/parallel.h), and each task runs the loops above on its own rectangle
// with its running thread's packing buffers. K is never split, and the cuts fall on tile
// boundaries, so every element of C is produced by the same sequence of floating-point
// operations whatever the thread count: results are bitwise identical for 1..N threads.
//
// A may also be implicit (sgemm_packed_a): the caller's routine packs each MC x KC block of A
// (a convolution gathers image patches), and everything else above stays as it is.
//
// Small m (up to the kernel's direct_max_m), or narrow n (up to narrow_max_n, whatever m),
// with B of unit column stride skips all of the above: packing a whole weight matrix for one output row costs more than the product. The
// direct kernel reads A and B in place and reproduces the micro-kernel's arithmetic per
// element over the same K panels (see kernel.h), so a row's result never depends on how many
// rows were computed with it or on which path ran.
#include "gemm/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "common/aligned_buffer.h"
#include "common/parallel.h"
#include "gemm/blocksizes.h"
#include "gemm/pack.h"

namespace pynn::gemm {
namespace {

// Per-thread packing buffers: after the first call of a given size nothing is allocated.
thread_local AlignedBuffer tl_pack_a;
thread_local AlignedBuffer tl_pack_b;
thread_local AlignedBuffer tl_sparse;  // the sparse-A kernel's lists and scratch

void pack_a_dispatch(const KernelInfo& kern, int64_t mc, int64_t kc, const float* src,
                     int64_t rs, int64_t cs, float* dst) {
  if (kern.pack_a != nullptr && kern.pack_a(mc, kc, src, rs, cs, dst)) return;
  switch (kern.mr) {
    case 4: pack_a<4>(mc, kc, src, rs, cs, dst); break;
    case 6: pack_a<6>(mc, kc, src, rs, cs, dst); break;
    case 8: pack_a<8>(mc, kc, src, rs, cs, dst); break;
    case 12: pack_a<12>(mc, kc, src, rs, cs, dst); break;
    case 14: pack_a<14>(mc, kc, src, rs, cs, dst); break;
    case 16: pack_a<16>(mc, kc, src, rs, cs, dst); break;
    default: std::abort();  // a kernel table entry with an unsupported MR is a build bug
  }
}

void pack_b_dispatch(const KernelInfo& kern, int64_t kc, int64_t nc, const float* src,
                     int64_t rs, int64_t cs, float* dst) {
  if (kern.pack_b != nullptr && kern.pack_b(kc, nc, src, rs, cs, dst)) return;
  switch (kern.nr) {
    case 8: pack_b<8>(kc, nc, src, rs, cs, dst); break;
    case 16: pack_b<16>(kc, nc, src, rs, cs, dst); break;
    case 32: pack_b<32>(kc, nc, src, rs, cs, dst); break;
    case 64: pack_b<64>(kc, nc, src, rs, cs, dst); break;
    default: std::abort();
  }
}

// Splits K into panels of near-equal depth no deeper than kc_max (784 -> 392 + 392 rather than
// 384 + 384 + 16, which would write C three times for little work).
int64_t k_panel_depth(int64_t k, int64_t kc_max) {
  const int64_t panels = (k + kc_max - 1) / kc_max;
  return (k + panels - 1) / panels;
}

// One thread's share: rows [m0, m1) and columns [n0, n1) of C, all of K.
// pack_a_block(ic, mc, pc, kc, dst) packs rows [ic, ic + mc) x columns [pc, pc + kc) of A into
// dst in pack_a's layout (a strided matrix, or an implicit one such as convolution patches).
// pack_b_block(pc, kc, jc, nc, dst) returns rows [pc, pc + kc) x columns [jc, jc + nc) of B
// in pack_b's layout: packed into dst, or a block of a B packed beforehand (sgemm_prepacked_b).
// rows_a, when not null, is A itself (row-major, unit column stride, row stride lda), which
// the one-block-of-columns case then reads in place instead of packing (see below).
template <class PackA, class PackB>
void gemm_block(const KernelInfo& kern, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                int64_t k, float alpha, const PackA& pack_a_block, const PackB& pack_b_block,
                float beta, float* c, int64_t ldc, const Epilogue& ep, const float* rows_a,
                int64_t lda) {
  const int MR = kern.mr, NR = kern.nr;
  // MC from the table, then evened out over the blocks it needs (2048 rows in blocks of at
  // most 2040 run as 2 x 1032, not 2040 + 8: a thin last block re-packs all of B for a few
  // rows). A multiple of MR, so tiles start on the same rows whatever MC is.
  const int64_t mc_max = std::max<int64_t>(MR, kern.mc / MR * MR);
  const int64_t mblocks = (m1 - m0 + mc_max - 1) / mc_max;  // m1 > m0: at least 1
  const int64_t MC = ((m1 - m0 + mblocks - 1) / mblocks + MR - 1) / MR * MR;
  const int64_t NC = std::max<int64_t>(NR, kern.nc / NR * NR);
  const int64_t KC = k_panel_depth(k, kern.kc);
  // One block of columns (n <= NC: a layer's width): the packed A block is used by a single
  // sweep of B, so there is nothing to keep it for. It is then packed in sub-blocks of MCS
  // rows (8 micro-panels: at most 8 * MR * KC floats, beside the B block in L2), each run
  // while it is still in cache, instead of MC rows that would go out to L3 between packing
  // and use; B is packed once per K panel as before. Measured with benchmarks/ab_gemm.py on
  // the Ice Lake Xeon (6 x 64 kernel): conv2 15488x288.288x64 12% faster with sub-blocks of
  // 4 or 16 panels, the MLP and LSTM shapes 0-3%.
  const bool one_jc = n1 - n0 <= NC;
  const int64_t MCS = one_jc ? std::min<int64_t>(MC, 8 * MR) : MC;
  const int64_t mrows = std::min<int64_t>(MCS, m1 - m0);
  const int64_t ncols = std::min<int64_t>(NC, n1 - n0);
  float* abuf = tl_pack_a.get(int64_t((mrows + MR - 1) / MR * MR) * KC);
  float* bbuf = tl_pack_b.get(int64_t((ncols + NR - 1) / NR * NR) * KC);
  // Scratch tile for edges, zeroed so the kernel never reads uninitialised lanes (the lanes
  // past the edge are computed and discarded).
  alignas(64) float edge[kMaxMR * kMaxNR] = {};
  const bool has_ep = !ep.empty();

  // Rows [i0, i0 + rows) x depth [pc, pc + kc) of A made ready for tiles(): packed at abuf
  // (returns null), or read in place (rows_a, see the top; returns its row i0, column pc),
  // where only a last group of fewer than MR rows is packed, at its place in abuf (its
  // missing rows must read as zeros).
  auto a_block = [&](int64_t i0, int64_t rows, int64_t pc, int64_t kc) -> const float* {
    if (rows_a == nullptr) {
      pack_a_block(i0, rows, pc, kc, abuf);
      return nullptr;
    }
    const int64_t full = rows / MR * MR;
    if (full < rows) pack_a_block(i0 + full, rows - full, pc, kc, abuf + full * kc);
    return rows_a + i0 * lda + pc;
  };

  // The IR and JR loops: rows [ic, ic + mc) of C packed at abuf, columns [jc, jc + nc) of
  // one K panel [.., + kc) of B at bblock.
  // A in place: arow is row ic, column pc of A (null: A packed at abuf).
  auto tiles = [&](int64_t ic, int64_t mc, int64_t jc, int64_t nc, const float* bblock,
                   int64_t kc, float beta_p, bool last, const float* arow) {
    const int nb = NR / kern.w;
    const float* bp_cur = nullptr;
    for (int64_t ir = 0; ir < mc; ir += MR) {                    // IR
      const int64_t mv = std::min<int64_t>(MR, mc - ir);
      const bool direct_a = arow != nullptr && mv == MR;
      const float* ap = direct_a ? arow + ir * lda : abuf + ir * kc;
      // The kernel of the first v vectors of the tile (v = nb: the whole tile).
      auto run = [&](int64_t v, float* ct, int64_t l) {
        if (direct_a) {
          kern.ukr_rows_a[v - 1](kc, ap, lda, bp_cur, ct, l, alpha, beta_p);
        } else {
          const ukr_fn u = v < nb && kern.ukr_cols[v - 1] != nullptr ? kern.ukr_cols[v - 1] : kern.ukr;
          u(kc, ap, bp_cur, ct, l, alpha, beta_p);
        }
      };
      for (int64_t jr = 0; jr < nc; jr += NR) {                  // JR
        const int64_t nv = std::min<int64_t>(NR, nc - jr);
        bp_cur = bblock + jr * kc;
        float* ct = c + (ic + ir) * ldc + (jc + jr);
        // A tile narrower than NR runs the column-tail kernel of its width in vectors.
        const int64_t nvec = (nv + kern.w - 1) / kern.w;
        const bool has_tail = nv < NR && kern.ukr_cols[nvec - 1] != nullptr;
        const int64_t v = has_tail ? nvec : nb;
        if (mv == MR && (nv == NR || (has_tail && nv == nvec * kern.w))) {
          run(v, ct, ldc);  // writes exactly the tile's nv columns
        } else {
          // The kernel itself applies beta to a copy of the tile, so an edge element is
          // rounded exactly like a full-tile one (FMA or not, as the kernel does it) and the
          // result never depends on where the matrix edge falls. beta_p == 0: C unread.
          if (beta_p != 0.0f) {
            for (int64_t i = 0; i < mv; ++i)
              std::copy(ct + i * ldc, ct + i * ldc + nv, edge + i * NR);
          }
          run(v, edge, NR);
          for (int64_t i = 0; i < mv; ++i)
            std::copy(edge + i * NR, edge + i * NR + nv, ct + i * ldc);
        }
        if (last && has_ep) ep.apply(ct, ldc, ic + ir, jc + jr, mv, nv);
      }
    }
  };

  for (int64_t ic = m0; ic < m1; ic += MC) {                     // IC
    const int64_t mc = std::min(MC, m1 - ic);
    for (int64_t pc = 0; pc < k; pc += KC) {                     // PC
      const int64_t kc = std::min(KC, k - pc);
      const float beta_p = pc == 0 ? beta : 1.0f;
      const bool last = pc + kc == k;
      if (one_jc) {
        const float* bblock = pack_b_block(pc, kc, n0, n1 - n0, bbuf);
        for (int64_t is = ic; is < ic + mc; is += MCS) {         // IC, sub-blocks
          const int64_t ms = std::min(MCS, ic + mc - is);
          tiles(is, ms, n0, n1 - n0, bblock, kc, beta_p, last, a_block(is, ms, pc, kc));
        }
        continue;
      }
      const float* arow = a_block(ic, mc, pc, kc);
      for (int64_t jc = n0; jc < n1; jc += NC) {                 // JC
        const int64_t nc = std::min(NC, n1 - jc);
        tiles(ic, mc, jc, nc, pack_b_block(pc, kc, jc, nc, bbuf), kc, beta_p, last, arow);
      }
    }
  }
}

// Chooses how to cut C among nt threads: the factorisation tm x tn = nt whose busiest thread
// has the least work, counting the packing each thread repeats.
ThreadGrid choose_grid(const KernelInfo& kern, int64_t m, int64_t n, int64_t k, int nt) {
  const int64_t mp = (m + kern.mr - 1) / kern.mr;
  const int64_t np = (n + kern.nr - 1) / kern.nr;
  // Multiply-adds run ~16x faster than packing copies on the SIMD kernels.
  return least_cost_grid(mp, np, kern.mr, kern.nr, nt, [k](double rows, double cols) {
    return rows * cols * double(k) / 16.0 + (rows + cols) * double(k);
  });
}

int64_t split(int64_t panels, int parts, int idx, int step) {
  return (panels * idx / parts) * step;
}

// The direct path's m bound: the kernel table's, unless PYNN_GEMM_DIRECT_MAX_M overrides it
// (0 turns the path off; tests use it to compare the two paths, the benchmark to tune it).
int direct_max_m(const KernelInfo& kern) {
  static const int override_m = [] {
    const char* s = std::getenv("PYNN_GEMM_DIRECT_MAX_M");
    if (s == nullptr || *s == '\0') return -1;
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    return (*end == '\0' && v >= 0 && v <= 4096) ? int(v) : -1;
  }();
  if (kern.direct == nullptr) return 0;
  return override_m >= 0 ? override_m : kern.direct_max_m;
}

// Small m with B row-major (the forward pass of a few samples): no packing. Columns are cut
// among threads on NR boundaries, and the epilogue runs on the NR-wide segments the packed
// path uses, so every element (including a vectorised activation's segment split) matches it.
void gemm_direct(const KernelInfo& kern, int64_t m, int64_t n, int64_t k, float alpha,
                 MatrixView a, MatrixView b, float beta, float* c, int64_t ldc,
                 const Epilogue& ep, int nt) {
  const int64_t KC = k_panel_depth(k, kern.kc);
  const int64_t NR = kern.nr, MR = kern.mr;
  const int64_t np = (n + NR - 1) / NR;
  auto run = [&](int64_t n0, int64_t n1) {
    kern.direct(m, n1 - n0, k, KC, a.data, a.rs, a.cs, b.data + n0 * b.cs, b.rs, c + n0, ldc,
                alpha, beta);
    if (!ep.empty()) {
      for (int64_t i = 0; i < m; i += MR)
        for (int64_t j = n0; j < n1; j += NR)
          ep.apply(c + i * ldc + j, ldc, i, j, std::min(MR, m - i), std::min(NR, n1 - j));
    }
  };
  if (nt > 1 && np < nt) {
    // Too few columns to share (the narrow path): cut the rows instead, on MR boundaries so
    // that the epilogue sees the same segments. A row's result does not depend on its group.
    const int64_t mp = (m + MR - 1) / MR;
    const int ntr = int(std::min<int64_t>(nt, mp));
    parallel::run(ntr, [&](int t) {
      const int64_t m0 = split(mp, ntr, t, int(MR));
      const int64_t m1 = std::min(m, split(mp, ntr, t + 1, int(MR)));
      if (m0 >= m1) return;
      kern.direct(m1 - m0, n, k, KC, a.data + m0 * a.rs, a.rs, a.cs, b.data, b.rs,
                  c + m0 * ldc, ldc, alpha, beta);
      if (!ep.empty())
        for (int64_t i = m0; i < m1; i += MR)
          for (int64_t j = 0; j < n; j += NR)
            ep.apply(c + i * ldc + j, ldc, i, j, std::min(MR, m1 - i), std::min(NR, n - j));
    });
    return;
  }
  if (nt <= 1) {
    run(0, n);
    return;
  }
  parallel::run(nt, [&](int t) {
    const int64_t n0 = split(np, nt, t, int(NR));
    const int64_t n1 = std::min(n, split(np, nt, t + 1, int(NR)));
    if (n0 < n1) run(n0, n1);
  });
}

// Nothing to accumulate: C = beta * C (never reading C when beta is 0), then the epilogue.
void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc, const Epilogue& ep) {
  for (int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) std::fill(ci, ci + n, 0.0f);
    else if (beta != 1.0f) for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
  }
  if (!ep.empty()) ep.apply(c, ldc, 0, 0, m, n);
}

// The packed path on as many threads as the size allows: C cut into a grid of MR/NR-aligned
// rectangles, each running gemm_block with its own packing buffers.
template <class PackA, class PackB>
void gemm_blocked(const KernelInfo& kern, int64_t m, int64_t n, int64_t k, float alpha,
                  const PackA& pack_a_block, const PackB& pack_b_block, float beta, float* c,
                  int64_t ldc, const Epilogue& ep, int nthreads, const float* rows_a = nullptr,
                  int64_t lda = 0) {
  const int nt = threads_for(m, n, k, nthreads);
  ThreadGrid g = nt > 1 ? choose_grid(kern, m, n, k, nt) : ThreadGrid{};
  const int used = g.tm * g.tn;
  if (used <= 1) {
    gemm_block(kern, 0, m, 0, n, k, alpha, pack_a_block, pack_b_block, beta, c, ldc, ep, rows_a,
               lda);
    return;
  }
  const int64_t mp = (m + kern.mr - 1) / kern.mr;
  const int64_t np = (n + kern.nr - 1) / kern.nr;
  // Each task owns one rectangle of the grid; a task that cannot get its packing buffers
  // throws std::bad_alloc, which reaches the caller once every task has finished.
  parallel::run(used, [&](int t) {
    const int ti = t / g.tn, tj = t % g.tn;
    const int64_t m0 = split(mp, g.tm, ti, kern.mr);
    const int64_t m1 = std::min(m, split(mp, g.tm, ti + 1, kern.mr));
    const int64_t n0 = split(np, g.tn, tj, kern.nr);
    const int64_t n1 = std::min(n, split(np, g.tn, tj + 1, kern.nr));
    if (m0 < m1 && n0 < n1)
      gemm_block(kern, m0, m1, n0, n1, k, alpha, pack_a_block, pack_b_block, beta, c, ldc, ep,
                 rows_a, lda);
  });
}

// Packs B's blocks as the driver reaches them (the ordinary case).
struct PackBInPlace {
  const KernelInfo& kern;
  MatrixView b;
  const float* operator()(int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* dst) const {
    pack_b_dispatch(kern, kc, nc, b.data + pc * b.rs + jc * b.cs, b.rs, b.cs, dst);
    return dst;
  }
};

// Blocks of a B packed whole by pack_b_whole: K panel [pc, pc + kc) starts at pc * npad
// (npad = n rounded up to NR) and is pack_b's layout of all n columns, so the block of columns
// [jc, jc + nc) (jc a multiple of NR) starts jc * kc further on.
struct PackBPrepacked {
  const float* packed;
  int64_t npad;
  const float* operator()(int64_t pc, int64_t kc, int64_t jc, int64_t, float*) const {
    return packed + pc * npad + jc * kc;
  }
};

int64_t padded_n(const KernelInfo& kern, int64_t n) { return (n + kern.nr - 1) / kern.nr * kern.nr; }

// The unpacked (direct) kernel when it applies; false if the blocked path must run.
bool try_direct(const KernelInfo& kern, int64_t m, int64_t n, int64_t k, float alpha,
                MatrixView a, MatrixView b, float beta, float* c, int64_t ldc,
                const Epilogue& ep, int nthreads) {
  const int dmax = direct_max_m(kern);
  if (m <= dmax && (b.cs == 1 || n == 1)) {
    // A few rows are bound by reading B, not by arithmetic: once B is large, each core
    // reading its own share of the columns (from its own cache) is what pays.
    const int nt_direct =
        n * k >= kDirectParallelElems ? threads_for(kParallelThreshold, 1, 1, nthreads) : 1;
    gemm_direct(kern, m, n, k, alpha, a, b, beta, c, ldc, ep, nt_direct);
    return true;
  }
  if (dmax > 0 && n <= kern.narrow_max_n && b.cs == 1) {
    // Narrow n (an output layer of 10 classes): the packed tile would spend most of its
    // lanes on columns that do not exist, and packing A costs as much as the product. The
    // direct kernel takes one or two vectors of columns (bitwise the packed result).
    gemm_direct(kern, m, n, k, alpha, a, b, beta, c, ldc, ep, threads_for(m, n, k, nthreads));
    return true;
  }
  return false;
}

// A itself when the kernel can read it in place (row-major: unit column stride), else null.
const float* rows_in_place(const KernelInfo& kern, MatrixView a) {
  return a.cs == 1 && kern.ukr_rows_a[kern.nr / kern.w - 1] != nullptr ? a.data : nullptr;
}

// ---- the zero-skipping (sparse A) path -----------------------------------------------------
// An A with many exact zeros (image pixels, ReLU outputs, the gradient behind a ReLU) runs the
// sparse-A kernel (sparse_a_impl.h): bitwise the dense result when B is finite, for the cost
// of the nonzero terms plus a list-building pass over A (O(m k), against O(m n k) for the
// product, so only for n of at least kSparseMinN columns).
//
// PYNN_GEMM_SPARSE (or set_sparse_mode): "0" never, "1" whenever the operands allow (B of
// unit column stride; tests use it to compare the two paths), unset or "auto": the probe.
std::atomic<int> g_sparse_mode{[] {
  const char* s = std::getenv("PYNN_GEMM_SPARSE");
  if (s != nullptr && std::strcmp(s, "0") == 0) return 0;
  if (s != nullptr && std::strcmp(s, "1") == 0) return 1;
  return -1;
}()};
std::atomic<int64_t> g_sparse_calls{0};

// The probe: the zero fraction of up to kSparseProbeLines lines of A spread over it, each
// read along its unit stride: rows of a row-major A (a batch, whose rows are alike), columns
// of an A with unit row stride (A = X^T of a weight gradient: a column of A is a row of X, one
// sample's features; a few rows of A would be a few features, and an image's border pixels
// are zero where its centre is not).
constexpr int64_t kSparseProbeLines = 16;

bool zero_heavy(MatrixView a, int64_t m, int64_t k) {
  const bool by_cols = a.rs == 1 && a.cs != 1;
  const int64_t count = by_cols ? k : m, len = by_cols ? m : k;
  const int64_t step = by_cols ? a.cs : a.rs, stride = by_cols ? a.rs : a.cs;
  const int64_t lines = std::min(count, kSparseProbeLines);
  int64_t zeros = 0;
  for (int64_t t = 0; t < lines; ++t) {
    const float* line = a.data + ((2 * t + 1) * count / (2 * lines)) * step;
    if (stride == 1) {
      for (int64_t q = 0; q < len; ++q) zeros += line[q] == 0.0f;
    } else {
      for (int64_t q = 0; q < len; ++q) zeros += line[q * stride] == 0.0f;
    }
  }
  return double(zeros) >= kSparseMinZeroFraction * double(lines * len);
}

// One thread's rows [m0, m1) x columns [n0, n1) (n0 a multiple of NR), in two calls of the
// kernel (or calls of 256 rows when there are fewer), each followed by the epilogue on its
// rows, on the NR-wide segments of the packed path.
void sparse_part(const KernelInfo& kern, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                 int64_t k, int64_t KC, float alpha, MatrixView a, MatrixView b, float beta,
                 float* c, int64_t ldc, const Epilogue& ep) {
  const int64_t R = kSparseRows, lds = KC + 16;
  const int64_t depth = kern.sparse_depth, segs = ((KC + depth - 1) / depth + 1 + 15) / 16 * 16;
  const int64_t width = kern.sparse_width;
  const int64_t npad = (n1 - n0 + width - 1) / width * width;
  // The kernel packs B's panel once per call, so a call takes many rows; the epilogue runs
  // on each call's rows while they are in L2.
  const int64_t chunk = std::max<int64_t>(16 * R, (m1 - m0 + 1) / 2 / R * R);
  // bpack, acc, idx, val, tmp, seg (R = 16: every part a multiple of 16 floats, aligned).
  float* buf = tl_sparse.get(KC * npad + R * width + 3 * R * lds + R * segs);
  SparseWork w;
  w.bpack = buf;
  w.acc = buf + KC * npad;
  w.idx = reinterpret_cast<int32_t*>(w.acc + R * width);
  w.val = w.acc + R * width + R * lds;
  w.tmp = w.acc + R * width + 2 * R * lds;
  w.seg = reinterpret_cast<int32_t*>(w.acc + R * width + 3 * R * lds);
  const int64_t NR = kern.nr;
  for (int64_t i0 = m0; i0 < m1; i0 += chunk) {
    const int64_t rows = std::min(chunk, m1 - i0);
    kern.sparse(rows, n1 - n0, k, KC, depth, a.data + i0 * a.rs, a.rs, a.cs,
                b.data + n0 * b.cs, b.rs, c + i0 * ldc + n0, ldc, alpha, beta, w);
    if (!ep.empty())
      for (int64_t j = n0; j < n1; j += NR)
        ep.apply(c + i0 * ldc + j, ldc, i0, j, rows, std::min(NR, n1 - j));
  }
}

// The sparse path when the mode and the operands allow it; false if another path must run.
// Threads take bands of rows (whole blocks of kSparseRows), or bands of NR columns when there
// are too few rows: an element's arithmetic does not depend on its band, so C is bitwise the
// same on any thread count.
bool sparse_applies(const KernelInfo& kern, int64_t m, int64_t n, int64_t k, MatrixView a,
                    MatrixView b) {
  const int mode = g_sparse_mode.load(std::memory_order_relaxed);
  if (mode == 0 || kern.sparse == nullptr || (b.cs != 1 && n != 1)) return false;
  if (mode > 0) return true;
  return m > direct_max_m(kern) && n >= kSparseMinN && zero_heavy(a, m, k);
}

bool try_sparse(const KernelInfo& kern, int64_t m, int64_t n, int64_t k, float alpha,
                MatrixView a, MatrixView b, float beta, float* c, int64_t ldc,
                const Epilogue& ep, int nthreads) {
  if (!sparse_applies(kern, m, n, k, a, b)) return false;
  g_sparse_calls.fetch_add(1, std::memory_order_relaxed);
  const int64_t KC = k_panel_depth(k, kern.kc);
  const int nt = threads_for(m, n, k, nthreads);
  const int64_t R = kSparseRows, NR = kern.nr;
  const int64_t mb = (m + R - 1) / R, np = (n + NR - 1) / NR;
  if (nt <= 1 || (mb < 2 * nt && np < nt)) {
    sparse_part(kern, 0, m, 0, n, k, KC, alpha, a, b, beta, c, ldc, ep);
    return true;
  }
  if (mb >= 2 * nt) {
    parallel::run(nt, [&](int t) {
      const int64_t m0 = std::min(m, split(mb, nt, t, int(R)));
      const int64_t m1 = std::min(m, split(mb, nt, t + 1, int(R)));
      if (m0 < m1) sparse_part(kern, m0, m1, 0, n, k, KC, alpha, a, b, beta, c, ldc, ep);
    });
    return true;
  }
  parallel::run(nt, [&](int t) {
    const int64_t n0 = std::min(n, split(np, nt, t, int(NR)));
    const int64_t n1 = std::min(n, split(np, nt, t + 1, int(NR)));
    if (n0 < n1) sparse_part(kern, 0, m, n0, n1, k, KC, alpha, a, b, beta, c, ldc, ep);
  });
  return true;
}

}  // namespace

const KernelInfo& active_kernel() {
  // The table entry of the active ISA with KC, MC and NC derived from this CPU's caches.
  static const KernelInfo kern = [] {
    KernelInfo k = kKernelGeneric;
    switch (active_arch()) {
#if defined(PYNN_X86)
      case Arch::avx512: k = kKernelAvx512; break;
      case Arch::avx2: k = kKernelAvx2; break;
#endif
      default: break;
    }
    const Blocksizes b = derive_blocksizes(cpu_caches(), k.mr, k.nr, {k.kc, k.mc, k.nc});
    k.kc = b.kc;
    k.mc = b.mc;
    k.nc = b.nc;
    k.sparse_depth = derive_sparse_depth(cpu_caches(), k.sparse_width, 64);
    return k;
  }();
  return kern;
}

void set_sparse_mode(int mode) {
  g_sparse_mode.store(mode < 0 ? -1 : (mode > 0 ? 1 : 0), std::memory_order_relaxed);
}

int sparse_mode() { return g_sparse_mode.load(std::memory_order_relaxed); }

int64_t sparse_calls() { return g_sparse_calls.load(std::memory_order_relaxed); }

int threads_for(int64_t m, int64_t n, int64_t k, int nthreads) {
  if (nthreads <= 0) nthreads = parallel::available_threads();
  if (nthreads <= 1) return 1;
  if (m * n * std::max<int64_t>(k, 1) < kParallelThreshold) return 1;
  return nthreads;
}

void sgemm_with(const KernelInfo& kern, int64_t m, int64_t n, int64_t k, float alpha,
                MatrixView a, MatrixView b, float beta, float* c, int64_t ldc,
                const Epilogue& ep, int nthreads) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc, ep);
    return;
  }
  if (try_sparse(kern, m, n, k, alpha, a, b, beta, c, ldc, ep, nthreads)) return;
  if (try_direct(kern, m, n, k, alpha, a, b, beta, c, ldc, ep, nthreads)) return;
  auto pack = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* dst) {
    pack_a_dispatch(kern, mc, kc, a.data + ic * a.rs + pc * a.cs, a.rs, a.cs, dst);
  };
  gemm_blocked(kern, m, n, k, alpha, pack, PackBInPlace{kern, b}, beta, c, ldc, ep,
               nthreads, rows_in_place(kern, a), a.rs);
}

int64_t packed_b_size(int64_t k, int64_t n) {
  if (k <= 0 || n <= 0) return 0;
  return padded_n(active_kernel(), n) * k;
}

void pack_b_whole(int64_t k, int64_t n, MatrixView b, float* packed) {
  if (k <= 0 || n <= 0) return;
  const KernelInfo& kern = active_kernel();
  const int64_t KC = k_panel_depth(k, kern.kc), npad = padded_n(kern, n);
  for (int64_t pc = 0; pc < k; pc += KC)
    pack_b_dispatch(kern, std::min(KC, k - pc), n, b.data + pc * b.rs, b.rs, b.cs,
                    packed + pc * npad);
}

void sgemm_prepacked_b(int64_t m, int64_t n, int64_t k, float alpha, MatrixView a,
                       MatrixView b, const float* packed, float beta, float* c, int64_t ldc,
                       const Epilogue& ep, int nthreads) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc, ep);
    return;
  }
  const KernelInfo& kern = active_kernel();
  if (try_direct(kern, m, n, k, alpha, a, b, beta, c, ldc, ep, nthreads)) return;
  if (reinterpret_cast<uintptr_t>(packed) % 64 != 0)
    throw std::invalid_argument("sgemm_prepacked_b: the packed B must be 64-byte aligned");
  auto pack = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* dst) {
    pack_a_dispatch(kern, mc, kc, a.data + ic * a.rs + pc * a.cs, a.rs, a.cs, dst);
  };
  gemm_blocked(kern, m, n, k, alpha, pack, PackBPrepacked{packed, padded_n(kern, n)}, beta, c,
               ldc, ep, nthreads, rows_in_place(kern, a), a.rs);
}

void sgemm_packed_a(int64_t m, int64_t n, int64_t k, float alpha, const APacker& a,
                    MatrixView b, float beta, float* c, int64_t ldc, const Epilogue& ep,
                    int nthreads) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc, ep);
    return;
  }
  const KernelInfo& kern = active_kernel();
  const int mr = kern.mr;
  auto pack = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* dst) {
    a.pack(a.ctx, ic, mc, pc, kc, mr, dst);
  };
  gemm_blocked(kern, m, n, k, alpha, pack, PackBInPlace{kern, b}, beta, c, ldc, ep,
               nthreads);
}

void sgemm(int64_t m, int64_t n, int64_t k, float alpha, MatrixView a, MatrixView b, float beta,
           float* c, int64_t ldc, const Epilogue& ep, int nthreads) {
  sgemm_with(active_kernel(), m, n, k, alpha, a, b, beta, c, ldc, ep, nthreads);
}

}  // namespace pynn::gemm
