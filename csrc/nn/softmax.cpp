// Row-wise softmax and its vector-Jacobian product.
//
// Invariants: each row is processed on its own (subtracting the row max first, so exp never
// overflows and the largest term is exactly 1, hence the sum is >= 1 and never 0); rows may
// go to different threads and the result does not depend on the thread count. c == 0 rows
// are left alone. dz may alias dy.
#include "nn/softmax.h"

#include <cmath>

#include "common/parallel.h"

namespace pynn::nn {

namespace {
// Rows are cheap; only spread them over threads when there is real work.
constexpr int64_t kParallelMin = 1 << 15;

int row_threads(int64_t n, int64_t c) {
  return n * c >= kParallelMin ? parallel::available_threads() : 1;
}
}  // namespace

void softmax_forward(float* x, int64_t n, int64_t c) {
  if (c <= 0) return;
  parallel::parallel_for(n, row_threads(n, c), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* r = x + i * c;
      float m = r[0];
      for (int64_t j = 1; j < c; ++j) m = r[j] > m ? r[j] : m;
      float s = 0.0f;
      for (int64_t j = 0; j < c; ++j) {
        r[j] = std::exp(r[j] - m);
        s += r[j];
      }
      const float inv = 1.0f / s;
      for (int64_t j = 0; j < c; ++j) r[j] *= inv;
    }
  });
}

void softmax_backward(const float* y, const float* dy, float* dz, int64_t n, int64_t c) {
  if (c <= 0) return;
  parallel::parallel_for(n, row_threads(n, c), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* yr = y + i * c;
      const float* dyr = dy + i * c;
      float* dzr = dz + i * c;
      double dot = 0.0;  // <dy, y> in double: the difference dy - dot cancels
      for (int64_t j = 0; j < c; ++j) dot += double(dyr[j]) * yr[j];
      const float d = float(dot);
      for (int64_t j = 0; j < c; ++j) dzr[j] = yr[j] * (dyr[j] - d);
    }
  });
}

}  // namespace pynn::nn
