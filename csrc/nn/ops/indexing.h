// Index plans shared by the pynn.ops kernels (unary, binary, where, reduce, argmax): NumPy
// broadcasting between per-sample shapes, and reductions over a set of per-sample axes.
// Not an op: registers nothing.
//
// Invariants:
//  - Plans are about ONE sample (the batch axis is handled by the caller, sample by sample),
//    are built once in configure() and are read-only afterwards: kernels may run them from
//    any thread, and what they visit does not depend on the thread count.
//  - Visiting order is fixed: output elements in row-major order; for reductions, the
//    reduced elements of one output in row-major order of the input. Every sum a kernel makes
//    along a plan therefore runs in one order.
//  - Axes of size 1 are dropped and adjacent axes that walk memory the same way for every
//    operand are merged, so the innermost loop is as long as possible.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "nn/op.h"

namespace pynn::nn::ops {

// NumPy's broadcast of several shapes (aligned on the right, a 1 stretches to the other
// size). Returns false, leaving `out` alone, when two sizes differ and neither is 1.
bool broadcast_shapes(const std::vector<Shape>& in, Shape& out);

// A walk over one sample of a broadcast result: the output is cut into runs of `run`
// contiguous elements; along a run operand k advances by inner[k] (0 when it is broadcast
// there). for_each_run(f) calls f(o, off) with the run's output offset and each operand's
// offset at the start of the run.
class BroadcastPlan {
 public:
  static constexpr int kMaxOperands = 3;
  using Offsets = std::array<int64_t, kMaxOperands>;

  // `in` are the operands' per-sample shapes (at most kMaxOperands), `out` their broadcast.
  void init(const std::vector<Shape>& in, const Shape& out);

  int64_t out_size() const { return out_size_; }
  int64_t size(int k) const { return sizes_[size_t(k)]; }
  // Operand k is smaller than the output: its gradient is a sum over the stretched axes.
  bool reduced(int k) const { return sizes_[size_t(k)] != out_size_; }
  int64_t run() const { return run_; }
  int64_t inner(int k) const { return inner_[size_t(k)]; }

  template <class F>
  void for_each_run(F&& f) const {
    Offsets off{};
    const size_t r = dims_.size();
    counter_.assign(r, 0);
    for (int64_t o = 0; o < out_size_; o += run_) {
      f(o, off);
      for (size_t d = r; d-- > 0;) {  // odometer over the outer axes
        for (int k = 0; k < nops_; ++k) off[size_t(k)] += strides_[d][size_t(k)];
        if (++counter_[d] < dims_[d]) break;
        for (int k = 0; k < nops_; ++k) off[size_t(k)] -= strides_[d][size_t(k)] * dims_[d];
        counter_[d] = 0;
      }
    }
  }

 private:
  int nops_ = 0;
  int64_t out_size_ = 1, run_ = 1;
  std::vector<int64_t> sizes_;
  Offsets inner_{};
  std::vector<int64_t> dims_;              // outer axes (the run's axis excluded)
  std::vector<Offsets> strides_;           // per outer axis, per operand
  mutable std::vector<int64_t> counter_;   // odometer state (kernels run one at a time)
};

// A reduction of one sample over a set of its axes. The kept axes, in order, index the
// outputs; the reduced axes, in order, index the elements of one output.
class ReducePlan {
 public:
  // `reduce[d]` says whether axis d of `shape` is reduced.
  void init(const Shape& shape, const std::vector<char>& reduce);

  int64_t in_size() const { return in_size_; }
  int64_t out_size() const { return out_size_; }
  int64_t count() const { return count_; }  // elements per output

  // f(o, base): output o's first input element is at `base`.
  template <class F>
  void for_each_output(F&& f) const {
    walk(kept_, out_size_, kc_, f);
  }
  // g(j, e): the j-th reduced element (row-major over the reduced axes) is at base + e.
  template <class G>
  void for_each_reduced(G&& g) const {
    walk(red_, count_, rc_, g);
  }

 private:
  struct Axis {
    int64_t size, stride;
  };
  template <class F>
  static void walk(const std::vector<Axis>& axes, int64_t total, std::vector<int64_t>& c, F& f) {
    if (axes.size() <= 1) {  // the common case: one (merged) axis, a strided loop
      const int64_t s = axes.empty() ? 0 : axes[0].stride;
      for (int64_t i = 0; i < total; ++i) f(i, i * s);
      return;
    }
    c.assign(axes.size(), 0);
    int64_t e = 0;
    for (int64_t i = 0; i < total; ++i) {
      f(i, e);
      for (size_t d = axes.size(); d-- > 0;) {
        e += axes[d].stride;
        if (++c[d] < axes[d].size) break;
        e -= axes[d].stride * axes[d].size;
        c[d] = 0;
      }
    }
  }

  int64_t in_size_ = 1, out_size_ = 1, count_ = 1;
  std::vector<Axis> kept_, red_;
  mutable std::vector<int64_t> kc_, rc_;  // odometer state (kernels run one at a time)
};

// Resolves a list of per-sample axes (negative from the end) of a rank-r shape into flags;
// throws naming the node on an axis out of range or given twice.
std::vector<char> axes_flags(const Attrs& attrs, const std::vector<int64_t>& axes, int64_t rank,
                             const Shape& shape);

// Writes zeros over dx when nothing accumulates into it (an op through which no gradient
// flows: its backward contributes nothing, but a first contribution must still define dx).
void no_gradient(float* dx, int64_t n, bool acc);

}  // namespace pynn::nn::ops
