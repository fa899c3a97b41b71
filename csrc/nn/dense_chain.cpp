// The fused dense-chain predict path (see dense_chain.h for what it keeps bitwise).
//
// Loops of one block of rows (a task), for each layer in turn:
//   PC  K panels of the packed GEMM's depth     (pack the block's rows of the layer input)
//    IR  the block's rows by MR                  (one A micro-panel, kept in L1)
//     JR  the layer's columns by NR              (B micro-panels of the packed kernel, from L2)
//      micro-kernel -> MR x NR tile; on the last K panel, bias + activation on the tile
// then a row softmax where the layer has one. The next layer reads this one's output from
// the thread's scratch (columns padded to NR, rows to MR: every tile is a full one).
#include "nn/dense_chain.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "common/aligned_buffer.h"
#include "common/cpu.h"
#include "common/parallel.h"
#include "gemm/gemm.h"
#include "gemm/kernel.h"
#include "gemm/pack.h"
#include "nn/activations.h"
#include "nn/softmax.h"

namespace pynn::nn {

#if defined(PYNN_X86)
// dense_chain_avx512.cpp: the bias + relu epilogue of a tile up to 32 columns wide.
void bias_relu_avx512(float* c, int64_t ldc, int64_t m, int64_t n, const float* bias);
int64_t nonzero_rows_avx512(const float* x, int64_t k, int32_t* idx);
void row_layer_avx512(const float* x, int64_t k, int64_t kc_max, const int32_t* const* lists,
                      const int64_t* counts, const float* w, int64_t ldw, int64_t n, float* y);
#endif

namespace {

// Micro-tile rows per block, at most: every MR-row group streams each layer's packed kernel
// from L2 whatever the block size, so a block only needs to be big enough to keep its
// activations in cache between layers; smaller blocks share out more evenly among threads.
constexpr int kBlockTiles = 4;
// Blocks per thread wanted (when there are enough rows): a thread the machine holds up
// leaves only a few blocks for the others, and a call of a few hundred rows still splits.
constexpr int64_t kBlocksPerThread = 4;

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// The K panel depth of gemm.cpp's k_panel_depth (784 -> 392 + 392 for a 512-deep KC); the
// per-element rounding depends on it, and tests/test_dense_chain.py holds the two paths to
// bitwise equality around the panel boundaries.
int64_t panel_depth(int64_t k, int64_t kc_max) {
  const int64_t panels = (k + kc_max - 1) / kc_max;
  return (k + panels - 1) / panels;
}

thread_local AlignedBuffer tl_pack;     // the block's packed A panel
thread_local AlignedBuffer tl_act[2];   // layer outputs, alternating

#if defined(PYNN_X86)
bool use_avx512() {
  static const bool on = active_arch() == Arch::avx512;
  return on;
}
#endif

// Rows [0, m) x columns [0, kc) of src in the kernel's pack_a<MR> layout: its own packer
// (vectorised, bitwise the template's panels) when it has one for this layout.
void pack_rows(const gemm::KernelInfo& kern, int64_t m, int64_t kc, const float* src,
               int64_t ld, float* dst) {
  if (kern.pack_a != nullptr && kern.pack_a(m, kc, src, ld, 1, dst)) return;
  switch (kern.mr) {
    case 4: gemm::pack_a<4>(m, kc, src, ld, 1, dst); break;
    case 6: gemm::pack_a<6>(m, kc, src, ld, 1, dst); break;
    case 8: gemm::pack_a<8>(m, kc, src, ld, 1, dst); break;
    case 12: gemm::pack_a<12>(m, kc, src, ld, 1, dst); break;
    case 14: gemm::pack_a<14>(m, kc, src, ld, 1, dst); break;
    case 16: gemm::pack_a<16>(m, kc, src, ld, 1, dst); break;
    default: std::abort();  // a kernel table entry with an unsupported MR is a build bug
  }
}

// The epilogue of a finished tile (rows row0.., columns col0.., at c with row stride ld).
// relu: the layer's activation is relu_fwd and the vectorised copy of it may run.
void tile_epilogue(const gemm::Epilogue& ep, bool relu, float* c, int64_t ld, int64_t row0,
                   int64_t col0, int64_t mv, int64_t nv) {
#if defined(PYNN_X86)
  if (relu) {  // element by element: any cut of the columns gives the same bits
    for (int64_t j = 0; j < nv; j += 32)
      bias_relu_avx512(c + j, ld, mv, std::min<int64_t>(32, nv - j),
                       ep.bias ? ep.bias + col0 + j : nullptr);
    return;
  }
#endif
  ep.apply(c, ld, row0, col0, mv, nv);
}

// The kernel for a tile of nv columns: one narrower than NR runs the column-tail kernel of its
// width in vectors (kernel.h: it computes and writes only those, with the same per-element
// arithmetic); the scratch is padded to NR columns, so whole vectors always fit.
gemm::ukr_fn tile_kernel(const gemm::KernelInfo& kern, int64_t nv) {
  if (nv >= kern.nr || kern.w <= 0) return kern.ukr;
  const int64_t nvec = (nv + kern.w - 1) / kern.w;
  const gemm::ukr_fn f = nvec < kern.nr / kern.w ? kern.ukr_cols[nvec - 1] : nullptr;
  return f != nullptr ? f : kern.ukr;
}

bool is_relu(const DenseDesc& d) {
#if defined(PYNN_X86)
  static const gemm::act_fn relu_fn = find_activation("relu")->forward;
  return use_avx512() && d.act != nullptr && d.act == relu_fn;
#else
  return false;
#endif
}

// Layers with at least this many weights share their columns among the threads on the
// one-row path, as gemm_direct does (the first layer of the 784-256-128-10 MLP: one row costs
// reading the weights, and each core then reads its share from its own L2). Splitting the
// second layer too (32k weights) measured slower on a busy machine: a second parallel region
// per row costs more than the 0.6 us it can save.
constexpr int64_t kRowSplitElems = gemm::kDirectParallelElems;

thread_local AlignedBuffer tl_row[2];  // the one-row path's layer outputs

// The direct kernel's gemv skips the rows of W whose input is zero when a K panel of at most
// this depth has under 7/8 of its inputs nonzero (gemm/simd_kernels_impl.h, kGemvSparseMax);
// the one-row kernel below makes the same choice, so that its bits are the gemv's also where
// a skipped row holds an infinity or NaN.
constexpr int64_t kSparseMaxDepth = 1024;

// One layer's input as the one-row kernel reads it: per K panel, the list of its nonzero
// positions, or null where the panel is read whole. Listed once per layer, for every thread
// and column range.
struct RowInput {
  std::vector<int32_t> idx;
  std::vector<const int32_t*> lists;
  std::vector<int64_t> counts;

  void list(const float* x, int64_t k, int64_t KC) {
#if defined(PYNN_X86)
    const int64_t panels = (k + KC - 1) / KC;
    idx.resize(size_t(k + 16 * panels));
    lists.assign(size_t(panels), nullptr);
    counts.assign(size_t(panels), 0);
    int64_t off = 0;
    for (int64_t p = 0, pc = 0; p < panels; ++p, pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      const int64_t cnt = nonzero_rows_avx512(x + pc, kc, idx.data() + off);
      if (kc <= kSparseMaxDepth && cnt * 8 < kc * 7) {
        lists[size_t(p)] = idx.data() + off;
        counts[size_t(p)] = cnt;
      }
      off += kc + 16;
    }
#else
    (void)x, (void)k, (void)KC;
#endif
  }
};
thread_local RowInput tl_row_input;

// One row through every layer, columns cut among threads on NR boundaries: the arithmetic of
// gemm_direct for m = 1, element for element. Column ranges wider than two vectors (where
// the direct kernel would run its gemv) take the AVX-512 one-row kernel, which lists the
// input's nonzeros once per layer rather than once per column block and thread, and reads
// up to 256 columns of each row of W in one pass.
void one_row(const gemm::KernelInfo& kern, const std::vector<DenseDesc>& layers,
             const float* const* W, const float* const* b, const float* x, float* y) {
  const int64_t NR = kern.nr;
  const int threads = parallel::available_threads();
  RowInput& in = tl_row_input;
  const float* src = x;
  for (size_t l = 0; l < layers.size(); ++l) {
    const DenseDesc& d = layers[l];
    float* dst = l + 1 == layers.size() ? y : tl_row[l % 2].get(d.out);
    const gemm::Epilogue ep = d.epilogue(b[l]);
    const bool has_ep = !ep.empty(), relu = is_relu(d);
    const int64_t KC = panel_depth(d.in, kern.kc);
    const float* w = W[l];
#if defined(PYNN_X86)
    const bool own = use_avx512() && kern.w == 16 && d.out > 2 * 16;
    if (own) in.list(src, d.in, KC);
#else
    const bool own = false;
#endif
    auto cols = [&](int64_t j0, int64_t j1) {
#if defined(PYNN_X86)
      if (own && j1 - j0 > 2 * 16)
        row_layer_avx512(src, d.in, KC, in.lists.data(), in.counts.data(), w + j0, d.out,
                         j1 - j0, dst + j0);
      else
#endif
        kern.direct(1, j1 - j0, d.in, KC, src, d.in, 1, w + j0, d.out, dst + j0, d.out, 1.0f,
                    0.0f);
      if (has_ep)
        for (int64_t j = j0; j < j1; j += NR)
          tile_epilogue(ep, relu, dst + j, d.out, 0, j, 1, std::min(NR, j1 - j));
    };
    const int64_t panels = (d.out + NR - 1) / NR;
    const int nt = d.in * d.out >= kRowSplitElems ? int(std::min<int64_t>(threads, panels)) : 1;
    if (nt <= 1) {
      cols(0, d.out);
    } else {
      parallel::run(nt, [&](int t) {
        int64_t p0, p1;
        parallel::static_block(panels, nt, t, p0, p1);
        if (p0 < p1) cols(p0 * NR, std::min(d.out, p1 * NR));
      });
    }
    if (d.softmax) softmax_forward(dst, 1, d.out);
    src = dst;
  }
}

// Touches a byte range into L2 a few cache lines per call: the next block's input rows,
// fetched while this block computes (they come from memory, and the pack of the first layer
// would wait on every line otherwise).
struct Prefetch {
  const char* p = nullptr;
  const char* end = nullptr;
  int64_t lines = 0;  // per call
  void some() {
    for (int64_t i = 0; i < lines && p < end; ++i, p += 64) __builtin_prefetch(p, 0, 2);
  }
};

struct Run {
  const gemm::KernelInfo& kern;
  const std::vector<DenseDesc>& layers;
  const std::vector<int64_t>& offsets;  // each layer's packed kernel in `packed`
  const float* packed;
  const float* const* b;
  const float* x;
  float* y;
  int64_t n;     // rows of x
  int64_t next;  // rows from a block's start to the start of its thread's next block

  // Rows [r0, r0 + m) through every layer.
  void block(int64_t r0, int64_t m) const {
    const int MR = kern.mr, NR = kern.nr;
    const int64_t mpad = round_up(m, MR);
    const int64_t in = layers.front().in;
    const float* src = x + r0 * in;
    int64_t ld = in;
    Prefetch pf;
    if (r0 + next < n) {
      const int64_t r1 = r0 + next, r2 = std::min(n, r1 + m);
      pf.p = reinterpret_cast<const char*>(x + r1 * in);
      pf.end = reinterpret_cast<const char*>(x + r2 * in);
      // spread over the first layer's tiles
      const int64_t tiles = (mpad / MR) * ((in + kern.kc - 1) / kern.kc) *
                            ((layers.front().out + NR - 1) / NR);
      pf.lines = ((pf.end - pf.p) / 64 + tiles) / tiles;
    }
    for (size_t l = 0; l < layers.size(); ++l) {
      const DenseDesc& d = layers[l];
      const int64_t npad = round_up(d.out, NR), KC = panel_depth(d.in, kern.kc);
      float* dst = tl_act[l % 2].get(mpad * npad);
      float* abuf = tl_pack.get(mpad * KC);
      const float* w = packed + offsets[l];
      const gemm::Epilogue ep = d.epilogue(b[l]);
      const bool has_ep = !ep.empty(), relu = is_relu(d);
      for (int64_t pc = 0; pc < d.in; pc += KC) {                    // PC
        const int64_t kc = std::min(KC, d.in - pc);
        const float beta = pc == 0 ? 0.0f : 1.0f;
        const bool last = pc + kc == d.in;
        pack_rows(kern, m, kc, src + pc, ld, abuf);
        for (int64_t ir = 0; ir < m; ir += MR) {                      // IR
          const int64_t mv = std::min<int64_t>(MR, m - ir);
          const float* ap = abuf + ir * kc;
          for (int64_t jr = 0; jr < d.out; jr += NR) {                // JR
            float* ct = dst + ir * npad + jr;
            if (l == 0) pf.some();
            tile_kernel(kern, d.out - jr)(kc, ap, w + pc * npad + jr * kc, ct, npad, 1.0f, beta);
            if (last && has_ep)
              tile_epilogue(ep, relu, ct, npad, ir, jr, mv, std::min<int64_t>(NR, d.out - jr));
          }
        }
      }
      if (d.softmax && l + 1 < layers.size())
        for (int64_t i = 0; i < m; ++i) softmax_forward(dst + i * npad, 1, d.out);
      src = dst;
      ld = npad;
    }
    const int64_t out = layers.back().out;
    float* yb = y + r0 * out;
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(yb + i * out, src + i * ld, sizeof(float) * size_t(out));
    if (layers.back().softmax) softmax_forward(yb, m, out);  // rows are independent
  }
};

}  // namespace

void DenseChain::run(const float* const* W, const float* const* b, const float* x, int64_t n,
                     float* y) {
  if (n <= 0 || layers_.empty()) return;
  if (layers_.front().bf16) {
    run_bf16(W, b, x, n, y);
    return;
  }
  const gemm::KernelInfo& kern = gemm::active_kernel();
  if (n == 1 && kern.direct != nullptr) {
    one_row(kern, layers_, W, b, x, y);  // no packing: the weights are read in place
    return;
  }
  // Each layer's kernel in the packed GEMM's layout, once for the whole call (16-float
  // alignment between layers keeps every B micro-panel 64-byte aligned).
  std::vector<int64_t> offsets(layers_.size());
  int64_t total = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    offsets[l] = total;
    total += round_up(gemm::packed_b_size(layers_[l].in, layers_[l].out), 16);
  }
  float* packed = packed_.get(total);
  for (size_t l = 0; l < layers_.size(); ++l)
    gemm::pack_b_whole(layers_[l].in, layers_[l].out, {W[l], layers_[l].out, 1},
                       packed + offsets[l]);

  const int threads = parallel::available_threads();
  const int64_t rows = std::min<int64_t>(
      int64_t(kBlockTiles) * kern.mr,
      round_up(std::max<int64_t>(1, n / (kBlocksPerThread * threads)), kern.mr));
  const int64_t blocks = (n + rows - 1) / rows;
  const int nt = int(std::min<int64_t>(threads, blocks));
  // a thread's next block is about `nt` blocks on (they are handed out in order; a wrong
  // guess costs a useless prefetch at most)
  const Run r{kern, layers_, offsets, packed, b, x, y, n, rows * nt};
  if (nt <= 1) {
    parallel::run(1, [&](int) {
      for (int64_t k = 0; k < blocks; ++k) r.block(k * rows, std::min(rows, n - k * rows));
    });
    return;
  }
  // One task per thread (the pool starts a thread per task), each taking the next block
  // nobody has taken until none is left: a thread that the machine's other work holds up
  // keeps only the block it is on. Rows never interact, so who computes a block changes
  // nothing in its bits.
  std::atomic<int64_t> next_block{0};
  parallel::run(nt, [&](int) {
    for (int64_t k; (k = next_block.fetch_add(1, std::memory_order_relaxed)) < blocks;)
      r.block(k * rows, std::min(rows, n - k * rows));
  });
}

}  // namespace pynn::nn
