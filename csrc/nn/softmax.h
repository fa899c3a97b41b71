// Row-wise softmax (not element-wise, so it is not in the activation table).
//   y[i][j] = exp(z[i][j] - max_j z[i]) / sum_k exp(z[i][k] - max_j z[i])
//   backward: dz[i][j] = y[i][j] * (dy[i][j] - sum_k dy[i][k] * y[i][k])
#pragma once
#include <cstdint>

namespace pynn::nn {

// In place over n rows of c (row stride c).
void softmax_forward(float* x, int64_t n, int64_t c);
// dz may alias dy.
void softmax_backward(const float* y, const float* dy, float* dz, int64_t n, int64_t c);

}  // namespace pynn::nn
