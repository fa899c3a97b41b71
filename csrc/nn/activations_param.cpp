// PReLU and training-mode RReLU (see activations_param.h for the contracts).
//
// Invariants: element-wise parts read only their own element, so aliasing y/x and dx/dy is
// safe; the only reduction (d alpha) runs row by row in a fixed order, so it is the same on
// any thread count; RReLU's slopes come from the counter-based generator, so element i's slope
// depends only on (seed, stream, offset + i), never on how the work is split.
#include "nn/activations_param.h"

#include <cstddef>
#include <vector>

#include "nn/random.h"

namespace pynn::nn {

void prelu_forward(const float* x, float* y, int64_t n, int64_t c, const float* alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * c;
    float* yr = y + i * c;
    for (int64_t j = 0; j < c; ++j) yr[j] = xr[j] > 0.0f ? xr[j] : alpha[j] * xr[j];
  }
}

void prelu_backward(const float* x, const float* dy, float* dx, float* dalpha, int64_t n,
                    int64_t c, const float* alpha) {
  if (dalpha != nullptr) {
    // reused per thread: the training step allocates nothing in the steady state
    static thread_local std::vector<double> acc;
    acc.assign(size_t(c > 0 ? c : 0), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const float* xr = x + i * c;
      const float* dyr = dy + i * c;
      for (int64_t j = 0; j < c; ++j)
        if (!(xr[j] > 0.0f)) acc[size_t(j)] += double(dyr[j]) * xr[j];
    }
    for (int64_t j = 0; j < c; ++j) dalpha[j] = float(acc[size_t(j)]);
  }
  if (dx != nullptr) {
    for (int64_t i = 0; i < n; ++i) {
      const float* xr = x + i * c;
      const float* dyr = dy + i * c;
      float* dxr = dx + i * c;
      for (int64_t j = 0; j < c; ++j) dxr[j] = xr[j] > 0.0f ? dyr[j] : alpha[j] * dyr[j];
    }
  }
}

void rrelu_forward_train(const float* x, float* y, float* slope, int64_t n, float lower,
                         float upper, uint64_t seed, uint64_t stream, uint64_t offset) {
  const float width = upper - lower;
  for (int64_t i = 0; i < n; ++i) {
    const float xi = x[i];
    if (xi >= 0.0f) {
      slope[i] = 1.0f;
      y[i] = xi;
    } else {
      const float a = lower + width * random_uniform01(seed, stream, offset + uint64_t(i));
      slope[i] = a;
      y[i] = a * xi;
    }
  }
}

void rrelu_backward(const float* slope, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * slope[i];
}

}  // namespace pynn::nn
