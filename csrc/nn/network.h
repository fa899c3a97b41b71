// The network engine: a compiled Sequential model.
//
// A Network owns every parameter, gradient, optimizer slot and activation buffer. A training
// step is one call: gather the batch rows by index from the caller's arrays, forward through
// every op, loss and its gradient, backward through every op, regularisation penalties, then
// one fused optimizer update per parameter. Buffers are sized for the largest batch seen, so
// the steady state allocates nothing.
//
// Invariants:
//  - Activations are row-major (batch, width); op i reads op i-1's output buffer.
//  - The gradient of every element is produced by the same operation sequence whatever the
//    thread count (GEMM never splits K; reductions over the batch run in a fixed order), and
//    all randomness is counter-based on (seed, step, op): training is bitwise reproducible.
//  - When the last op is a softmax (sigmoid) and the loss is categorical (binary)
//    cross-entropy on probabilities, the two are fused: the loss is computed from the logits
//    with the stable (p - y)/n gradient and the softmax backward is skipped.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/activations.h"
#include "nn/losses.h"
#include "nn/optimizers.h"

namespace pynn::nn {

struct Param {
  std::string name;          // "kernel", "bias", "gamma", ...
  std::vector<int64_t> shape;
  std::vector<float> value;
  std::vector<float> grad;   // empty for non-trainable parameters
  bool trainable = true;
  bool frozen = false;       // trainable, but its layer is frozen (Keras trainable=False)
  float l1 = 0.0f, l2 = 0.0f;  // penalty coefficients
  std::vector<std::vector<float>> slots;  // optimizer state
};

struct Op;  // one layer's computation (defined in network.cpp)

struct StepResult {
  double loss = 0.0;     // mean loss over the batch plus regularisation penalties
  int64_t correct = 0;   // correctly classified rows (classification losses), else 0
};

class Network {
 public:
  explicit Network(int64_t input_width);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Building (returns the op index). Widths chain: each op's input is the previous output.
  int add_dense(int64_t units, const std::string& activation, std::vector<float> act_params,
                bool use_bias);
  // seed: the random slopes of "rrelu" in training (unused by the other activations).
  int add_activation(const std::string& activation, std::vector<float> act_params,
                     uint64_t seed = 0);
  int add_dropout(float rate, uint64_t seed);
  int add_batchnorm(float momentum, float epsilon, bool center, bool scale);
  int add_prelu();

  int64_t input_width() const { return input_width_; }
  int64_t output_width() const;
  int num_ops() const { return int(ops_.size()); }

  // Parameters, in Keras's order (op by op: kernel, bias; gamma, beta, moving mean, moving var).
  std::vector<Param*> params();
  void set_regularization(int param, float l1, float l2);

  void set_loss(const LossConfig& cfg);
  const LossConfig& loss() const { return user_loss_; }
  bool has_loss() const { return has_loss_; }
  void set_optimizer(const OptConfig& cfg);
  void set_learning_rate(float lr) { opt_.learning_rate = lr; }
  float learning_rate() const { return opt_.learning_rate; }
  const OptConfig& optimizer() const { return opt_; }
  int64_t iterations() const { return step_; }
  void set_iterations(int64_t t) { step_ = t; }
  OptScalars& optimizer_scalars() { return opt_scalars_; }
  bool has_optimizer() const { return has_opt_; }

  // x: rows of width input_width (row stride ldx); targets either dense y (row stride ldy =
  // output width) or integer labels; idx selects the batch rows; sample_weight (per row of the
  // full arrays) may be null.
  StepResult train_step(const float* x, int64_t ldx, const float* y, const int32_t* labels,
                        const float* sample_weight, const int64_t* idx, int64_t batch);
  // Inference-mode loss over a batch (no update).
  StepResult test_step(const float* x, int64_t ldx, const float* y, const int32_t* labels,
                       const float* sample_weight, const int64_t* idx, int64_t batch);
  // Inference over n contiguous rows; out is n x output_width.
  void predict(const float* x, int64_t ldx, int64_t n, float* out, int64_t chunk);
  // d(sum_r out[r][k] * seed[r][k]) / d x for n rows (saliency); dx is n x input_width.
  void input_gradient(const float* x, int64_t ldx, int64_t n, const float* seed, float* dx);

  // The output (probabilities, not logits) of the last train/test step.
  const float* last_output() const;
  int64_t last_batch() const { return last_batch_; }

 private:
  void ensure_capacity(int64_t batch, bool targets, bool grads);
  // Forgets sized buffers and the last output, and decides the loss fusion again: called
  // whenever the op list changes.
  void invalidate();
  // save: keep what backward needs (pre-activations, ...) in this forward.
  const float* forward(const float* x, int64_t ldx, const int64_t* idx, int64_t batch,
                       bool training, bool save);
  StepResult loss_and_grad(const float* y, const int32_t* labels, const float* sample_weight,
                           const int64_t* idx, int64_t batch, bool want_grad);
  void backward(int64_t batch, bool need_input_grad);
  void apply_updates();

  int64_t input_width_;
  std::vector<std::unique_ptr<Op>> ops_;
  LossConfig loss_;        // as used (from_logits set when the tail is fused)
  LossConfig user_loss_;   // as given
  bool has_loss_ = false;
  bool fused_ = false;       // last op's softmax/sigmoid is folded into the loss
  OptConfig opt_;
  OptScalars opt_scalars_;
  bool has_opt_ = false;
  int64_t step_ = 0;
  int64_t capacity_ = 0;       // rows the forward buffers hold
  int64_t grad_capacity_ = 0;  // rows the backward buffers hold
  int64_t target_capacity_ = 0;  // rows the target / loss-gradient buffers hold
  int64_t last_batch_ = 0;
  std::vector<float> input_buf_;    // gathered batch rows
  std::vector<float> grad_out_;     // d loss / d output of the last op
  std::vector<float> target_buf_;   // gathered dense targets
  std::vector<int32_t> label_buf_;  // gathered labels
  std::vector<float> weight_buf_;   // gathered sample weights
  std::vector<float> probs_;        // probabilities when fused
  std::vector<const float*> inputs_;  // input of each op in the last forward
  std::vector<char> learns_below_;     // [i]: some op before op i has parameters
  const float* output_ = nullptr;      // probabilities of the last forward
  const float* last_logits_ = nullptr;  // raw output of the last op
  std::vector<std::unique_ptr<Param>> store_;
  // Set by set_optimizer: the trainable parameters and the pointer tables of the fused update.
  std::vector<Param*> trainable_;
  std::vector<float*> upd_params_;
  std::vector<const float*> upd_grads_;
  std::vector<int64_t> upd_sizes_;
  std::vector<float*> upd_slot_ptrs_;
  std::vector<float* const*> upd_slots_;  // owns the Param objects (stable addresses)
};

}  // namespace pynn::nn
