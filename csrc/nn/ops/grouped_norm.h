// Normalisation over groups of elements inside each sample, shared by layer_norm and
// group_norm: every group is standardised with its own mean and (biased) variance, then each
// element is scaled and shifted by the gamma/beta entry its layout names.
#pragma once
#include <cstdint>
#include <vector>

#include "nn/op.h"

namespace pynn::nn::ops {

// Group g of a sample is elements offset[g * members + m], m = 0..members-1 (flat indices
// into the sample); that element uses gamma[pidx[g * members + m]] and beta[...].
struct NormGroups {
  int64_t groups = 0, members = 0, size = 0;  // size = elements per sample = groups * members
  std::vector<int64_t> offset;
  std::vector<int32_t> pidx;
};

// y = (x - mean_g) * inv_std_g * gamma + beta for n samples; gamma/beta may be null (1 and 0).
// xhat (n * size, in x's layout) and inv_std (n * groups) are written for backward.
void grouped_norm_forward(const NormGroups& L, int64_t n, const float* x, const float* gamma,
                          const float* beta, float eps, float* y, float* xhat, float* inv_std);

// From dy: dgamma/dbeta (null when not wanted) are overwritten with sums over the batch,
// then dx (null when not wanted; it may alias dy) is written.
void grouped_norm_backward(const NormGroups& L, int64_t n, int64_t nparam, float* dy,
                           const float* xhat, const float* inv_std, const float* gamma, float* dx,
                           float* dgamma, float* dbeta);

// The op shared by layer_norm and group_norm; a subclass's configure() reads its own
// attributes, fills layout_ and calls configure_common().
// Params: [gamma if scale] [beta if center], both of shape param_shape.
// Scratch: [0] xhat, [1] inv_std (saved for backward), [2] dgamma and [3] dbeta stand-ins
// when those gradients are unwanted or must be accumulated (backward only).
class GroupedNormOp : public Op {
 public:
  std::vector<ScratchNeed> scratch(bool training, bool backward) const override;
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }
  void forward(const FwdArgs& a) override;
  void backward(const BwdArgs& a) override;

 protected:
  // Reads epsilon, center and scale; checks the arity and the parameter shapes.
  void configure_common(const Attrs& attrs, const std::vector<Shape>& in,
                        const std::vector<Shape>& params, const Shape& param_shape);
  NormGroups layout_;

 private:
  const float* gamma(float* const* p) const { return scale_ ? p[0] : nullptr; }
  const float* beta(float* const* p) const { return center_ ? p[int(scale_)] : nullptr; }
  float epsilon_ = 1e-3f;
  bool center_ = true, scale_ = true;
  int64_t nparam_ = 0;
};

}  // namespace pynn::nn::ops
