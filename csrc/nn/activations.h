// Activation functions: forward in place (also used as a GEMM epilogue stage) and the
// backward product dz = dy * f'(z).
//
// Invariants: forward(x, n, p) maps each x[i] independently; backward reads the
// pre-activation z and the output y = f(z) (either may be used, both are always given) and
// writes dz, which may alias dy. `p` points at the activation's parameters (nparams floats).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gemm/epilogue.h"

namespace pynn::nn {

using act_backward_fn = void (*)(const float* z, const float* y, const float* dy, float* dz,
                                 int64_t n, const float* params);

struct ActivationInfo {
  const char* name;
  int nparams;
  float defaults[2];
  gemm::act_fn forward;
  act_backward_fn backward;
};

// All element-wise activations, in a fixed order (the index is the id used by the bindings).
const std::vector<ActivationInfo>& activations();
// nullptr when unknown.
const ActivationInfo* find_activation(const std::string& name);

// Empty when `params` (act.nparams floats) are usable by `act`, else a message naming the
// parameter, what is expected and what was given (softplus beta > 0, hard_tanh
// min_val <= max_val, shrink thresholds >= 0, rrelu lower <= upper, all finite). Kernels do
// not check their parameters: whoever takes them from a user calls this first.
std::string activation_params_error(const ActivationInfo& act, const float* params);

}  // namespace pynn::nn
