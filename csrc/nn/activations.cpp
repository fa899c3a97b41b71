#include "nn/activations.h"

#include <cmath>

namespace pynn::nn {
namespace {

// --- linear -----------------------------------------------------------------------------
void linear_fwd(float*, int64_t, const float*) {}
void linear_bwd(const float*, const float*, const float* dy, float* dz, int64_t n, const float*) {
  if (dz != dy)
    for (int64_t i = 0; i < n; ++i) dz[i] = dy[i];
}

// --- relu: max(x, 0); derivative 1 for x > 0, else 0 -----------------------------------------
void relu_fwd(float* x, int64_t n, const float*) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
void relu_bwd(const float* z, const float*, const float* dy, float* dz, int64_t n, const float*) {
  for (int64_t i = 0; i < n; ++i) dz[i] = z[i] > 0.0f ? dy[i] : 0.0f;
}

// --- sigmoid: 1/(1+e^-x) evaluated so that exp never overflows; derivative y(1-y) ----------
inline float sigmoid1(float x) {
  const float e = std::exp(-std::fabs(x));  // in (0, 1]
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}
void sigmoid_fwd(float* x, int64_t n, const float*) {
  for (int64_t i = 0; i < n; ++i) x[i] = sigmoid1(x[i]);
}
void sigmoid_bwd(const float*, const float* y, const float* dy, float* dz, int64_t n,
                 const float*) {
  for (int64_t i = 0; i < n; ++i) dz[i] = dy[i] * y[i] * (1.0f - y[i]);
}

// --- tanh; derivative 1 - y^2 ----------------------------------------------------------------
void tanh_fwd(float* x, int64_t n, const float*) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]);
}
void tanh_bwd(const float*, const float* y, const float* dy, float* dz, int64_t n, const float*) {
  for (int64_t i = 0; i < n; ++i) dz[i] = dy[i] * (1.0f - y[i] * y[i]);
}

}  // namespace

const std::vector<ActivationInfo>& activations() {
  static const std::vector<ActivationInfo> table = {
      {"linear", 0, {0, 0}, linear_fwd, linear_bwd},
      {"relu", 0, {0, 0}, relu_fwd, relu_bwd},
      {"sigmoid", 0, {0, 0}, sigmoid_fwd, sigmoid_bwd},
      {"tanh", 0, {0, 0}, tanh_fwd, tanh_bwd},
  };
  return table;
}

const ActivationInfo* find_activation(const std::string& name) {
  for (const auto& a : activations())
    if (name == a.name) return &a;
  return nullptr;
}

}  // namespace pynn::nn
