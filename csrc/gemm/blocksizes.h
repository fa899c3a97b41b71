// GEMM blocksizes derived from the caches this CPU reports (cpuid), not one fixed table.
//
// The kernel tables (kernels_*.cpp) fix only what the register file decides: MR x NR. KC, MC
// and NC follow from the cache sizes, so one build serves an Intel Xeon (48 KB L1d, 1.25-2 MB
// L2) and an AMD EPYC (32 KB L1d, 1 MB L2) alike:
//   KC  the A micro-panel (MR x KC floats) fills about half of L1d; the other half holds the
//       B micro-panel rows being streamed and the C tile;
//   NC  the packed B block (KC x NC floats) fills about half of L2;
//   MC  the packed A block (MC x KC floats) fills about half of this core's share of L3, up
//       to 8192 rows: one block for a 2048-row A on the Ice Lake (share 24 MB), so that B is
//       packed once per K panel instead of once per block of rows (2048^2: 1.6% faster).
// Each is rounded down to a multiple of its register block and kept in a sane range; a cache
// that cpuid does not report keeps the table's value. PYNN_GEMM_KC / _MC / _NC override them
// (benchmarks/bench_gemm.py uses that to compare), a value that is not a positive integer is
// ignored. KC decides the K panels and so the rounding of results: it is the same for every
// thread count and every path (direct and packed), so results stay bitwise identical across
// thread counts, but may differ between CPUs with different caches.
#pragma once
#include <cstdint>

namespace pynn::gemm {

struct CacheSizes {
  int64_t l1d = 0, l2 = 0, l3 = 0;  // bytes; 0 when not reported
  int l3_sharing = 1;               // logical CPUs sharing the L3
};

// What cpuid leaf 4 (Intel) or 0x8000001D (AMD) reports for this CPU.
const CacheSizes& cpu_caches();

struct Blocksizes {
  int kc, mc, nc;
};

// The blocksizes for an MR x NR kernel on caches `c` (`fallback` where a cache is unknown).
Blocksizes derive_blocksizes(const CacheSizes& c, int mr, int nr, const Blocksizes& fallback);

// Rows of B per sub-block of the sparse-A kernel (sparse_a_impl.h), whose B sub-block of
// `width` columns must stay in L1 while a block of rows streams over it: as many rows as
// fill L1d, in multiples of 16, within [16, 512]; `fallback` when L1d is not reported. All
// of L1 rather than half: a row reads only its nonzero rows of the sub-block, and fewer,
// longer sub-blocks mean fewer accumulator spills and loop exits. Measured on Zen 4 (32 KB
// L1d, 128 columns; layer 1 of the MLP on a Fashion-MNIST batch, 1 thread, best of 15):
// forward X W1 at depth 32 / 64 / 96 rows 0.81 / 0.76 / 0.85 of the dense time, the weight
// gradient X^T dZ1 0.86 / 0.82 / 0.97.
// PYNN_GEMM_SPARSE_DEPTH overrides it (rounded down to a multiple of 16, at least 16).
int derive_sparse_depth(const CacheSizes& c, int width, int fallback);

// How a product's C is cut among threads: tm bands of rows by tn bands of columns, on
// micro-tile boundaries.
struct ThreadGrid {
  int tm = 1, tn = 1;
};

// The factorisation tm x tn = nt (each side no more than its mp / np micro-panels) whose
// busiest thread costs least: cost(rows, cols) with that thread's rows and columns rounded up
// to whole MR x NR tiles. {1, 1} when no factorisation fits. The caller's cost model says what
// a thread repeats (its packing), and only the choice depends on it, never a result.
template <class Cost>
ThreadGrid least_cost_grid(int64_t mp, int64_t np, int mr, int nr, int nt, Cost cost) {
  ThreadGrid best;
  double best_cost = -1.0;
  for (int tm = 1; tm <= nt; ++tm) {
    if (nt % tm != 0) continue;
    const int tn = nt / tm;
    if (tm > mp || tn > np) continue;
    const double c = cost(double((mp + tm - 1) / tm) * mr, double((np + tn - 1) / tn) * nr);
    if (best_cost < 0 || c < best_cost) {
      best_cost = c;
      best = ThreadGrid{tm, tn};
    }
  }
  return best;
}

}  // namespace pynn::gemm
