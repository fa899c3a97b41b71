// Index plans of the pynn.ops kernels (see indexing.h). Not an op: registers nothing.
#include "nn/ops/indexing.h"

#include <algorithm>
#include <string>

namespace pynn::nn::ops {

bool broadcast_shapes(const std::vector<Shape>& in, Shape& out) {
  size_t r = 0;
  for (const Shape& s : in) r = std::max(r, s.size());
  Shape o(r, 1);
  for (const Shape& s : in) {
    const size_t lead = r - s.size();
    for (size_t d = 0; d < s.size(); ++d) {
      int64_t& od = o[lead + d];
      if (s[d] == od || s[d] == 1) continue;
      if (od != 1) return false;
      od = s[d];
    }
  }
  out = o;
  return true;
}

void BroadcastPlan::init(const std::vector<Shape>& in, const Shape& out) {
  nops_ = int(in.size());
  out_size_ = shape_size(out);
  sizes_.clear();
  for (const Shape& s : in) sizes_.push_back(shape_size(s));
  // Per output axis (sizes of 1 dropped): the size and each operand's stride, 0 where the
  // operand is stretched.
  std::vector<int64_t> dims;
  std::vector<Offsets> strides;
  const size_t r = out.size();
  std::vector<Offsets> all(r, Offsets{});
  for (int k = 0; k < nops_; ++k) {
    const Shape& s = in[size_t(k)];
    const size_t lead = r - s.size();
    int64_t st = 1;
    for (size_t d = s.size(); d-- > 0;) {
      all[lead + d][size_t(k)] = s[d] == 1 ? 0 : st;
      st *= s[d];
    }
  }
  for (size_t d = 0; d < r; ++d) {
    if (out[d] == 1) continue;
    // Merge with the previous axis when every operand walks both as one.
    if (!dims.empty()) {
      bool merge = true;
      for (int k = 0; k < nops_; ++k)
        merge = merge && strides.back()[size_t(k)] == all[d][size_t(k)] * out[d];
      if (merge) {
        dims.back() *= out[d];
        strides.back() = all[d];
        continue;
      }
    }
    dims.push_back(out[d]);
    strides.push_back(all[d]);
  }
  if (dims.empty()) {  // a single element
    dims.push_back(1);
    strides.push_back(Offsets{});
  }
  run_ = dims.back();
  inner_ = strides.back();
  dims.pop_back();
  strides.pop_back();
  dims_ = dims;
  strides_ = strides;
  counter_.assign(dims_.size(), 0);
}

void ReducePlan::init(const Shape& shape, const std::vector<char>& reduce) {
  in_size_ = shape_size(shape);
  kept_.clear();
  red_.clear();
  out_size_ = 1;
  count_ = 1;
  // Walk the axes from the last; a run of same-kind axes is one axis (sizes of 1 vanish, so
  // the axes of a run are adjacent in memory).
  struct Tagged {
    int64_t size, stride;
    bool red;
  };
  std::vector<Tagged> axes;
  int64_t st = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    const int64_t size = shape[d];
    const bool red = reduce[d] != 0;
    (red ? count_ : out_size_) *= size;
    if (size != 1) {
      if (!axes.empty() && axes.back().red == red) {
        axes.back().size *= size;  // stride stays the innermost one
      } else {
        axes.push_back({size, st, red});
      }
    }
    st *= size;
  }
  for (size_t i = axes.size(); i-- > 0;) {
    const Axis a{axes[i].size, axes[i].stride};
    (axes[i].red ? red_ : kept_).push_back(a);
  }
  kc_.assign(kept_.size(), 0);
  rc_.assign(red_.size(), 0);
}

std::vector<char> axes_flags(const Attrs& attrs, const std::vector<int64_t>& axes, int64_t rank,
                             const Shape& shape) {
  std::vector<char> flags(size_t(rank), 0);
  for (int64_t a : axes) {
    const int64_t r = a < 0 ? a + rank : a;
    if (r < 0 || r >= rank)
      op_error(attrs, "axis " + std::to_string(a) + " is out of range for input shape " +
                          shape_str(shape) + " (per-sample axes 0.." +
                          std::to_string(rank - 1) + " or negative from the end)");
    if (flags[size_t(r)])
      op_error(attrs, "axis " + std::to_string(a) + " is given twice in axes " +
                          shape_str(axes) + " for input shape " + shape_str(shape));
    flags[size_t(r)] = 1;
  }
  return flags;
}

void no_gradient(float* dx, int64_t n, bool acc) {
  if (dx == nullptr || acc) return;
  std::fill(dx, dx + n, 0.0f);
}

}  // namespace pynn::nn::ops
