// prelu: y = x where x > 0, alpha * x elsewhere; alpha has the full per-sample shape of x.
// Scratch: [0] a stand-in for dalpha when it must be accumulated (backward only).
#include "nn/activations_param.h"
#include "nn/op.h"

namespace pynn::nn {
namespace {

class PReLUOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 1, 1, params, 1, 1);
    if (params[0] != in[0])
      op_error(attrs, "alpha shape " + shape_str(params[0]) + " does not match input shape " +
                          shape_str(in[0]) + ": alpha has the per-sample shape of the input");
    size_ = shape_size(in[0]);
    return in[0];
  }
  std::vector<ScratchNeed> scratch(bool, bool backward) const override {
    std::vector<ScratchNeed> s(1);
    if (backward) s[0] = {0, size_, ScratchLife::backward};
    return s;
  }
  void forward(const FwdArgs& a) override {
    prelu_forward(a.x[0], a.y, a.n, size_, a.param[0]);
  }
  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    const bool accx = dx && a.dx_acc[0];
    float* da = a.dparam[0];
    const bool acca = da && a.dparam_acc[0];
    prelu_backward(a.x[0], a.dy, dx ? (accx ? a.dy : dx) : nullptr,
                   da ? (acca ? a.scratch[0] : da) : nullptr, a.n, size_, a.param[0]);
    if (acca) store_or_add(da, a.scratch[0], size_, true);
    if (accx) store_or_add(dx, a.dy, a.n * size_, true);
  }

 private:
  int64_t size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("prelu", pynn::nn::PReLUOp)
