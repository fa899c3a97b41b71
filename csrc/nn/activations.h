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
#include "nn/descriptors.h"

namespace pynn::nn {

using act_backward_fn = void (*)(const float* z, const float* y, const float* dy, float* dz,
                                 int64_t n, const float* params);

// One entry of the activation table (the descriptor of the family: see nn/descriptors.h).
// The kernel reads its parameters as `nparams` floats in the order of `params`; a boolean
// parameter is passed as 0 or 1 (any non-zero reads as true).
struct ActivationInfo {
  const char* name;
  int nparams;
  float defaults[2];        // params[i].default_value, as the kernel reads them
  gemm::act_fn forward;
  act_backward_fn backward;
  ParamDesc params[2];      // Keras names, defaults and valid ranges of the first nparams
  bool ordered;             // two parameters that must satisfy params[0] <= params[1]
  const char* alias;        // another name for it (nullptr when none); lookups take `name`
};

// All element-wise activations, in a fixed order (the index is the id used by the bindings).
const std::vector<ActivationInfo>& activations();
// nullptr when unknown (canonical names only: aliases are resolved by the Python layer).
const ActivationInfo* find_activation(const std::string& name);

// Empty when `params` (act.nparams floats) are usable by `act`, else a message naming the
// parameter, its valid range and the value given ("expected beta > 0, got beta=0"), all read
// from the table (softplus beta > 0, shrink thresholds >= 0, hard_tanh min_val <= max_val,
// 0 <= rrelu lower <= upper, everything finite); callers prefix the activation's name. Kernels
// do not check their parameters: whoever takes them from a user calls this first.
std::string activation_params_error(const ActivationInfo& act, const float* params);

}  // namespace pynn::nn
