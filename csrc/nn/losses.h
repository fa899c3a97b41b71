// Loss functions: value and gradient in one pass.
//
// Shapes: n samples by c outputs, row-major. `pred` holds probabilities (or, with
// from_logits, raw scores). Targets are either dense (`target`, n x c: one-hot rows, 0/1
// labels or regression targets) or, for sparse_categorical_crossentropy, integer `labels` (n).
// Reduction is Keras's "sum_over_batch_size": loss = sum_i w_i * l_i / n, where l_i is the
// per-sample loss (mean over the c outputs for mse/mae/huber/binary_crossentropy, sum over
// classes for the categorical losses) and w_i = sample_weight[i] (1 when null).
//
// Invariants:
//  - `grad` (n x c, may be null) receives d loss / d pred, or d loss / d logits when
//    from_logits; it may not alias pred or target.
//  - With from_logits the categorical losses apply a row-wise softmax and binary cross-entropy
//    a sigmoid; the gradient is then the fused, stable (p - y) * w_i / n (divided by c too for
//    binary cross-entropy, whose per-sample loss is a mean over outputs).
//  - Probabilities are clipped to [eps, 1 - eps] with eps = 1e-7, as Keras does (the
//    categorical losses first rescale each row of pred to sum to 1, as Keras does too; the
//    gradient goes through that rescaling, and is 0 through an active clip); logits are
//    never exponentiated unguarded: finite for |logit| up to 1e30.
//  - The exact from-logits gradient of the categorical losses is softmax(x) * sum_j t_j - t,
//    which is p - t for the usual rows summing to 1.
//  - Sparse labels outside [0, c) throw std::invalid_argument before anything is read.
//  - The sum over samples runs in a fixed order whatever the thread count.
//  - mean_of_output is not a comparison with a target: `pred` is already a loss (the end of a
//    loss written with pynn.ops and traced into the graph), l_i = mean_j pred_ij, and the
//    gradient is the constant w_i / (n c). `target` and `labels` are not read (may be null).
#pragma once
#include <cstdint>

namespace pynn::nn {

enum class LossKind : int {
  mean_squared_error = 0,
  mean_absolute_error = 1,
  huber = 2,
  binary_crossentropy = 3,
  categorical_crossentropy = 4,
  sparse_categorical_crossentropy = 5,
  mean_of_output = 6,
};

struct LossConfig {
  LossKind kind = LossKind::mean_squared_error;
  bool from_logits = false;
  float huber_delta = 1.0f;
};

// Returns the reduced loss (in double for a stable sum).
double loss_value_grad(const LossConfig& cfg, int64_t n, int64_t c, const float* pred,
                       const float* target, const int32_t* labels, const float* sample_weight,
                       float* grad);

}  // namespace pynn::nn
