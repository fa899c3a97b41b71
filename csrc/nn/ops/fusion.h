// Producer-consumer fusion between two ops of the graph engine (nn/graph.h).
//
// The graph offers every op that implements FusesConsumer the op that reads its output, when
// exactly one node reads it and it is not a graph output (Graph::decide_fusion, on every
// structural change, after withdrawing every earlier offer with nullptr). An op that accepts
// computes the consumer's output itself, in its own output storage laid out as the consumer's
// output, and tells the consumer, which then aliases its input (Op::aliases): the graph skips
// the consumer's forward and gives its output gradient straight to the producer, whose
// backward reads it as the consumer's gradient. Results are what the two ops compute apart.
//
// Pairs so far: conv (few input channels, relu or linear) followed by max_pool with 2x2
// windows of stride 2 (nn/ops/conv.cpp).
#pragma once

#include "nn/op.h"
#include "nn/ops/window.h"

namespace pynn::nn::ops {

class FusesConsumer {
 public:
  virtual ~FusesConsumer() = default;
  // `next` is the only reader of this op's output (or nullptr: undo any fusion). Returns
  // whether this op now computes next's output.
  virtual bool fuse_consumer(Op* next) = 0;
};

// A max pooling that its producer may compute.
class FusableMaxPool {
 public:
  virtual ~FusableMaxPool() = default;
  virtual const Window& pool_window() const = 0;
  // Windows of strides == pool size, no padding, all inside the input.
  virtual bool pool_tiles() const = 0;
  // On: the producer computes this op's output; the op aliases its input.
  virtual void set_computed_by_producer(bool on) = 0;
};

}  // namespace pynn::nn::ops
