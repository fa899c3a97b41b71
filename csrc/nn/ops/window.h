// Sliding-window geometry shared by the convolution and pooling ops (conv, max_pool,
// avg_pool): channels_last samples (W, C) or (H, W, C), a window of kh x kw taps moved by
// strides, taps spread by dilation, and Keras's padding rules.
//
// A 1-D op is the 2-D one with H = 1 and a window one row high, so every kernel below is
// written once for two spatial axes.
//
// Padding, per spatial axis of length `in`, window `k`, stride `s`, dilation `d`
// (span = (k - 1) d + 1):
//   valid   out = (in - span) / s + 1, no padding; in < span is an error
//   same    out = ceil(in / s); total = max((out - 1) s + span - in, 0) zeros, total / 2
//           before and the rest after (TensorFlow's rule, which Keras follows: the odd one
//           goes at the end)
//   causal  (1-D convolution only) span - 1 zeros before, none after: out = ceil(in / s)
// Padded positions are zeros for a convolution, and are skipped by pooling (a max never sees
// them, an average divides by the count of real inputs in its window, as TensorFlow does).
#pragma once
#include "common/parallel.h"

#include <cstdint>
#include <string>
#include <vector>

#include "nn/op.h"

namespace pynn::nn::ops {

struct Window {
  int64_t H = 1, W = 1, C = 1;      // input sample
  int64_t KH = 1, KW = 1;           // taps
  int64_t SH = 1, SW = 1;           // strides
  int64_t DH = 1, DW = 1;           // dilation
  int64_t PH = 0, PW = 0;           // zeros before the first row / column
  int64_t OH = 1, OW = 1;           // output positions
  int spatial = 2;                  // 1 or 2: the op's rank (for shapes and messages)

  int64_t in_size() const { return H * W * C; }
  int64_t positions() const { return OH * OW; }
  int64_t taps() const { return KH * KW; }
};

// Builds the geometry for input sample shape `x` ((W, C) or (H, W, C)) and a window of
// `ksize` taps per spatial axis (named `ksize_name` in messages), reading the attributes
// "strides" (default: `default_strides`, or ones when empty), "padding" ("valid", "same",
// "causal" when allowed) and, when `with_dilation`, "dilation_rate". Errors name the node.
Window make_window(const Attrs& attrs, const Shape& x, const std::vector<int64_t>& ksize,
                   const char* ksize_name, const std::vector<int64_t>& default_strides,
                   bool with_dilation, bool allow_causal);

// The output sample shape for `channels` output channels: (OW, ch) or (OH, OW, ch).
Shape window_output_shape(const Window& w, int64_t channels);

// Runs fn(s) for every sample s in [s0, s1), samples shared among the threads when the
// whole job (`work` elementary steps) is worth a parallel region. A sample is never split,
// so whatever fn sums within a sample is summed in the same order on any thread count.
template <class Fn>
void for_samples(int64_t s0, int64_t s1, int64_t work, const Fn& fn) {
  constexpr int64_t kParallelWork = int64_t(1) << 15;
  const int nt = s1 - s0 > 1 && work >= kParallelWork ? parallel::available_threads() : 1;
  if (nt <= 1) {
    for (int64_t s = s0; s < s1; ++s) fn(s);
    return;
  }
  parallel::parallel_for(s1 - s0, nt, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) fn(s0 + i);
  });
}

}  // namespace pynn::nn::ops
