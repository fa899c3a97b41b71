// The fused predict path of a chain of bf16 dense layers (mixed_bfloat16): DenseChain::run_bf16
// (see dense_chain.h for what it keeps bitwise).
//
// What it saves over the per-layer path: that path runs each op on a chunk of rows at a time,
// and sbgemm rounds and packs the layer's whole kernel again for every chunk; here every
// kernel is rounded and packed once per call, and a block of rows goes through all the layers
// while its activations are in this core's cache. The products are sbgemm's own (through
// sbgemm_prepacked_b), so nothing of its arithmetic is repeated here.
//
// A few rows (a single sample, a small batch of requests) take the row kernels of
// gemm/sbgemv.h instead, where the active bf16 kernel has them: each weight is read from the
// user's array and rounded in registers once for up to kSbRowsMax rows, with sbgemm's
// arithmetic for each row; rounding and packing the kernels, which a cache cannot spare (the
// weights are writable in place, with nothing to tell a change), was most of those calls'
// time. Each large layer's columns are shared among the threads, as the float32 one-row path
// does.
#include <algorithm>
#include <atomic>

#include "common/aligned_buffer.h"
#include "common/parallel.h"
#include "gemm/gemm.h"
#include "gemm/sbgemm.h"
#include "gemm/sbgemv.h"
#include "nn/dense_chain.h"
#include "nn/softmax.h"

namespace pynn::nn {
namespace {

// Rows per block: a multiple of the kernel's MR (so no tile is cut short in a block but the
// call's last one), a few MR-row groups deep. Every MR rows stream the layer's packed kernel
// from L2 whatever the block is, so a block only needs to keep its activations in cache from
// one layer to the next; small blocks share out evenly among the threads.
constexpr int64_t kBlockTiles = 4;
constexpr int64_t kBlocksPerThread = 4;

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

thread_local AlignedBuffer tl_bf_act[2];  // a block's layer outputs, alternating

// Rows [0, m) of x (row stride `in` of the first layer) through every layer into y (row stride
// `out` of the last). nthreads: the sbgemm calls' (1 inside a pool task; 0, every thread, for a
// call too small to cut into blocks, where each product is cut along its columns instead).
void rows_through(const std::vector<DenseDesc>& layers, const std::vector<size_t>& offsets,
                  const unsigned char* packed, const float* const* b, const float* x, int64_t m,
                  float* y, int nthreads) {
  const float* src = x;
  for (size_t l = 0; l < layers.size(); ++l) {
    const DenseDesc& d = layers[l];
    const bool last = l + 1 == layers.size();
    float* dst = last ? y : tl_bf_act[l % 2].get(m * d.out);
    gemm::sbgemm_prepacked_b(m, d.out, d.in, {src, d.in, 1}, packed + offsets[l], 0.0f, dst,
                             d.out, d.epilogue(b[l]), nthreads);
    if (d.softmax) softmax_forward(dst, m, d.out);  // rows are independent
    src = dst;
  }
}

thread_local AlignedBuffer tl_bf_row[2];  // the row path's layer outputs, alternating
thread_local AlignedBuffer tl_bf_xp;      // a layer's input rows in the row kernel's form
thread_local AlignedBuffer tl_bf_xrow;    // one of them before interleaving

// Rows [0, n) of x through every layer into y, gemm::kSbRowsMax rows per kernel call (the
// last call the rest). A layer whose product has at least gemm::kDirectParallelElems
// multiply-adds (the float32 one-row path's threshold: below it a parallel region costs more
// than it saves) has its columns cut among the threads on NR boundaries, so that the epilogue
// runs on the very column segments of sbgemm's tiles (an activation may treat a segment's
// tail otherwise than its body); the row kernel's columns share nothing, and its rows only
// the rounded weights.
void few_rows(const gemm::SbRowKernel& rk, const std::vector<DenseDesc>& layers,
              const float* const* W, const float* const* b, const float* x, int64_t n,
              float* y) {
  const int64_t NR = gemm::active_sb_kernel().nr;
  const int threads = parallel::available_threads();
  constexpr int64_t RB = gemm::kSbRowsMax;
  const float* src = x;
  for (size_t l = 0; l < layers.size(); ++l) {
    const DenseDesc& d = layers[l];
    float* dst = l + 1 == layers.size() ? y : tl_bf_row[l % 2].get(n * d.out);
    // The rows in the form rk.rows reads: block by block of RB rows, each block's words
    // interleaved (word q of its row i at q * r + i).
    const int64_t words = (d.in + rk.k_per_word - 1) / rk.k_per_word;
    auto* xp = reinterpret_cast<uint32_t*>(tl_bf_xp.get(n * words));
    auto* xrow = reinterpret_cast<uint32_t*>(tl_bf_xrow.get(d.in + 1));
    for (int64_t i0 = 0; i0 < n; i0 += RB) {
      const int64_t r = std::min(RB, n - i0);
      gemm::sb_row_counted(int(r));
      uint32_t* xb = xp + i0 * words;
      for (int64_t i = 0; i < r; ++i) {
        rk.prep(src + (i0 + i) * d.in, d.in, xrow);
        for (int64_t q = 0; q < words; ++q) xb[q * r + i] = xrow[q];
      }
    }
    const int64_t KC = gemm::sb_k_panel_depth(d.in);
    const gemm::Epilogue ep = d.epilogue(b[l]);
    auto cols = [&](int64_t j0, int64_t j1) {
      for (int64_t i = 0; i < n; i += RB) {
        const int64_t r = std::min<int64_t>(RB, n - i);
        rk.rows[r - 1](xp + i * words, d.in, KC, W[l] + j0, d.out, j1 - j0, dst + i * d.out + j0,
                       d.out);
        if (!ep.empty())
          for (int64_t j = j0; j < j1; j += NR)
            ep.apply(dst + i * d.out + j, d.out, i, j, r, std::min(NR, j1 - j));
      }
    };
    // Thread t takes NR-wide panels [panels t / nt, panels (t + 1) / nt); parallel::run on
    // one thread is a plain call.
    const int64_t panels = (d.out + NR - 1) / NR;
    const bool split = n * d.in * d.out >= gemm::kDirectParallelElems;
    const int nt = split ? int(std::min<int64_t>(threads, panels)) : 1;
    parallel::run(nt, [&](int t) {
      const int64_t j0 = panels * t / nt * NR, j1 = std::min(d.out, panels * (t + 1) / nt * NR);
      if (j0 < j1) cols(j0, j1);
    });
    if (d.softmax) softmax_forward(dst, n, d.out);
    src = dst;
  }
}

}  // namespace

bool DenseChain::few_rows_direct(int64_t n) const {
  const gemm::SbRowKernel* rk = gemm::sb_row_kernel();
  return !layers_.empty() && layers_.front().bf16 && rk != nullptr && n <= rk->max_rows;
}

void DenseChain::run_bf16(const float* const* W, const float* const* b, const float* x,
                          int64_t n, float* y) {
  if (few_rows_direct(n)) {
    few_rows(*gemm::sb_row_kernel(), layers_, W, b, x, n, y);
    return;
  }
  // Every layer's kernel in sbgemm's packed layout, once for the call; each starts on a
  // 64-byte boundary, as sb_pack_b_whole requires.
  std::vector<size_t> offsets(layers_.size());
  size_t total = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    offsets[l] = total;
    total += size_t(round_up(gemm::sb_packed_b_bytes(layers_[l].in, layers_[l].out), 64));
  }
  auto* packed = reinterpret_cast<unsigned char*>(packed_.get(int64_t(total / sizeof(float))));
  for (size_t l = 0; l < layers_.size(); ++l)
    gemm::sb_pack_b_whole(layers_[l].in, layers_[l].out, {W[l], layers_[l].out, 1},
                          packed + offsets[l]);

  const int64_t in = layers_.front().in, out = layers_.back().out;
  const int64_t mr = gemm::active_sb_kernel().mr;
  const int threads = parallel::available_threads();
  const int64_t rows = std::min<int64_t>(
      kBlockTiles * mr, round_up(std::max<int64_t>(1, n / (kBlocksPerThread * threads)), mr));
  const int64_t blocks = (n + rows - 1) / rows;
  if (threads > 1 && blocks < 2 * int64_t(threads)) {
    // Too few rows to share out by blocks (one row, a few): the products share columns.
    rows_through(layers_, offsets, packed, b, x, n, y, 0);
    return;
  }
  const int nt = int(std::min<int64_t>(threads, blocks));
  // One task per thread, each taking the next block nobody has taken (a thread the machine
  // holds up keeps only the block it is on); who computes a block changes nothing in its bits.
  std::atomic<int64_t> next_block{0};
  parallel::run(nt, [&](int) {
    for (int64_t k; (k = next_block.fetch_add(1, std::memory_order_relaxed)) < blocks;) {
      const int64_t r0 = k * rows;
      rows_through(layers_, offsets, packed, b, x + r0 * in, std::min(rows, n - r0),
                   y + r0 * out, 1);
    }
  });
}

}  // namespace pynn::nn
