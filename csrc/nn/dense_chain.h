// Inference of a chain of dense layers (an MLP) in row blocks: the fused predict path.
//
// Graph::predict hands a graph whose nodes are float32 Dense layers one after the other (views
// such as Flatten or inference-time Dropout between them are allowed) to DenseChain, which
// runs every layer of one block of rows before moving to the next block (a chain of bf16
// layers, the mixed_bfloat16 policy, has its own twin of this: run_bf16 below):
//   - each layer's weights are packed once per call (gemm::pack_b_whole), not once per chunk;
//   - a block's activations stay in this core's cache from one layer to the next, in padded
//     scratch owned by the thread, and nothing is allocated per block;
//   - bias and activation run on each tile as it is finished, the softmax on the block's rows.
//
// Invariants (what keeps predict bitwise independent of batch size, entry point and thread
// count): every element is computed by the active kernel's micro-kernel over the K panels of
// the packed GEMM (gemm::sgemm), beta 0 on the first panel and 1 after, then the epilogue on
// the same NR-wide column segments (gemm::Epilogue::apply), then softmax_forward on whole
// rows. So a row's output is bitwise what the general path (sgemm per layer, any m) gives.
// Rows never interact, so the split of rows into blocks and tasks changes nothing.
#pragma once
#include <cstdint>
#include <vector>

#include "common/aligned_buffer.h"
#include "gemm/epilogue.h"

namespace pynn::nn {

// What the chain needs of one dense layer (Op::dense_desc fills it).
struct DenseDesc {
  int64_t in = 0, out = 0;
  gemm::act_fn act = nullptr;         // element-wise activation in the epilogue (null: linear)
  const float* act_params = nullptr;  // owned by the op, valid as long as the graph
  bool softmax = false;               // a row softmax after the affine map
  bool bf16 = false;  // compute_dtype "bfloat16": the product on the bf16 GEMM (sbgemm.h)

  // dense_forward's epilogue (bias, then the activation), without a saved pre-activation.
  gemm::Epilogue epilogue(const float* bias) const {
    gemm::Epilogue ep;
    ep.bias = bias;
    ep.act = act;
    ep.act_params = act_params;
    return ep;
  }
};

class DenseChain {
 public:
  // Appends a layer whose kernel (in x out, row-major) and bias (out, or null) are given at
  // run time as W[l], b[l].
  void add(const DenseDesc& d) { layers_.push_back(d); }
  size_t size() const { return layers_.size(); }
  const DenseDesc& layer(size_t l) const { return layers_[l]; }
  void clear() { layers_.clear(); }

  // y (n x out of the last layer) from x (n x in of the first), both contiguous rows.
  // W[l], b[l]: the current weights of layer l. Runs on pynn's pool (the available threads).
  // One row (n == 1) takes the direct kernels on the weights in place, each large layer's
  // columns shared among the threads; more rows take the packed row-block path.
  // Not safe to call from two threads on one DenseChain (the packed weights are its own).
  // A chain of bf16 layers (every layer's bf16 set: Graph::build_chain keeps no mixed chain)
  // runs run_bf16's row blocks instead.
  void run(const float* const* W, const float* const* b, const float* x, int64_t n, float* y);

  // Whether run on n rows of this chain reads the weights in place (a bf16 chain, the active
  // bf16 kernel with row kernels, n at most their crossover with the packed path,
  // SbRowKernel::max_rows): then a call below Graph's chain threshold pays here too.
  bool few_rows_direct(int64_t n) const;

 private:
  // The bf16 twin (dense_chain_bf16.cpp): each layer's kernel rounded and packed once per call
  // (gemm::sb_pack_b_whole), each block of rows through every layer by sbgemm_prepacked_b on
  // one thread; a few rows (few_rows_direct) instead read the weights in place and round them
  // in registers (gemm/sbgemv.h, the same arithmetic as sbgemm's for each row). sbgemm's
  // C[i][j] is the same operations whatever rows it is computed with and on however many
  // threads, so every row is bitwise what the per-layer path (dense_forward with bf16, any
  // chunk of rows) gives: the activation rounded to bf16 when the next layer
  // packs it, float32 sums, bias and activation in float32 in the GEMM's epilogue.
  void run_bf16(const float* const* W, const float* const* b, const float* x, int64_t n,
                float* y);

  std::vector<DenseDesc> layers_;
  AlignedBuffer packed_;  // every layer's packed kernel, one call's
};

}  // namespace pynn::nn
