// Helpers shared by the op files: activation lookup with parameter validation, the compute
// dtype attribute.
#pragma once
#include <string>
#include <vector>

#include "nn/activations.h"
#include "nn/op.h"

namespace pynn::nn::ops {

// The named element-wise activation with its parameters (the activation's defaults when
// `params` is empty); throws naming the node when unknown or when the parameters are bad.
const ActivationInfo& activation_for(const Attrs& attrs, const std::string& name,
                                     const std::vector<double>& params, std::vector<float>& out);

const ActivationInfo& linear_activation();

// A convolution's fused activation from its "activation" / "act_params" attributes: softmax
// (over the filters, applied by the op itself: `act` is then linear) and the element-wise
// ones; rrelu is refused (it draws random slopes, which an epilogue cannot keep). `op` names
// the op in that message.
struct FusedActivation {
  bool softmax = false, sigmoid = false, relu = false;
  const ActivationInfo* act = nullptr;
  std::vector<float> params;
  void parse(const Attrs& attrs, const char* op);
};

// The "compute_dtype" attribute of an op with a mixed precision path: true for "bfloat16"
// (products on bf16-rounded operands, float32 sums), false for "float32" (the default);
// anything else throws naming the node.
bool bf16_compute(const Attrs& attrs);

// Per-sample shape minus its last axis, as a row count per sample (1 for rank 1).
inline int64_t lead_rows(const Shape& s) {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < s.size(); ++i) r *= s[i];
  return r;
}

}  // namespace pynn::nn::ops
