// Helpers shared by the op files (see common.h). Not an op: registers nothing.
#include "nn/ops/common.h"

#include <stdexcept>

namespace pynn::nn::ops {

bool bf16_compute(const Attrs& attrs) {
  const std::string compute = attrs.get_string("compute_dtype", "float32");
  if (compute != "float32" && compute != "bfloat16")
    op_error(attrs, "compute_dtype must be 'float32' or 'bfloat16', got '" + compute + "'");
  return compute == "bfloat16";
}

const ActivationInfo& activation_for(const Attrs& attrs, const std::string& name,
                                     const std::vector<double>& params, std::vector<float>& out) {
  const ActivationInfo* act = find_activation(name);
  if (act == nullptr) {
    std::string known = "softmax";
    for (const auto& a : activations()) known += std::string(", ") + a.name;
    op_error(attrs, "unknown activation '" + name + "' (known: " + known + ")");
  }
  if (params.empty()) {
    out.assign(act->defaults, act->defaults + act->nparams);
  } else {
    if (int(params.size()) != act->nparams)
      op_error(attrs, "activation '" + name + "' takes " + std::to_string(act->nparams) +
                          " parameter(s) in act_params, got " + std::to_string(params.size()));
    out.assign(params.begin(), params.end());
  }
  const std::string err = activation_params_error(*act, out.data());
  if (!err.empty()) op_error(attrs, "activation '" + name + "': " + err);
  return *act;
}

const ActivationInfo& linear_activation() {
  static const ActivationInfo* lin = find_activation("linear");
  return *lin;
}

void FusedActivation::parse(const Attrs& attrs, const char* op) {
  const std::string name = attrs.get_string("activation", "linear");
  const std::vector<double> ap = attrs.get_doubles("act_params");
  softmax = name == "softmax";
  sigmoid = name == "sigmoid";
  relu = name == "relu";
  if (name == "rrelu")
    op_error(attrs, std::string("activation 'rrelu' draws random slopes: follow a linear ") +
                        op + " with an activation op instead");
  if (softmax) {
    if (!ap.empty()) op_error(attrs, "activation 'softmax' takes no act_params");
    act = &linear_activation();
  } else {
    act = &activation_for(attrs, name, ap, params);
  }
}

}  // namespace pynn::nn::ops
