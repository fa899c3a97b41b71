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
#include <string>
#include <vector>

#include "nn/descriptors.h"

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

// A loss as the engine runs it; loss_defaults() fills it from the loss table.
struct LossConfig {
  LossKind kind = LossKind::mean_squared_error;
  bool from_logits = false;
  float huber_delta = 1.0f;
};

// What a loss compares its prediction with.
enum class LossTarget : int {
  dense,   // float targets of the prediction's shape
  labels,  // int32 class indices, one per row
  none,    // nothing: the prediction already is the loss (mean_of_output)
};

// The descriptor of one loss kind (see nn/descriptors.h).
struct LossDesc {
  const char* name;        // Keras's function name, what compile() takes
  const char* class_name;  // Keras's class ("" for an internal kind)
  LossKind kind;
  std::vector<const char*> aliases;  // other compile() names ("mse")
  LossTarget target;
  bool takes_logits;    // from_logits applies (the cross-entropies)
  bool classification;  // the engine counts correct rows (accuracy) for it
  bool internal;        // the engine's own: not a compile() name (mean_of_output)
  std::vector<ParamDesc> params;  // constructor parameters beyond reduction and name
};

// The loss table, in LossKind order.
const std::vector<LossDesc>& loss_descriptors();
const LossDesc& loss_descriptor(LossKind kind);
// By canonical name, internal kinds included (aliases are for the Python layer to resolve);
// nullptr when unknown.
const LossDesc* find_loss(const std::string& name);
// The configuration of `kind` with the table's defaults (no logits, huber's delta 1).
LossConfig loss_defaults(LossKind kind);
// Empty when the configuration suits its kind's table entry (huber's delta > 0, ...), else a
// message naming the parameter, its valid range and the value. from_logits on a loss that
// takes no logits is refused only when `strict_logits`.
std::string loss_config_error(const LossConfig& cfg, bool strict_logits);

// Returns the reduced loss (in double for a stable sum).
double loss_value_grad(const LossConfig& cfg, int64_t n, int64_t c, const float* pred,
                       const float* target, const int32_t* labels, const float* sample_weight,
                       float* grad);

}  // namespace pynn::nn
