#include "nn/network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "nn/activations_param.h"
#include "nn/dense.h"
#include "nn/regularization.h"
#include "nn/softmax.h"

namespace pynn::nn {

namespace {

const ActivationInfo& activation_or_throw(const std::string& name, size_t nparams) {
  const ActivationInfo* act = find_activation(name);
  if (act == nullptr) throw std::invalid_argument("unknown activation '" + name + "'");
  if (int(nparams) != act->nparams)
    throw std::invalid_argument("activation '" + name + "' takes " +
                                std::to_string(act->nparams) + " parameters");
  return *act;
}

void check_params(const ActivationInfo& act, const std::vector<float>& params) {
  const std::string err = activation_params_error(act, params.data());
  if (!err.empty()) throw std::invalid_argument(std::string("activation '") + act.name + "': " + err);
}

const ActivationInfo& linear_activation() {
  static const ActivationInfo& lin = activation_or_throw("linear", 0);
  return lin;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Ops. forward() returns its output (which may be its input, for identities); backward() turns
// dy (the gradient of its output, which it may overwrite) into dx (null when not needed).

struct Op {
  int64_t in_w = 0, out_w = 0;
  std::vector<float> out;  // capacity x out_w
  std::vector<float> dx;   // capacity x in_w
  std::vector<Param*> params;
  bool fused_tail = false;  // softmax/sigmoid handed to the loss: output logits
  bool last_training = false;
  bool save = false;  // keep what backward needs in the next forward (training, saliency)

  virtual ~Op() = default;
  // Sizes the buffers for `cap` rows: the output always, the backward's only with `grads`
  // (inference never allocates them).
  virtual void resize(int64_t cap, bool grads) {
    out.assign(size_t(cap * out_w), 0.0f);
    if (grads) dx.assign(size_t(cap * in_w), 0.0f);
  }
  virtual const float* forward(const float* x, int64_t n, bool training, int64_t step,
                               int index) = 0;
  virtual void backward(const float* x, float* dy, int64_t n, float* dxp) = 0;
  // Softmax or sigmoid at the end of this op (what the loss may fuse with).
  virtual std::string tail_activation() const { return ""; }
};

namespace {

// Dense: y = act(x W + b).
struct DenseOp : Op {
  const ActivationInfo* act;
  std::vector<float> act_params;
  bool softmax;  // row-wise softmax after the affine map
  std::vector<float> z;
  Param* W = nullptr;
  Param* b = nullptr;

  const ActivationInfo* effective_act() const {
    return (softmax || fused_tail) ? &linear_activation() : act;
  }
  bool keeps_z() const {
    const ActivationInfo* a = effective_act();
    return a != &linear_activation();
  }
  void resize(int64_t cap, bool grads) override {
    Op::resize(cap, grads);
    if (grads && keeps_z()) z.assign(size_t(cap * out_w), 0.0f);
  }
  const float* forward(const float* x, int64_t n, bool training, int64_t, int) override {
    last_training = training;
    const ActivationInfo* a = effective_act();
    dense_forward(n, in_w, out_w, x, in_w, W->value.data(), b ? b->value.data() : nullptr, a,
                  act_params.data(), (save && keeps_z()) ? z.data() : nullptr, out.data());
    if (softmax && !fused_tail) softmax_forward(out.data(), n, out_w);
    return out.data();
  }
  void backward(const float* x, float* dy, int64_t n, float* dxp) override {
    if (softmax && !fused_tail) softmax_backward(out.data(), dy, dy, n, out_w);
    dense_backward(n, in_w, out_w, x, in_w, W->value.data(), keeps_z() ? z.data() : nullptr,
                   out.data(), dy, effective_act(), act_params.data(), W->grad.data(),
                   b ? b->grad.data() : nullptr, dxp);
  }
  std::string tail_activation() const override {
    if (softmax) return "softmax";
    return act == find_activation("sigmoid") ? "sigmoid" : "";
  }
};

// Element-wise activation (or row-wise softmax) as its own layer. RReLU draws a random slope
// per element in training (kept for backward) and uses the mean slope at inference.
struct ActivationOp : Op {
  const ActivationInfo* act = nullptr;  // null means softmax
  std::vector<float> act_params;
  bool rrelu = false;
  uint64_t seed = 0;
  std::vector<float> slope;  // RReLU: the multiplier each element got in the last training step

  void resize(int64_t cap, bool grads) override {
    Op::resize(cap, grads);
    if (grads && rrelu) slope.assign(size_t(cap * out_w), 0.0f);
  }
  const float* forward(const float* x, int64_t n, bool training, int64_t step,
                       int index) override {
    last_training = training;
    if (fused_tail) return x;
    if (rrelu && training) {
      rrelu_forward_train(x, out.data(), slope.data(), n * out_w, act_params[0], act_params[1],
                          seed, uint64_t(step) * 4096u + uint64_t(index), 0);
      return out.data();
    }
    std::memcpy(out.data(), x, sizeof(float) * size_t(n * out_w));
    if (act) act->forward(out.data(), n * out_w, act_params.data());
    else softmax_forward(out.data(), n, out_w);
    return out.data();
  }
  void backward(const float* x, float* dy, int64_t n, float* dxp) override {
    if (dxp == nullptr) return;
    if (fused_tail) {
      std::memcpy(dxp, dy, sizeof(float) * size_t(n * in_w));
    } else if (rrelu && last_training) {
      rrelu_backward(slope.data(), dy, dxp, n * out_w);
    } else if (act) {
      act->backward(x, out.data(), dy, dxp, n * out_w, act_params.data());
    } else {
      softmax_backward(out.data(), dy, dxp, n, out_w);
    }
  }
  std::string tail_activation() const override {
    if (act == nullptr) return "softmax";
    return act == find_activation("sigmoid") ? "sigmoid" : "";
  }
};

// Inverted dropout; the identity at inference.
struct DropoutOp : Op {
  float rate;
  uint64_t seed;
  std::vector<float> mask;

  void resize(int64_t cap, bool grads) override {
    Op::resize(cap, grads);
    if (grads) mask.assign(size_t(cap * out_w), 0.0f);
  }
  const float* forward(const float* x, int64_t n, bool training, int64_t step,
                       int index) override {
    last_training = training;
    if (!training || rate == 0.0f) return x;
    std::memcpy(out.data(), x, sizeof(float) * size_t(n * out_w));
    // A fresh, reproducible mask per (step, layer).
    dropout_forward(out.data(), mask.data(), n * out_w, rate, seed,
                    uint64_t(step) * 4096u + uint64_t(index));
    return out.data();
  }
  void backward(const float*, float* dy, int64_t n, float* dxp) override {
    if (dxp == nullptr) return;
    if (!last_training || rate == 0.0f)
      std::memcpy(dxp, dy, sizeof(float) * size_t(n * in_w));
    else
      dropout_backward(dy, mask.data(), dxp, n * in_w);
  }
};

// Batch normalisation over the batch, per feature.
struct BatchNormOp : Op {
  float momentum, epsilon;
  Param* gamma = nullptr;  // null when scale=False
  Param* beta = nullptr;   // null when center=False
  Param* moving_mean = nullptr;
  Param* moving_var = nullptr;
  std::vector<float> ones, zeros, xhat, inv_std, dgamma_scratch, dbeta_scratch;

  void resize(int64_t cap, bool grads) override {
    Op::resize(cap, grads);
    if (grads) xhat.assign(size_t(cap * out_w), 0.0f);
  }
  const float* g() const { return gamma ? gamma->value.data() : ones.data(); }
  const float* bt() const { return beta ? beta->value.data() : zeros.data(); }
  const float* forward(const float* x, int64_t n, bool training, int64_t, int) override {
    // A frozen batch norm (Keras trainable=False) runs in inference mode even in training:
    // its moving statistics stay as they are.
    training = training && !moving_mean->frozen;
    last_training = training;
    if (training) {
      batchnorm_forward_train(x, n, out_w, g(), bt(), momentum, epsilon,
                              moving_mean->value.data(), moving_var->value.data(), xhat.data(),
                              inv_std.data(), out.data());
    } else {
      batchnorm_forward_infer(x, n, out_w, g(), bt(), moving_mean->value.data(),
                              moving_var->value.data(), epsilon, out.data());
    }
    return out.data();
  }
  void backward(const float*, float* dy, int64_t n, float* dxp) override {
    if (last_training) {
      float* dg = gamma ? gamma->grad.data() : dgamma_scratch.data();
      float* db = beta ? beta->grad.data() : dbeta_scratch.data();
      batchnorm_backward(dy, xhat.data(), inv_std.data(), g(), n, out_w,
                         dxp ? dxp : dy, dg, db);
    } else if (dxp != nullptr) {
      // Inference normalisation is affine per feature: dx = dy * gamma / sqrt(var + eps).
      const float* gm = g();
      const float* mv = moving_var->value.data();
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < out_w; ++j)
          dxp[r * in_w + j] = dy[r * out_w + j] * gm[j] / std::sqrt(mv[j] + epsilon);
    }
  }
};

// PReLU: y = x for x > 0, alpha_j * x otherwise, alpha learnable per feature.
struct PReLUOp : Op {
  Param* alpha = nullptr;
  const float* forward(const float* x, int64_t n, bool training, int64_t, int) override {
    last_training = training;
    prelu_forward(x, out.data(), n, out_w, alpha->value.data());
    return out.data();
  }
  void backward(const float* x, float* dy, int64_t n, float* dxp) override {
    prelu_backward(x, dy, dxp, alpha->grad.data(), n, out_w, alpha->value.data());
  }
};

Param* new_param(std::vector<std::unique_ptr<Param>>& store, const std::string& name,
                 std::vector<int64_t> shape, float init, bool trainable) {
  auto p = std::make_unique<Param>();
  p->name = name;
  p->shape = std::move(shape);
  // Checked before anything is allocated: a product that overflows, or a tensor beyond 2^31-1
  // elements (the kernels' index range), is refused instead of wrapping or exhausting memory.
  int64_t size = 1;
  for (int64_t s : p->shape) {
    if (s < 0 || (s > 0 && size > ((int64_t(1) << 31) - 1) / s))
      throw std::length_error("parameter '" + name + "' would exceed 2^31-1 elements");
    size *= s;
  }
  p->value.assign(size_t(size), init);
  p->trainable = trainable;
  if (trainable) p->grad.assign(size_t(size), 0.0f);
  store.push_back(std::move(p));
  return store.back().get();
}

int64_t argmax(const float* row, int64_t c) {
  int64_t best = 0;
  for (int64_t j = 1; j < c; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Network::Network(int64_t input_width) : input_width_(input_width) {
  if (input_width <= 0) throw std::invalid_argument("input width must be positive");
}

Network::~Network() = default;

int64_t Network::output_width() const {
  return ops_.empty() ? input_width_ : ops_.back()->out_w;
}

static int64_t chain_width(const std::vector<std::unique_ptr<Op>>& ops, int64_t input) {
  return ops.empty() ? input : ops.back()->out_w;
}

int Network::add_dense(int64_t units, const std::string& activation,
                       std::vector<float> act_params, bool use_bias) {
  if (units <= 0) throw std::invalid_argument("units must be positive");
  auto op = std::make_unique<DenseOp>();
  op->in_w = chain_width(ops_, input_width_);
  op->out_w = units;
  op->softmax = activation == "softmax";
  op->act = op->softmax ? &linear_activation()
                        : &activation_or_throw(activation, act_params.size());
  check_params(*op->act, act_params);
  op->act_params = std::move(act_params);
  auto& st = store_;
  op->W = new_param(st, "kernel", {op->in_w, units}, 0.0f, true);
  op->params.push_back(op->W);
  if (use_bias) {
    op->b = new_param(st, "bias", {units}, 0.0f, true);
    op->params.push_back(op->b);
  }
  ops_.push_back(std::move(op));
  invalidate();
  return int(ops_.size()) - 1;
}

int Network::add_activation(const std::string& activation, std::vector<float> act_params,
                            uint64_t seed) {
  auto op = std::make_unique<ActivationOp>();
  op->in_w = op->out_w = chain_width(ops_, input_width_);
  if (activation != "softmax") {
    op->act = &activation_or_throw(activation, act_params.size());
    check_params(*op->act, act_params);
  }
  op->rrelu = activation == "rrelu";
  op->seed = seed;
  op->act_params = std::move(act_params);
  ops_.push_back(std::move(op));
  invalidate();
  return int(ops_.size()) - 1;
}

int Network::add_dropout(float rate, uint64_t seed) {
  if (!(rate >= 0.0f && rate < 1.0f)) throw std::invalid_argument("rate must be in [0, 1)");
  auto op = std::make_unique<DropoutOp>();
  op->in_w = op->out_w = chain_width(ops_, input_width_);
  op->rate = rate;
  op->seed = seed;
  ops_.push_back(std::move(op));
  invalidate();
  return int(ops_.size()) - 1;
}

int Network::add_batchnorm(float momentum, float epsilon, bool center, bool scale) {
  auto op = std::make_unique<BatchNormOp>();
  const int64_t c = chain_width(ops_, input_width_);
  op->in_w = op->out_w = c;
  op->momentum = momentum;
  op->epsilon = epsilon;
  auto& st = store_;
  if (scale) {
    op->gamma = new_param(st, "gamma", {c}, 1.0f, true);
    op->params.push_back(op->gamma);
  }
  if (center) {
    op->beta = new_param(st, "beta", {c}, 0.0f, true);
    op->params.push_back(op->beta);
  }
  op->moving_mean = new_param(st, "moving_mean", {c}, 0.0f, false);
  op->moving_var = new_param(st, "moving_variance", {c}, 1.0f, false);
  op->params.push_back(op->moving_mean);
  op->params.push_back(op->moving_var);
  op->ones.assign(size_t(c), 1.0f);
  op->zeros.assign(size_t(c), 0.0f);
  op->inv_std.assign(size_t(c), 0.0f);
  op->dgamma_scratch.assign(size_t(c), 0.0f);
  op->dbeta_scratch.assign(size_t(c), 0.0f);
  ops_.push_back(std::move(op));
  invalidate();
  return int(ops_.size()) - 1;
}

int Network::add_prelu() {
  auto op = std::make_unique<PReLUOp>();
  op->in_w = op->out_w = chain_width(ops_, input_width_);
  op->alpha = new_param(store_, "alpha", {op->out_w}, 0.0f, true);
  op->params.push_back(op->alpha);
  ops_.push_back(std::move(op));
  invalidate();
  return int(ops_.size()) - 1;
}

std::vector<Param*> Network::params() {
  std::vector<Param*> out;
  for (auto& op : ops_)
    for (Param* p : op->params) out.push_back(p);
  return out;
}

void Network::set_regularization(int param, float l1, float l2) {
  auto ps = params();
  if (param < 0 || param >= int(ps.size())) throw std::out_of_range("parameter index");
  ps[size_t(param)]->l1 = l1;
  ps[size_t(param)]->l2 = l2;
}

void Network::invalidate() {
  capacity_ = grad_capacity_ = target_capacity_ = 0;
  last_batch_ = 0;
  output_ = last_logits_ = nullptr;
  if (has_loss_) set_loss(user_loss_);  // the tail may have changed: decide fusion again
}

void Network::set_loss(const LossConfig& cfg) {
  user_loss_ = cfg;
  has_loss_ = true;
  loss_ = cfg;
  for (auto& op : ops_) op->fused_tail = false;
  fused_ = false;
  if (ops_.empty() || cfg.from_logits) return;
  const std::string tail = ops_.back()->tail_activation();
  const bool categorical = cfg.kind == LossKind::categorical_crossentropy ||
                           cfg.kind == LossKind::sparse_categorical_crossentropy;
  if ((tail == "softmax" && categorical) ||
      (tail == "sigmoid" && cfg.kind == LossKind::binary_crossentropy)) {
    fused_ = true;
    ops_.back()->fused_tail = true;
    loss_.from_logits = true;
  }
  capacity_ = grad_capacity_ = target_capacity_ = 0;
  last_batch_ = 0;
  output_ = last_logits_ = nullptr;
}

void Network::set_optimizer(const OptConfig& cfg) {
  opt_ = cfg;
  opt_scalars_ = OptScalars{};
  has_opt_ = true;
  step_ = 0;
  const int ns = optimizer_num_slots(cfg);
  // The pointer tables the fused update walks each step, made once (no allocation per step).
  upd_params_.clear();
  upd_grads_.clear();
  upd_sizes_.clear();
  upd_slot_ptrs_.clear();
  trainable_.clear();
  for (Param* p : params()) {
    p->slots.clear();
    if (!p->trainable || p->frozen) continue;
    for (int s = 0; s < ns; ++s)
      p->slots.emplace_back(p->value.size(), optimizer_slot_init(cfg, s));
    trainable_.push_back(p);
  }
  upd_slot_ptrs_.resize(trainable_.size() * size_t(std::max(ns, 1)), nullptr);
  for (size_t i = 0; i < trainable_.size(); ++i) {
    Param* p = trainable_[i];
    upd_params_.push_back(p->value.data());
    upd_grads_.push_back(p->grad.data());
    upd_sizes_.push_back(int64_t(p->value.size()));
    for (int s = 0; s < ns; ++s) upd_slot_ptrs_[i * size_t(ns) + size_t(s)] = p->slots[size_t(s)].data();
  }
  upd_slots_.clear();
  for (size_t i = 0; i < trainable_.size(); ++i)
    upd_slots_.push_back(upd_slot_ptrs_.data() + i * size_t(std::max(ns, 1)));
}

void Network::ensure_capacity(int64_t batch, bool targets, bool grads) {
  targets = targets || grads;
  const bool need_fwd = batch > capacity_;
  const bool need_tgt = targets && batch > target_capacity_;
  const bool need_grad = grads && batch > grad_capacity_;
  if (!need_fwd && !need_tgt && !need_grad) return;
  // Buffers never shrink; those for targets (evaluation) and for the backward pass (training)
  // exist only once a call needs them, so predict allocates activations only.
  const int64_t cap = std::max(batch, capacity_);
  for (auto& op : ops_) op->resize(cap, need_grad);
  input_buf_.assign(size_t(cap * input_width_), 0.0f);
  const int64_t ow = output_width();
  if (need_tgt) {
    grad_out_.assign(size_t(cap * ow), 0.0f);
    target_buf_.assign(size_t(cap * ow), 0.0f);
    label_buf_.assign(size_t(cap), 0);
    weight_buf_.assign(size_t(cap), 0.0f);
    target_capacity_ = cap;
  }
  probs_.assign(fused_ ? size_t(cap * ow) : 0, 0.0f);
  // Input gradients are needed below op i only if something below it learns.
  learns_below_.assign(ops_.size() + 1, 0);
  for (size_t i = 0; i < ops_.size(); ++i)
    learns_below_[i + 1] = learns_below_[i] || !ops_[i]->params.empty();
  inputs_.assign(ops_.size(), nullptr);
  capacity_ = cap;
  if (need_grad) grad_capacity_ = cap;
  last_batch_ = 0;  // the buffers behind the last output may have moved
  output_ = last_logits_ = nullptr;
}

const float* Network::forward(const float* x, int64_t ldx, const int64_t* idx, int64_t batch,
                              bool training, bool save) {
  const float* h;
  if (idx != nullptr || ldx != input_width_) {
    for (int64_t r = 0; r < batch; ++r) {
      const float* src = x + (idx ? idx[r] : r) * ldx;
      std::memcpy(input_buf_.data() + r * input_width_, src, sizeof(float) * size_t(input_width_));
    }
    h = input_buf_.data();
  } else {
    h = x;
  }
  for (size_t i = 0; i < ops_.size(); ++i) {
    inputs_[i] = h;
    ops_[i]->save = save;
    h = ops_[i]->forward(h, batch, training, step_, int(i));
  }
  last_batch_ = batch;
  // The probabilities behind the output (the logits when the tail is fused into the loss).
  const int64_t ow = output_width();
  if (fused_) {
    std::memcpy(probs_.data(), h, sizeof(float) * size_t(batch * ow));
    if (ops_.back()->tail_activation() == "softmax") {
      softmax_forward(probs_.data(), batch, ow);
    } else {
      const ActivationInfo* sig = find_activation("sigmoid");
      sig->forward(probs_.data(), batch * ow, nullptr);
    }
    output_ = probs_.data();
  } else {
    output_ = h;
  }
  return h;
}

StepResult Network::loss_and_grad(const float* y, const int32_t* labels,
                                  const float* sample_weight, const int64_t* idx, int64_t batch,
                                  bool want_grad) {
  const int64_t ow = output_width();
  const float* pred = fused_ ? last_logits_ : output_;
  const float* tgt = nullptr;
  const int32_t* lab = nullptr;
  const float* sw = nullptr;
  if (labels != nullptr) {
    for (int64_t r = 0; r < batch; ++r) label_buf_[size_t(r)] = labels[idx ? idx[r] : r];
    lab = label_buf_.data();
  } else {
    for (int64_t r = 0; r < batch; ++r)
      std::memcpy(target_buf_.data() + r * ow, y + (idx ? idx[r] : r) * ow,
                  sizeof(float) * size_t(ow));
    tgt = target_buf_.data();
  }
  if (sample_weight != nullptr) {
    for (int64_t r = 0; r < batch; ++r) weight_buf_[size_t(r)] = sample_weight[idx ? idx[r] : r];
    sw = weight_buf_.data();
  }
  StepResult res;
  res.loss = loss_value_grad(loss_, batch, ow, pred, tgt, lab, sw,
                             want_grad ? grad_out_.data() : nullptr);
  // Accuracy as Keras picks it: sparse/categorical by argmax, binary by threshold 0.5.
  if (loss_descriptor(loss_.kind).classification) {
    for (int64_t r = 0; r < batch; ++r) {
      const float* p = output_ + r * ow;
      if (loss_.kind == LossKind::binary_crossentropy) {
        for (int64_t j = 0; j < ow; ++j) res.correct += (p[j] > 0.5f) == (tgt[r * ow + j] > 0.5f);
      } else if (lab != nullptr) {
        res.correct += argmax(p, ow) == lab[r];
      } else {
        res.correct += argmax(p, ow) == argmax(tgt + r * ow, ow);
      }
    }
  }
  return res;
}

void Network::backward(int64_t batch, bool need_input_grad) {
  const std::vector<char>& learns_below = learns_below_;
  float* dy = grad_out_.data();
  for (size_t i = ops_.size(); i-- > 0;) {
    Op& op = *ops_[i];
    const bool want_dx = need_input_grad || learns_below[i];
    float* dxp = want_dx ? op.dx.data() : nullptr;
    op.backward(inputs_[i], dy, batch, dxp);
    if (!want_dx) break;
    dy = op.dx.data();
  }
}

void Network::apply_updates() {
  ++step_;
  optimizer_apply(opt_, opt_scalars_, step_, upd_params_.data(), upd_grads_.data(),
                  upd_slots_.data(), upd_sizes_.data(), int64_t(upd_params_.size()));
}

StepResult Network::train_step(const float* x, int64_t ldx, const float* y,
                               const int32_t* labels, const float* sample_weight,
                               const int64_t* idx, int64_t batch) {
  if (!has_opt_) throw std::logic_error("the network has no optimizer");
  if (batch <= 0) return {};
  ensure_capacity(batch, true, true);
  last_logits_ = forward(x, ldx, idx, batch, true, true);
  StepResult res = loss_and_grad(y, labels, sample_weight, idx, batch, true);
  backward(batch, false);
  for (Param* p : trainable_)
    if (p->l1 != 0.0f || p->l2 != 0.0f)
      res.loss += l1_l2_penalty(p->value.data(), p->grad.data(), int64_t(p->value.size()), p->l1,
                                p->l2);
  apply_updates();
  return res;
}

StepResult Network::test_step(const float* x, int64_t ldx, const float* y, const int32_t* labels,
                              const float* sample_weight, const int64_t* idx, int64_t batch) {
  if (batch <= 0) return {};
  ensure_capacity(batch, true, false);
  last_logits_ = forward(x, ldx, idx, batch, false, false);
  StepResult res = loss_and_grad(y, labels, sample_weight, idx, batch, false);
  // The penalties of the weights that train, as train_step adds them (Keras counts trainable
  // weights only): a frozen layer's regulariser adds nothing. Once an optimizer is set, the
  // weights that train are the ones it updates (set_frozen takes effect at set_optimizer);
  // the same function sums them in the same order, so both steps report the same loss.
  auto add_penalty = [&res](const Param* p) {
    if (p->l1 != 0.0f || p->l2 != 0.0f)
      res.loss += l1_l2_penalty(p->value.data(), nullptr, int64_t(p->value.size()), p->l1, p->l2);
  };
  if (has_opt_) {
    for (const Param* p : trainable_) add_penalty(p);
  } else {
    for (const Param* p : params())
      if (p->trainable && !p->frozen) add_penalty(p);
  }
  return res;
}

void Network::predict(const float* x, int64_t ldx, int64_t n, float* out, int64_t chunk) {
  const int64_t ow = output_width();
  chunk = std::max<int64_t>(1, std::min(chunk, n));
  ensure_capacity(chunk, false, false);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t m = std::min(chunk, n - r0);
    forward(x + r0 * ldx, ldx, nullptr, m, false, false);
    std::memcpy(out + r0 * ow, output_, sizeof(float) * size_t(m * ow));
  }
}

void Network::input_gradient(const float* x, int64_t ldx, int64_t n, const float* seed,
                             float* dxout) {
  const int64_t ow = output_width();
  ensure_capacity(n, true, true);
  forward(x, ldx, nullptr, n, false, true);
  if (fused_) {
    // seed is a gradient with respect to probabilities; turn it into one for the logits.
    if (ops_.back()->tail_activation() == "softmax") {
      softmax_backward(probs_.data(), seed, grad_out_.data(), n, ow);
    } else {
      for (int64_t i = 0; i < n * ow; ++i)
        grad_out_[size_t(i)] = seed[i] * probs_[size_t(i)] * (1.0f - probs_[size_t(i)]);
    }
  } else {
    std::memcpy(grad_out_.data(), seed, sizeof(float) * size_t(n * ow));
  }
  backward(n, true);
  if (ops_.empty()) {
    std::memcpy(dxout, grad_out_.data(), sizeof(float) * size_t(n * input_width_));
  } else {
    std::memcpy(dxout, ops_.front()->dx.data(), sizeof(float) * size_t(n * input_width_));
  }
}

const float* Network::last_output() const { return output_; }

}  // namespace pynn::nn
