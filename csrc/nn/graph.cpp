// The graph engine (see graph.h for the invariants).
#include "nn/graph.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "common/parallel.h"
#include "nn/activations.h"
#include "nn/dense_chain.h"
#include "nn/ops/fusion.h"
#include "nn/regularization.h"
#include "nn/softmax.h"

namespace pynn::nn {

namespace {

constexpr int64_t kAlign = 16;                      // floats: 64-byte aligned offsets
constexpr int64_t kMaxArena = int64_t(1) << 40;     // floats; beyond is surely a mistake

// A buffer of the plan: per_row * rows + fixed floats alive over [start, end] (inclusive
// times); its offset lands in *off.
struct Buf {
  int64_t per_row = 0, fixed = 0;
  int start = 0, end = 0;
  int64_t* off = nullptr;
};

// Elements per sample, refusing shapes beyond 2^40 elements (an overflowing product
// included) before anything is sized from them.
int64_t checked_size(const Shape& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d <= 0 || n > kMaxArena / d)
      throw std::invalid_argument(what + ": shape " + shape_str(shape) +
                                  " is empty or exceeds 2^40 elements per sample");
    n *= d;
  }
  return n;
}

int64_t round_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

int64_t argmax(const float* row, int64_t c) {
  int64_t best = 0;
  for (int64_t j = 1; j < c; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}

bool is_classification(LossKind k) { return loss_descriptor(k).classification; }

}  // namespace

struct Graph::Plan {
  struct NodePlan {
    bool training = false;  // this node runs in training mode
    bool alias = false;     // output is input 0's storage
    bool backward = false;  // runs in the backward pass
    bool shared = false;    // alias whose input gradient is its output gradient's storage
    std::vector<ScratchNeed> needs;
    std::vector<int64_t> scratch_off;
    std::vector<float*> scratch;
    BackwardNeeds want;
    std::vector<char> dx_acc, dp_acc, keep_in;
    bool keep_out = false;
  };
  bool built = false;
  bool bound = false;  // pointers below resolved against the arena
  int64_t cap = 0;     // rows the arena is laid out for
  int64_t floats = 0;  // floats used at cap
  std::vector<float> arena;
  std::vector<int> root, groot;  // value / gradient storage owner of each tensor
  std::vector<int64_t> val_off, grad_off, probs_off;
  std::vector<float*> val_ptr, grad_ptr, probs_ptr;
  std::vector<NodePlan> nodes;
  std::vector<int> zero_grads;  // learning params no node contributes to
  std::vector<Buf> bufs;
};

// One predict call's state: its own inference plan (arena included) and pointer tables, made
// for one version of the graph and reused by later calls until the graph changes.
struct Graph::InferContext {
  uint64_t version = 0;
  Plan plan;
  Frame frame;
  DenseChain chain;  // the graph as a dense chain (empty: it is not one)
  std::vector<int> chain_w, chain_b;  // per chain layer: kernel and bias param ids (-1: none)
  std::vector<const float*> chain_wp, chain_bp;  // their arrays, read at each call
};

Graph::Graph() = default;
Graph::~Graph() = default;

// ---------------------------------------------------------------------------------------------
// Building

int Graph::add_input(const Shape& shape) {
  if (shape.empty()) throw std::invalid_argument("shape: expected at least one axis, got ()");
  for (int64_t d : shape)
    if (d <= 0)
      throw std::invalid_argument("shape: expected positive dimensions, got " + shape_str(shape));
  Tensor t;
  t.shape = shape;
  t.size = checked_size(shape, "shape");
  t.input = int(inputs_.size());
  tensors_.push_back(std::move(t));
  inputs_.push_back(int(tensors_.size()) - 1);
  gather_.resize(inputs_.size());
  changed();
  return int(tensors_.size()) - 1;
}

int Graph::add_param(float* value, const Shape& shape, const std::string& name, bool trainable) {
  int64_t size = 1;
  for (int64_t s : shape) {
    if (s < 0 || (s > 0 && size > ((int64_t(1) << 31) - 1) / s))
      throw std::length_error("value: parameter '" + name + "' of shape " + shape_str(shape) +
                              " would exceed 2^31-1 elements");
    size *= s;
  }
  GraphParam p;
  p.name = name;
  p.shape = shape;
  p.size = size;
  p.value = value;
  p.flag = trainable;
  params_.push_back(std::move(p));
  slot_ptrs_.emplace_back();
  changed();
  return int(params_.size()) - 1;
}

int Graph::add_node(const std::string& op_name, const std::vector<int>& inputs,
                    const std::vector<int>& params, std::map<std::string, AttrValue> attrs,
                    const std::string& name) {
  const std::string where = "node '" + name + "' (" + op_name + ")";
  std::unique_ptr<Op> op = make_op(op_name);
  for (size_t k = 0; k < inputs.size(); ++k)
    if (inputs[k] < 0 || inputs[k] >= num_tensors())
      throw std::out_of_range(where + ": inputs[" + std::to_string(k) + "] is tensor " +
                              std::to_string(inputs[k]) + ", which does not exist yet (" +
                              std::to_string(num_tensors()) +
                              " tensors so far; a node's inputs must be added before it)");
  for (size_t k = 0; k < params.size(); ++k)
    if (params[k] < 0 || params[k] >= num_params())
      throw std::out_of_range(where + ": params[" + std::to_string(k) + "] is parameter " +
                              std::to_string(params[k]) + ", out of range (" +
                              std::to_string(num_params()) + " parameters)");
  std::vector<Shape> in_shapes, p_shapes;
  for (int t : inputs) in_shapes.push_back(tensors_[size_t(t)].shape);
  for (int p : params) p_shapes.push_back(params_[size_t(p)].shape);
  Attrs a(std::move(attrs), where);
  Shape out = op->configure(a, in_shapes, p_shapes);
  const std::vector<std::string> unknown = a.unknown();
  if (!unknown.empty()) {
    std::string known;
    for (const auto& k : a.known()) known += (known.empty() ? "" : ", ") + k;
    throw std::invalid_argument(where + ": unknown attribute '" + unknown[0] + "' (" + op_name +
                                " takes: " + (known.empty() ? "none" : known) + ")");
  }
  if (out.empty()) out = {1};
  const int64_t out_size = checked_size(out, where + ": output");
  for (size_t k = 0; k < params.size(); ++k) {
    const GraphParam& p = params_[size_t(params[k])];
    const bool state = op->param_is_state(int(k));
    if ((state && p.weight) || (!state && p.state))
      throw std::invalid_argument(where + ": parameter '" + p.name +
                                  "' is used both as a weight and as state");
  }
  // Everything is checked: commit.
  for (size_t k = 0; k < params.size(); ++k) {
    GraphParam& p = params_[size_t(params[k])];
    if (op->param_is_state(int(k))) {
      p.state = true;
    } else if (!p.weight) {
      p.weight = true;
      p.grad.assign(size_t(p.size), 0.0f);
      if (has_opt_) {
        const int ns = optimizer_num_slots(opt_);
        for (int s = 0; s < ns; ++s) p.slots.emplace_back(size_t(p.size), optimizer_slot_init(opt_, s));
        slot_ptrs_[size_t(params[k])].assign(size_t(std::max(ns, 1)), nullptr);
        for (int s = 0; s < ns; ++s) slot_ptrs_[size_t(params[k])][size_t(s)] = p.slots[size_t(s)].data();
      }
    }
  }
  Node n;
  n.op_name = op_name;
  n.name = name;
  n.op = std::move(op);
  n.inputs = inputs;
  n.params = params;
  const int idx = int(nodes_.size());
  for (int t : inputs) tensors_[size_t(t)].consumers.push_back(idx);
  Tensor t;
  t.shape = out;
  t.size = out_size;
  t.producer = idx;
  tensors_.push_back(std::move(t));
  n.output = int(tensors_.size()) - 1;
  nodes_.push_back(std::move(n));
  upd_params_.reserve(params_.size());
  upd_grads_.reserve(params_.size());
  upd_sizes_.reserve(params_.size());
  upd_slots_.reserve(params_.size());
  changed();
  return nodes_.back().output;
}

void Graph::set_outputs(const std::vector<int>& tensors) {
  if (tensors.empty()) throw std::invalid_argument("tids: expected at least one output tensor");
  for (size_t j = 0; j < tensors.size(); ++j) {
    if (tensors[j] < 0 || tensors[j] >= num_tensors())
      throw std::out_of_range("tids[" + std::to_string(j) + "]: tensor " +
                              std::to_string(tensors[j]) + " does not exist (" +
                              std::to_string(num_tensors()) + " tensors)");
    for (size_t k = 0; k < j; ++k)
      if (tensors[k] == tensors[j])
        throw std::invalid_argument("tids: tensor " + std::to_string(tensors[j]) +
                                    " is listed twice (as outputs " + std::to_string(k) +
                                    " and " + std::to_string(j) + "); add an identity node");
  }
  outputs_ = tensors;
  const size_t no = outputs_.size();
  losses_.assign(no, GraphLoss{});
  used_loss_.assign(no, LossConfig{});
  fused_.assign(no, 0);
  has_losses_ = false;
  tgt_buf_.assign(no, {});
  lab_buf_.assign(no, {});
  sw_buf_.assign(no, {});
  step_losses_.assign(no, 0.0);
  step_correct_.assign(no, 0);
  changed();
}

void Graph::set_losses(const std::vector<GraphLoss>& losses) {
  if (outputs_.empty()) throw std::logic_error("losses: call set_outputs first");
  if (losses.size() != outputs_.size())
    throw std::invalid_argument("losses: expected one entry (or None) per output, " +
                                std::to_string(outputs_.size()) + " outputs, got " +
                                std::to_string(losses.size()));
  for (size_t j = 0; j < losses.size(); ++j) {
    const GraphLoss& L = losses[j];
    if (!L.has) continue;
    if (!std::isfinite(L.weight))
      throw std::invalid_argument("losses[" + std::to_string(j) + "]: weight must be finite");
    if (const std::string err = loss_config_error(L.cfg, false); !err.empty())
      throw std::invalid_argument("losses[" + std::to_string(j) + "]: " + err);
    if (L.mask_output < 0) continue;
    const size_t k = size_t(L.mask_output);
    if (k >= outputs_.size() || k == j || losses[k].has)
      throw std::invalid_argument("losses[" + std::to_string(j) + "]: mask_output " +
                                  std::to_string(L.mask_output) +
                                  " must name another output without a loss");
    if (tensors_[size_t(outputs_[k])].size != output_lead(int(j)))
      throw std::invalid_argument("losses[" + std::to_string(j) + "]: the mask (output " +
                                  std::to_string(k) + ") has " +
                                  std::to_string(tensors_[size_t(outputs_[k])].size) +
                                  " values per sample, the loss has " +
                                  std::to_string(output_lead(int(j))) + " rows per sample");
  }
  losses_ = losses;
  has_losses_ = false;
  for (const GraphLoss& L : losses_) has_losses_ = has_losses_ || L.has;
  if (!has_losses_) throw std::invalid_argument("losses: at least one output needs a loss");
  changed();
}

void Graph::set_regularization(int pid, float l1, float l2) {
  if (!(l1 >= 0.0f && l2 >= 0.0f && std::isfinite(l1) && std::isfinite(l2)))
    throw std::invalid_argument("l1, l2: expected finite non-negative coefficients");
  params_[size_t(pid)].l1 = l1;
  params_[size_t(pid)].l2 = l2;
}

void Graph::set_trainable(int pid, bool trainable) {
  GraphParam& p = params_[size_t(pid)];
  if (p.flag == trainable) return;
  p.flag = trainable;
  tables_dirty_ = true;
  // What learns decides which gradients exist (and a frozen batchnorm's mode): the training
  // plan is redone at the next step; the arena is reused unless it must grow.
  if (plans_[kTrain]) plans_[kTrain]->built = plans_[kTrain]->bound = false;
}

void Graph::set_optimizer(const OptConfig& cfg) {
  opt_ = cfg;
  opt_scalars_ = OptScalars{};
  has_opt_ = true;
  step_ = 0;
  const int ns = optimizer_num_slots(cfg);
  // Every parameter that can learn gets its slots now, frozen or not, so that unfreezing
  // later allocates nothing; state parameters never get any.
  for (size_t i = 0; i < params_.size(); ++i) {
    GraphParam& p = params_[i];
    p.slots.clear();
    slot_ptrs_[i].clear();
    if (!p.weight) continue;
    for (int s = 0; s < ns; ++s) p.slots.emplace_back(size_t(p.size), optimizer_slot_init(cfg, s));
    slot_ptrs_[i].assign(size_t(std::max(ns, 1)), nullptr);
    for (int s = 0; s < ns; ++s) slot_ptrs_[i][size_t(s)] = p.slots[size_t(s)].data();
  }
  upd_params_.reserve(params_.size());
  upd_grads_.reserve(params_.size());
  upd_sizes_.reserve(params_.size());
  upd_slots_.reserve(params_.size());
  tables_dirty_ = true;
}

void Graph::rebuild_update_tables() {
  // Within the capacity reserved when parameters were added: no allocation.
  upd_params_.clear();
  upd_grads_.clear();
  upd_sizes_.clear();
  upd_slots_.clear();
  for (size_t i = 0; i < params_.size(); ++i) {
    GraphParam& p = params_[i];
    if (!p.trainable()) continue;
    upd_params_.push_back(p.value);
    upd_grads_.push_back(p.grad.data());
    upd_sizes_.push_back(p.size);
    upd_slots_.push_back(slot_ptrs_[i].data());
  }
  tables_dirty_ = false;
}

void Graph::changed() {
  ++version_;
  invalidate_plans();
  size_frame(main_);
  {
    std::lock_guard<std::mutex> lk(ctx_mu_);
    idle_.clear();  // made for the old graph
  }
  tables_dirty_ = true;
  last_batch_ = 0;
  decide_fusion();  // also switches fusion off when the losses are gone (set_outputs)
}

void Graph::size_frame(Frame& f) const {
  const size_t N = nodes_.size();
  f.tptr.assign(tensors_.size(), nullptr);
  f.gptr.assign(tensors_.size(), nullptr);
  f.out.assign(outputs_.size(), nullptr);
  f.x.resize(N);
  f.p.resize(N);
  f.dx.resize(N);
  f.dp.resize(N);
  for (size_t i = 0; i < N; ++i) {
    f.x[i].assign(nodes_[i].inputs.size(), nullptr);
    f.dx[i].assign(nodes_[i].inputs.size(), nullptr);
    f.p[i].assign(nodes_[i].params.size(), nullptr);
    f.dp[i].assign(nodes_[i].params.size(), nullptr);
  }
}

void Graph::invalidate_plans() {
  for (auto& p : plans_)
    if (p) p->built = p->bound = false;
}

void Graph::decide_fusion() {
  for (Node& n : nodes_) n.op->set_emit_logits(false);
  // Producer-consumer pairs (nn/ops/fusion.h): a node whose output only one node reads, and
  // which is no graph output, may compute that node's output itself.
  for (Node& n : nodes_)
    if (auto* f = dynamic_cast<ops::FusesConsumer*>(n.op.get())) f->fuse_consumer(nullptr);
  for (Node& n : nodes_) {
    auto* f = dynamic_cast<ops::FusesConsumer*>(n.op.get());
    const Tensor& t = tensors_[size_t(n.output)];
    if (f != nullptr && t.consumers.size() == 1 &&
        std::find(outputs_.begin(), outputs_.end(), n.output) == outputs_.end())
      f->fuse_consumer(nodes_[size_t(t.consumers[0])].op.get());
  }
  for (size_t j = 0; j < outputs_.size(); ++j) {
    used_loss_[j] = losses_[j].cfg;
    fused_[j] = 0;
    const GraphLoss& L = losses_[j];
    if (!has_losses_ || !L.has || L.cfg.from_logits) continue;
    const Tensor& t = tensors_[size_t(outputs_[size_t(j)])];
    if (t.producer < 0 || !t.consumers.empty()) continue;
    Node& n = nodes_[size_t(t.producer)];
    const std::string tail = n.op->tail_activation();
    const bool categorical = L.cfg.kind == LossKind::categorical_crossentropy ||
                             L.cfg.kind == LossKind::sparse_categorical_crossentropy;
    if ((tail == "softmax" && categorical) ||
        (tail == "sigmoid" && L.cfg.kind == LossKind::binary_crossentropy)) {
      n.op->set_emit_logits(true);
      used_loss_[j].from_logits = true;
      fused_[j] = 1;
    }
  }
}

int64_t Graph::output_lead(int j) const {
  const Shape& s = tensors_[size_t(outputs_[size_t(j)])].shape;
  int64_t r = 1;
  for (size_t i = 0; i + 1 < s.size(); ++i) r *= s[i];
  return r;
}

int64_t Graph::output_classes(int j) const {
  return tensors_[size_t(outputs_[size_t(j)])].shape.back();
}

// ---------------------------------------------------------------------------------------------
// Planning

void Graph::build_plan(Mode m, Plan& P) const {
  const bool training = m == kTrain, bwd = m != kInfer;
  const int N = num_nodes(), T = num_tensors();
  const int kLoss = N, kEnd = 2 * N + 1;
  auto bwd_time = [N](int i) { return 2 * N - i; };
  P.nodes.assign(size_t(N), Plan::NodePlan{});
  P.root.resize(size_t(T));
  P.groot.resize(size_t(T));
  for (int t = 0; t < T; ++t) P.root[size_t(t)] = P.groot[size_t(t)] = t;
  P.val_off.assign(size_t(T), -1);
  P.grad_off.assign(size_t(T), -1);
  P.probs_off.assign(outputs_.size(), -1);
  P.zero_grads.clear();
  P.bufs.clear();

  auto learns = [&](const Node& n, int k) {
    return training && params_[size_t(n.params[size_t(k)])].trainable() &&
           !n.op->param_is_state(k);
  };
  // Modes and views.
  for (int i = 0; i < N; ++i) {
    const Node& n = nodes_[size_t(i)];
    Plan::NodePlan& np = P.nodes[size_t(i)];
    bool frozen = n.op->frozen_means_inference() && !n.params.empty();
    for (int pid : n.params) frozen = frozen && !params_[size_t(pid)].flag;
    np.training = training && !frozen;
    np.alias = n.op->aliases(np.training);
    if (np.alias) P.root[size_t(n.output)] = P.root[size_t(n.inputs[0])];
  }

  // Which tensors need gradients: something learns upstream and a loss is downstream.
  std::vector<char> need(size_t(T), 0), seeded(size_t(T), 0);
  if (bwd) {
    std::vector<char> up(size_t(T), 0), down(size_t(T), 0);
    for (int t : inputs_) up[size_t(t)] = m == kGrad;
    for (int i = 0; i < N; ++i) {
      const Node& n = nodes_[size_t(i)];
      bool u = false;
      for (int t : n.inputs) u = u || up[size_t(t)];
      for (size_t k = 0; k < n.params.size(); ++k) u = u || learns(n, int(k));
      up[size_t(n.output)] = u;
    }
    for (size_t j = 0; j < outputs_.size(); ++j)
      if (m == kGrad || losses_[j].has) down[size_t(outputs_[j])] = 1;
    if (training)   // input_gradient (kGrad) differentiates the outputs alone
      for (const Node& n : nodes_)
        if (n.op->adds_loss()) down[size_t(n.output)] = 1;
    for (int i = N - 1; i >= 0; --i) {
      const Node& n = nodes_[size_t(i)];
      if (down[size_t(n.output)])
        for (int t : n.inputs) down[size_t(t)] = 1;
    }
    for (int t = 0; t < T; ++t) need[size_t(t)] = up[size_t(t)] && down[size_t(t)];
    for (size_t j = 0; j < outputs_.size(); ++j)
      if (m == kGrad || losses_[j].has) seeded[size_t(outputs_[j])] = need[size_t(outputs_[j])];
  }

  // Backward work, accumulate flags (first contribution writes, later ones add) and the
  // time of each tensor's first gradient contribution.
  std::vector<char> seen(seeded);
  std::vector<char> pseen(params_.size(), 0);
  std::vector<int> contributions(size_t(T), 0), first(size_t(T), kEnd);
  for (int t = 0; t < T; ++t)
    if (seeded[size_t(t)]) {
      contributions[size_t(t)] = 1;
      first[size_t(t)] = kLoss;
    }
  if (bwd) {
    for (int i = N - 1; i >= 0; --i) {
      const Node& n = nodes_[size_t(i)];
      Plan::NodePlan& np = P.nodes[size_t(i)];
      np.want.dx.assign(n.inputs.size(), 0);
      np.want.dparam.assign(n.params.size(), 0);
      np.dx_acc.assign(n.inputs.size(), 0);
      np.dp_acc.assign(n.params.size(), 0);
      np.keep_in.assign(n.inputs.size(), 0);
      if (!need[size_t(n.output)]) continue;
      bool any = false;
      for (size_t k = 0; k < n.inputs.size(); ++k)
        if (need[size_t(n.inputs[k])]) np.want.dx[k] = 1, any = true;
      for (size_t k = 0; k < n.params.size(); ++k)
        if (learns(n, int(k))) np.want.dparam[k] = 1, any = true;
      if (!any) continue;
      np.backward = true;
      for (size_t k = 0; k < n.inputs.size(); ++k) {
        if (!np.want.dx[k]) continue;
        const int t = n.inputs[k];
        np.dx_acc[k] = seen[size_t(t)];
        seen[size_t(t)] = 1;
        if (contributions[size_t(t)]++ == 0) first[size_t(t)] = bwd_time(i);
      }
      for (size_t k = 0; k < n.params.size(); ++k) {
        if (!np.want.dparam[k]) continue;
        const int pid = n.params[k];
        np.dp_acc[k] = pseen[size_t(pid)];
        pseen[size_t(pid)] = 1;
      }
      if (!np.alias) {
        for (size_t k = 0; k < n.inputs.size(); ++k)
          np.keep_in[k] = n.op->needs_input(int(k), np.training, np.want);
        np.keep_out = n.op->needs_output(np.training, np.want);
      }
    }
    for (size_t pid = 0; pid < params_.size(); ++pid)
      if (training && params_[pid].trainable() && !pseen[pid]) P.zero_grads.push_back(int(pid));
    // A view that is the only contributor to its input's gradient shares its output's
    // gradient storage and does nothing in backward (later nodes first: chains collapse).
    for (int i = N - 1; i >= 0; --i) {
      const Node& n = nodes_[size_t(i)];
      Plan::NodePlan& np = P.nodes[size_t(i)];
      if (np.alias && np.backward && np.want.dx[0] && contributions[size_t(n.inputs[0])] == 1) {
        np.shared = true;
        P.groot[size_t(n.inputs[0])] = P.groot[size_t(n.output)];
      }
    }
    // Resolve chains: groot of groot.
    for (int t = T - 1; t >= 0; --t) {
      int g = P.groot[size_t(t)];
      while (P.groot[size_t(g)] != g) g = P.groot[size_t(g)];
      P.groot[size_t(t)] = g;
    }
  } else {
    for (int i = 0; i < N; ++i) {
      const Node& n = nodes_[size_t(i)];
      Plan::NodePlan& np = P.nodes[size_t(i)];
      np.want.dx.assign(n.inputs.size(), 0);
      np.want.dparam.assign(n.params.size(), 0);
      np.dx_acc.assign(n.inputs.size(), 0);
      np.dp_acc.assign(n.params.size(), 0);
      np.keep_in.assign(n.inputs.size(), 0);
    }
  }

  // Lifetimes of the values.
  std::vector<int> vstart(size_t(T), 0), vend(size_t(T), -1);
  for (int i = 0; i < N; ++i) {
    const Node& n = nodes_[size_t(i)];
    const Plan::NodePlan& np = P.nodes[size_t(i)];
    if (!np.alias) vstart[size_t(n.output)] = vend[size_t(n.output)] = i;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const int r = P.root[size_t(n.inputs[k])];
      vend[size_t(r)] = std::max(vend[size_t(r)], i);
      if (np.backward && np.keep_in[k]) vend[size_t(r)] = std::max(vend[size_t(r)], bwd_time(i));
    }
    if (np.backward && np.keep_out) {
      const int r = P.root[size_t(n.output)];
      vend[size_t(r)] = std::max(vend[size_t(r)], bwd_time(i));
    }
  }
  for (int t : outputs_) vend[size_t(P.root[size_t(t)])] = kEnd;
  for (int t = 0; t < T; ++t) {
    const Tensor& ts = tensors_[size_t(t)];
    if (ts.producer < 0 || P.root[size_t(t)] != t) continue;  // inputs are the caller's
    P.bufs.push_back({ts.size, 0, vstart[size_t(t)], std::max(vend[size_t(t)], vstart[size_t(t)]),
                      &P.val_off[size_t(t)]});
  }
  // Gradients: from the first contribution to the producer's backward (end of the call for
  // graph inputs, whose gradients are copied out).
  if (bwd) {
    std::vector<int> gstart(size_t(T), kEnd + 1), gend(size_t(T), -1);
    for (int t = 0; t < T; ++t) {
      // A loss-adding node's output that nothing differentiates gets no storage (its
      // backward reads dy == nullptr as zero).
      if (!need[size_t(t)] || contributions[size_t(t)] == 0) continue;
      const int g = P.groot[size_t(t)];
      const int p = tensors_[size_t(t)].producer;
      gstart[size_t(g)] = std::min(gstart[size_t(g)], first[size_t(t)]);
      gend[size_t(g)] = std::max(gend[size_t(g)], p >= 0 ? bwd_time(p) : kEnd);
    }
    for (int g = 0; g < T; ++g)
      if (gend[size_t(g)] >= 0)
        P.bufs.push_back({tensors_[size_t(g)].size, 0, std::min(gstart[size_t(g)], gend[size_t(g)]),
                          gend[size_t(g)], &P.grad_off[size_t(g)]});
  }
  // Scratch.
  for (int i = 0; i < N; ++i) {
    const Node& n = nodes_[size_t(i)];
    Plan::NodePlan& np = P.nodes[size_t(i)];
    if (np.alias) continue;
    np.needs = n.op->scratch(np.training, np.backward);
    np.scratch_off.assign(np.needs.size(), -1);
    np.scratch.assign(np.needs.size(), nullptr);
    for (size_t k = 0; k < np.needs.size(); ++k) {
      const ScratchNeed& s = np.needs[k];
      if (s.per_row == 0 && s.fixed == 0) continue;
      int a = i, b = i;
      if (s.life == ScratchLife::backward) {
        if (!np.backward) continue;
        a = b = bwd_time(i);
      } else if (s.life == ScratchLife::saved && np.backward) {
        b = bwd_time(i);
      }
      P.bufs.push_back({s.per_row, s.fixed, a, b, &np.scratch_off[k]});
    }
  }
  // Probabilities of fused outputs: from the losses to the end of the call.
  for (size_t j = 0; j < outputs_.size(); ++j)
    if (fused_[j])
      P.bufs.push_back({tensors_[size_t(outputs_[j])].size, 0, kLoss, kEnd, &P.probs_off[j]});
  P.built = true;
  P.bound = false;
}

// Offsets for `cap` rows: biggest buffers first, each at the lowest offset free over its
// whole lifetime. Returns the arena size in floats; offsets go to offs (one per buffer).
static int64_t layout_offsets(const std::vector<Buf>& bufs, int64_t cap,
                              std::vector<int64_t>& offs) {
  const size_t B = bufs.size();
  std::vector<int64_t> size(B);
  std::vector<size_t> order(B);
  for (size_t b = 0; b < B; ++b) {
    const Buf& f = bufs[b];
    if (f.per_row > 0 && cap > (kMaxArena - f.fixed) / f.per_row)
      throw std::length_error("batch of " + std::to_string(cap) +
                              " rows: the graph's buffers would exceed 2^40 floats");
    size[b] = round_up(f.per_row * cap + f.fixed);
    order[b] = b;
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (size[a] != size[b]) return size[a] > size[b];
    return bufs[a].start < bufs[b].start;
  });
  offs.assign(B, 0);
  std::vector<size_t> placed, live;
  int64_t total = 0;
  for (size_t b : order) {
    live.clear();
    for (size_t q : placed)
      if (!(bufs[q].end < bufs[b].start || bufs[q].start > bufs[b].end)) live.push_back(q);
    std::sort(live.begin(), live.end(), [&](size_t x, size_t y) { return offs[x] < offs[y]; });
    int64_t at = 0;
    for (size_t q : live) {
      if (at + size[b] <= offs[q]) break;
      at = std::max(at, offs[q] + size[q]);
    }
    offs[b] = at;
    total = std::max(total, at + size[b]);
    placed.push_back(b);
  }
  if (total > kMaxArena) throw std::length_error("the graph's buffers would exceed 2^40 floats");
  return total;
}

int64_t Graph::layout(Plan& P, int64_t cap) {
  std::vector<int64_t> offs;
  const int64_t total = layout_offsets(P.bufs, cap, offs);
  for (size_t b = 0; b < P.bufs.size(); ++b) *P.bufs[b].off = offs[b];
  return total;
}

Graph::Plan& Graph::plan(Mode m, int64_t rows) {
  if (!plans_[m]) plans_[m] = std::make_unique<Plan>();
  Plan& P = *plans_[m];
  if (!P.built) build_plan(m, P);
  if (P.bound && rows <= P.cap) return P;
  bind_plan(P, rows);
  last_batch_ = 0;
  return P;
}

void Graph::bind_plan(Plan& P, int64_t rows) const {
  if (P.bound && rows <= P.cap) return;
  const int64_t cap = std::max(rows, P.cap);
  const int64_t floats = layout(P, cap);
  // Grows, never shrinks; a new vector only when it must grow.
  if (int64_t(P.arena.size()) < floats) {
    P.arena = std::vector<float>();
    P.arena.assign(size_t(floats), 0.0f);
  }
  P.cap = cap;
  P.floats = floats;
  float* base = P.arena.data();
  auto at = [base](int64_t off) { return off >= 0 ? base + off : nullptr; };
  const int T = num_tensors();
  P.val_ptr.assign(size_t(T), nullptr);
  P.grad_ptr.assign(size_t(T), nullptr);
  for (int t = 0; t < T; ++t) {
    P.val_ptr[size_t(t)] = at(P.val_off[size_t(t)]);
    P.grad_ptr[size_t(t)] = at(P.grad_off[size_t(P.groot[size_t(t)])]);
  }
  P.probs_ptr.assign(outputs_.size(), nullptr);
  for (size_t j = 0; j < outputs_.size(); ++j) P.probs_ptr[j] = at(P.probs_off[j]);
  for (Plan::NodePlan& np : P.nodes)
    for (size_t k = 0; k < np.scratch.size(); ++k) np.scratch[k] = at(np.scratch_off[k]);
  P.bound = true;
}

// ---------------------------------------------------------------------------------------------
// Running

namespace {
template <class T>
void grow(std::vector<T>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.assign(size_t(n), T{});
}
}  // namespace

void Graph::gather_rows(const float* const* x, const int64_t* idx, int64_t r0, int64_t r1) {
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const int64_t sz = tensors_[size_t(inputs_[i])].size;
    float* dst = gather_[i].data();
    for (int64_t r = r0; r < r1; ++r)
      std::memcpy(dst + r * sz, x[i] + idx[r] * sz, sizeof(float) * size_t(sz));
  }
}

// gathered: gather_ already holds the rows idx (a prefetch by the previous step).
void Graph::bind_inputs(const Plan& P, const float* const* x, int64_t row0, int64_t n,
                        const int64_t* idx, Frame& f, bool gathered) {
  if (idx != nullptr && !gathered) {
    for (size_t i = 0; i < inputs_.size(); ++i)
      grow(gather_[i], std::max(n, P.cap) * tensors_[size_t(inputs_[i])].size);
    gather_rows(x, idx, 0, n);
  }
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const int t = inputs_[i];
    if (idx != nullptr) {
      f.tptr[size_t(t)] = gather_[i].data();
    } else {
      const int64_t sz = tensors_[size_t(t)].size;
      f.tptr[size_t(t)] = x[i] + row0 * sz;
    }
  }
  // Node outputs: their own storage, or (views) their root's. Roots precede their views in
  // node order, and inputs were set above.
  for (const Node& n : nodes_) {
    const int t = n.output;
    const int r = P.root[size_t(t)];
    f.tptr[size_t(t)] = r == t ? P.val_ptr[size_t(t)] : f.tptr[size_t(r)];
  }
  for (int t = 0; t < num_tensors(); ++t)
    f.gptr[size_t(t)] = P.grad_ptr.empty() ? nullptr : P.grad_ptr[size_t(t)];
}

void Graph::forward(Plan& P, int64_t n, Frame& f, uint64_t stream_step) const {
  f.added_loss = 0.0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Plan::NodePlan& np = P.nodes[i];
    if (np.alias) continue;
    const Node& nd = nodes_[i];
    std::vector<const float*>& xs = f.x[i];
    std::vector<float*>& ps = f.p[i];
    for (size_t k = 0; k < nd.inputs.size(); ++k) xs[k] = f.tptr[size_t(nd.inputs[k])];
    for (size_t k = 0; k < nd.params.size(); ++k) ps[k] = params_[size_t(nd.params[k])].value;
    FwdArgs a;
    a.n = n;
    a.x = xs.data();
    // The output is always arena storage of this plan (never a caller array).
    a.y = const_cast<float*>(f.tptr[size_t(nd.output)]);
    a.param = ps.data();
    a.scratch = np.scratch.data();
    a.training = np.training;
    a.stream = stream_step * 4096u + uint64_t(i);
    a.added_loss = f.wants_loss ? &f.added_loss : nullptr;
    nd.op->forward(a);
  }
}

void Graph::compute_probs(Plan& P, int64_t n, Frame& f) const {
  for (size_t j = 0; j < outputs_.size(); ++j) {
    const int t = outputs_[j];
    if (!fused_[j]) {
      f.out[j] = f.tptr[size_t(t)];
      continue;
    }
    float* probs = P.probs_ptr[j];
    const int64_t c = output_classes(int(j)), rows = n * output_lead(int(j));
    std::memcpy(probs, f.tptr[size_t(t)], sizeof(float) * size_t(rows * c));
    if (nodes_[size_t(tensors_[size_t(t)].producer)].op->tail_activation() == "softmax")
      softmax_forward(probs, rows, c);
    else
      find_activation("sigmoid")->forward(probs, rows * c, nullptr);
    f.out[j] = probs;
  }
}

void Graph::backward(Plan& P, int64_t n) {
  Frame& f = main_;
  for (size_t i = nodes_.size(); i-- > 0;) {
    Plan::NodePlan& np = P.nodes[i];
    if (!np.backward) continue;
    Node& nd = nodes_[i];
    std::vector<const float*>& xs = f.x[i];
    std::vector<float*>&ps = f.p[i], &dxs = f.dx[i], &dps = f.dp[i];
    float* dy = f.gptr[size_t(nd.output)];
    if (np.alias) {
      if (np.shared) continue;
      float* dx = f.gptr[size_t(nd.inputs[0])];
      if (dx) store_or_add(dx, dy, n * tensors_[size_t(nd.output)].size, np.dx_acc[0] != 0);
      continue;
    }
    for (size_t k = 0; k < nd.inputs.size(); ++k) {
      const int t = nd.inputs[k];
      xs[k] = np.keep_in[k] ? f.tptr[size_t(t)] : nullptr;
      dxs[k] = np.want.dx[k] ? f.gptr[size_t(t)] : nullptr;
    }
    for (size_t k = 0; k < nd.params.size(); ++k) {
      GraphParam& p = params_[size_t(nd.params[k])];
      ps[k] = p.value;
      dps[k] = np.want.dparam[k] ? p.grad.data() : nullptr;
    }
    BwdArgs a;
    a.n = n;
    a.x = xs.data();
    a.y = np.keep_out ? f.tptr[size_t(nd.output)] : nullptr;
    a.dy = dy;
    a.dx = dxs.data();
    a.dx_acc = np.dx_acc.data();
    a.param = ps.data();
    a.dparam = dps.data();
    a.dparam_acc = np.dp_acc.data();
    a.scratch = np.scratch.data();
    a.training = np.training;
    nd.op->backward(a);
  }
}

void Graph::check_labels(const StepData& d) const {
  for (size_t j = 0; j < outputs_.size(); ++j) {
    const int32_t* lab = d.labels ? d.labels[j] : nullptr;
    if (!losses_[j].has || lab == nullptr) continue;
    const int64_t lead = output_lead(int(j)), c = output_classes(int(j));
    for (int64_t r = 0; r < d.batch; ++r) {
      const int64_t row = d.idx ? d.idx[r] : r;
      for (int64_t k = 0; k < lead; ++k) {
        const int32_t v = lab[row * lead + k];
        if (v < 0 || v >= c)
          throw std::invalid_argument("ys[" + std::to_string(j) + "]: label " +
                                      std::to_string(v) + " (row " + std::to_string(row) +
                                      ") is outside [0, " + std::to_string(c) + ")");
      }
    }
  }
}

// Keras's apply_mask for the mean reductions: a kept row weighs (its sample weight times)
// rows / kept, a masked row 0, so that the mean over all rows is the mean over the kept ones;
// no row kept: every weight 0 (Keras divides with divide_no_nan). Without rescale (Keras's
// "sum" reduction) a kept row weighs its sample weight. Written to sw_buf_[j].
const float* Graph::masked_weights(int j, const float* keep, const float* sw, int64_t rows) {
  int64_t kept = 0;
  for (int64_t r = 0; r < rows; ++r) kept += keep[r] != 0.0f;
  const float scale = !losses_[size_t(j)].mask_rescale ? 1.0f
                      : kept                           ? float(rows) / float(kept)
                                                       : 0.0f;
  std::vector<float>& buf = sw_buf_[size_t(j)];
  grow(buf, rows);
  for (int64_t r = 0; r < rows; ++r)
    buf[size_t(r)] = keep[r] != 0.0f ? (sw ? sw[r] * scale : scale) : 0.0f;
  return buf.data();
}

void Graph::losses(const StepData& d, bool want_grad) {
  total_ = 0.0;
  const int64_t B = d.batch;
  for (size_t j = 0; j < outputs_.size(); ++j) {
    step_losses_[j] = 0.0;
    step_correct_[j] = 0;
    const GraphLoss& L = losses_[j];
    if (!L.has) continue;
    const int t = outputs_[j];
    const int64_t lead = output_lead(int(j)), c = output_classes(int(j)), rows = B * lead;
    const float* tgt = nullptr;
    const int32_t* lab = nullptr;
    const float* sw = nullptr;
    if (d.labels && d.labels[j]) {
      lab = d.labels[j];
      if (d.idx) {
        grow(lab_buf_[j], rows);
        for (int64_t r = 0; r < B; ++r)
          std::memcpy(lab_buf_[j].data() + r * lead, d.labels[j] + d.idx[r] * lead,
                      sizeof(int32_t) * size_t(lead));
        lab = lab_buf_[j].data();
      }
    } else {
      tgt = d.y[j];  // null for a loss that reads no target (mean_of_output)
      if (d.idx && tgt != nullptr) {
        const int64_t sz = lead * c;
        grow(tgt_buf_[j], B * sz);
        for (int64_t r = 0; r < B; ++r)
          std::memcpy(tgt_buf_[j].data() + r * sz, d.y[j] + d.idx[r] * sz,
                      sizeof(float) * size_t(sz));
        tgt = tgt_buf_[j].data();
      }
    }
    if (d.sw && d.sw[j] && d.sw_steps && d.sw_steps[j]) {
      sw = d.sw[j];  // a weight per loss row already: only gathered
      if (d.idx) {
        grow(sw_buf_[j], rows);
        for (int64_t r = 0; r < B; ++r)
          std::memcpy(sw_buf_[j].data() + r * lead, d.sw[j] + d.idx[r] * lead,
                      sizeof(float) * size_t(lead));
        sw = sw_buf_[j].data();
      }
    } else if (d.sw && d.sw[j]) {
      sw = d.sw[j];
      if (d.idx || lead > 1) {  // gathered and repeated for every loss row of a sample
        grow(sw_buf_[j], rows);
        for (int64_t r = 0; r < B; ++r) {
          const float w = d.sw[j][d.idx ? d.idx[r] : r];
          for (int64_t k = 0; k < lead; ++k) sw_buf_[j][size_t(r * lead + k)] = w;
        }
        sw = sw_buf_[j].data();
      }
    }
    const float* keep = L.mask_output >= 0 ? main_.out[size_t(L.mask_output)] : nullptr;
    if (keep != nullptr) sw = masked_weights(int(j), keep, sw, rows);
    float* grad = want_grad ? main_.gptr[size_t(t)] : nullptr;
    const double l =
        loss_value_grad(used_loss_[j], rows, c, main_.tptr[size_t(t)], tgt, lab, sw, grad);
    if (grad && L.weight != 1.0) {
      const float w = float(L.weight);
      for (int64_t i = 0; i < rows * c; ++i) grad[i] *= w;
    }
    step_losses_[j] = l;
    total_ += L.weight * l;
    if (!is_classification(L.cfg.kind)) continue;
    // Accuracy as Keras picks it: (sparse) categorical by argmax, binary by threshold 0.5.
    const float* p = main_.out[j];
    int64_t correct = 0;
    for (int64_t r = 0; r < rows; ++r) {
      if (keep != nullptr && keep[r] == 0.0f) continue;
      const float* pr = p + r * c;
      if (L.cfg.kind == LossKind::binary_crossentropy) {
        for (int64_t k = 0; k < c; ++k) correct += (pr[k] > 0.5f) == (tgt[r * c + k] > 0.5f);
      } else if (lab != nullptr) {
        correct += argmax(pr, c) == lab[r];
      } else {
        correct += argmax(pr, c) == argmax(tgt + r * c, c);
      }
    }
    step_correct_[j] = correct;
  }
  total_ += main_.added_loss;  // activity regularization, as Keras adds layer losses
}

// Where a step's time goes (the 784-256-128-10 ReLU MLP, batch 128, Adam, Fashion-MNIST; Ice
// Lake Xeon, 1 thread, `perf record --call-graph dwarf` over whole epochs of fit, share of the
// epoch's CPU time): GEMMs 77% (forward 38.5, of which the ReLU epilogue 2.8; the dW products
// 33; the dx product 5; packing A and B is 13 of the 77), the Adam update 13.5 (bound by the
// vector divide and square root it must round exactly as Keras's expression), the batch gather
// 3.2 (reading the rows from memory, which any loop must do once an epoch), fit's check that
// the inputs are finite 2.3 (once per fit call), the bias-gradient / ReLU-derivative pass 1.4,
// losses + softmax 2, Python < 1 (fit runs the batches a chunk per call: Graph::train_steps in
// the bindings). What is left to gain is mostly in the GEMMs (gemm/).
// The same on a Zen 4 EPYC (1 MB L2, 32 MB L3; `perf record -g`, frame pointers, 4 epochs,
// load 3-5): the products 82% (forward 38.5 with its ReLU epilogue, dW 36.7, dx 6.2; packing
// 5.3 of the 82, the N = 10 direct kernel 0.6), Adam 8.0, the gather 4.3, losses + softmax
// 1.9, the finiteness check 1.0, the bias-gradient / ReLU-derivative pass 0.8, Python 0.2.
// Under mixed_bfloat16: products 74 (packing 11), Adam 13.1, gather 5.6. Both big remainders
// are memory passes at the hardware's rate, not arithmetic: Adam moves 28 bytes an element
// (w, g, m, v in; w, m, v out; 3.8 MB of state, beyond L2) and takes as long with its
// division and square root replaced by multiplications (75 vs 73 us a step, 1 thread); the
// gather reads 128 random 3 KB rows of a 188 MB array from DRAM (70-85 us a step, 24 us for
// the same bytes in order), and neither software prefetching nor interleaving it with Adam's
// pass measured faster. On 2 threads the waits around the step's five parallel regions are
// about 6% of the CPU time.
void Graph::train_step(const StepData& d) { train_step(d, nullptr); }

void Graph::train_step(const StepData& d, const StepData* next) {
  // The rows gathered by the previous step's prefetch, if they are this step's.
  const Prefetched pre = prefetched_;
  prefetched_ = Prefetched{};
  const bool gathered = d.idx != nullptr && pre.idx == d.idx && pre.x == d.x &&
                        pre.batch == d.batch;
  if (!has_losses_) throw std::logic_error("the graph has no losses: call set_losses first");
  if (!has_opt_) throw std::logic_error("the graph has no optimizer: call set_optimizer first");
  if (d.batch <= 0) {
    total_ = 0.0;
    std::fill(step_losses_.begin(), step_losses_.end(), 0.0);
    std::fill(step_correct_.begin(), step_correct_.end(), 0);
    last_batch_ = 0;
    return;
  }
  check_labels(d);
  Plan& P = plan(kTrain, d.batch);
  if (tables_dirty_) rebuild_update_tables();
  bind_inputs(P, d.x, 0, d.batch, d.idx, main_, gathered);
  forward(P, d.batch, main_);
  compute_probs(P, d.batch, main_);
  last_batch_ = d.batch;
  losses(d, true);
  backward(P, d.batch);
  for (int pid : P.zero_grads) {
    GraphParam& p = params_[size_t(pid)];
    std::fill(p.grad.begin(), p.grad.end(), 0.0f);
  }
  for (GraphParam& p : params_)
    if (p.trainable() && (p.l1 != 0.0f || p.l2 != 0.0f))
      total_ += l1_l2_penalty(p.value, p.grad.data(), p.size, p.l1, p.l2);
  ++step_;
  // The next batch's rows are gathered in the update's region (nothing reads this step's
  // inputs any more), into the buffers as they are when they hold enough rows.
  bool prefetch = next != nullptr && next->idx != nullptr && d.idx != nullptr &&
                  next->x == d.x && next->batch > 0;
  for (size_t i = 0; prefetch && i < inputs_.size(); ++i)
    prefetch = int64_t(gather_[i].size()) >= next->batch * tensors_[size_t(inputs_[i])].size;
  struct Side {
    Graph* g;
    const StepData* next;
  } side{this, next};
  auto gather_part = [](void* ctx, int task, int ntasks) {
    const Side& sd = *static_cast<const Side*>(ctx);
    int64_t lo, hi;
    parallel::static_block(sd.next->batch, ntasks, task, lo, hi);
    sd.g->gather_rows(sd.next->x, sd.next->idx, lo, hi);
  };
  optimizer_apply(opt_, opt_scalars_, step_, upd_params_.data(), upd_grads_.data(),
                  upd_slots_.data(), upd_sizes_.data(), int64_t(upd_params_.size()),
                  prefetch ? +gather_part : nullptr, &side);
  if (prefetch) prefetched_ = Prefetched{next->x, next->idx, next->batch};
}

void Graph::test_step(const StepData& d) {
  if (!has_losses_) throw std::logic_error("the graph has no losses: call set_losses first");
  if (d.batch <= 0) {
    total_ = 0.0;
    std::fill(step_losses_.begin(), step_losses_.end(), 0.0);
    std::fill(step_correct_.begin(), step_correct_.end(), 0);
    last_batch_ = 0;
    return;
  }
  check_labels(d);
  Plan& P = plan(kInfer, d.batch);
  bind_inputs(P, d.x, 0, d.batch, d.idx, main_);
  forward(P, d.batch, main_);
  compute_probs(P, d.batch, main_);
  last_batch_ = d.batch;
  losses(d, false);
  // The penalties count as in training (Keras): trainable (unfrozen) weights only, summed by
  // the same function in the same order, so that both steps report the same loss.
  for (const GraphParam& p : params_)
    if (p.trainable() && (p.l1 != 0.0f || p.l2 != 0.0f))
      total_ += l1_l2_penalty(p.value, nullptr, p.size, p.l1, p.l2);
}

std::unique_ptr<Graph::InferContext> Graph::take_context() {
  std::unique_ptr<InferContext> c;
  {
    std::lock_guard<std::mutex> lk(ctx_mu_);
    if (!idle_.empty()) {
      c = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (!c || c->version != version_) {
    c = std::make_unique<InferContext>();
    c->version = version_;
    build_plan(kInfer, c->plan);
    size_frame(c->frame);
    c->frame.wants_loss = false;   // predict: nobody reads the activity penalties
    build_chain(*c);
  }
  return c;
}

// The graph as a chain of dense layers from its one input to its one output, each node
// reading the previous one's output, with only views (inference-time aliases) or ops that are
// the identity apart from a loss term (activity penalties: predict wants no loss) between.
void Graph::build_chain(InferContext& c) const {
  c.chain.clear();
  c.chain_w.clear();
  c.chain_b.clear();
  if (inputs_.size() != 1 || outputs_.size() != 1) return;
  DenseChain chain;
  std::vector<int> w, b;
  int cur = inputs_[0];
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& nd = nodes_[i];
    if (nd.inputs.size() != 1 || nd.inputs[0] != cur) return;
    cur = nd.output;
    if (c.plan.nodes[i].alias || nd.op->identity_without_loss()) continue;
    DenseDesc d;
    if (!nd.op->dense_desc(&d)) return;  // any other op: not a chain (nothing kept)
    // float32 and bf16 layers in one chain: the general path (each chain kind runs one GEMM)
    if (chain.size() > 0 && d.bf16 != chain.layer(0).bf16) return;
    chain.add(d);
    w.push_back(nd.params[0]);
    b.push_back(nd.params.size() > 1 ? nd.params[1] : -1);
  }
  if (cur != outputs_[0] || w.empty()) return;
  c.chain = std::move(chain);
  c.chain_w = std::move(w);
  c.chain_b = std::move(b);
}

int Graph::dense_chain_layers() {
  std::unique_ptr<InferContext> ctx = take_context();
  const int k = int(ctx->chain.size());
  give_context(std::move(ctx));
  return k;
}

bool Graph::predict_chain(const float* x, int64_t n, float* out) {
  std::unique_ptr<InferContext> ctx = take_context();
  const bool pays = n == 1 || n >= kChainMinRows || ctx->chain.few_rows_direct(n);
  if (ctx->chain.size() == 0 || !pays) {
    give_context(std::move(ctx));
    return false;
  }
  const size_t L = ctx->chain.size();
  ctx->chain_wp.resize(L);
  ctx->chain_bp.resize(L);
  for (size_t l = 0; l < L; ++l) {
    ctx->chain_wp[l] = params_[size_t(ctx->chain_w[l])].value;
    ctx->chain_bp[l] = ctx->chain_b[l] < 0 ? nullptr : params_[size_t(ctx->chain_b[l])].value;
  }
  ctx->chain.run(ctx->chain_wp.data(), ctx->chain_bp.data(), x, n, out);
  give_context(std::move(ctx));
  return true;
}

void Graph::give_context(std::unique_ptr<InferContext> c) {
  std::lock_guard<std::mutex> lk(ctx_mu_);
  if (c->version == version_) idle_.push_back(std::move(c));
}

// Rows [r0, r0 + n) in chunks of `chunk` rows, on this thread's share of the pool (all of it
// when called outside a task: then the kernels cut each op among the threads).
void Graph::predict_rows(const float* const* x, int64_t r0, int64_t n, float* const* out,
                         int64_t chunk) {
  // This call's own plan and tables: other predicts may be running on the graph meanwhile.
  std::unique_ptr<InferContext> ctx = take_context();
  Plan& P = ctx->plan;
  Frame& f = ctx->frame;
  bind_plan(P, std::min(chunk, n));
  for (int64_t r = r0; r < r0 + n; r += chunk) {
    const int64_t m = std::min(chunk, r0 + n - r);
    bind_inputs(P, x, r, m, nullptr, f);
    forward(P, m, f);
    compute_probs(P, m, f);
    for (size_t j = 0; j < outputs_.size(); ++j) {
      const int64_t sz = tensors_[size_t(outputs_[j])].size;
      std::memcpy(out[j] + r * sz, f.out[j], sizeof(float) * size_t(m * sz));
    }
  }
  give_context(std::move(ctx));
}

void Graph::predict(const float* const* x, int64_t n, float* const* out, int64_t chunk) {
  if (n <= 0) return;
  // A chain of dense layers (an MLP): one row straight through the one-row kernels, a few
  // rows of a bf16 chain through the row kernels (DenseChain::few_rows_direct), or enough
  // rows to pay for packing the weights once on the fused row-block path; bitwise the result
  // of the general path below (nn/dense_chain.h). predict_chain tells which.
  if (predict_chain(x[0], n, out[0])) return;
  chunk = std::max<int64_t>(1, std::min(chunk, n));
  const int64_t chunks = (n + chunk - 1) / chunk;
  const int nt = parallel::available_threads();
  // Many chunks: each thread runs whole chunks through the network (its kernels serial,
  // being inside a task), instead of every op of every chunk opening a parallel region of
  // its own. One region per call, each chunk's activations stay in its core's cache, and a
  // thread that the machine's other work holds up keeps only the chunk it is on: one task
  // per thread (the pool starts a thread per task) takes the next chunk nobody has taken
  // until none is left. Rows never interact in inference and chunk boundaries stay where the
  // serial loop puts them, so the output is bitwise the same.
  // With fewer than two chunks a thread, the per-op split balances better.
  if (nt > 1 && chunks >= 2 * int64_t(nt)) {
    std::atomic<int64_t> next{0};
    parallel::run(nt, [&](int) {
      for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
        const int64_t r = c * chunk;
        predict_rows(x, r, std::min(chunk, n - r), out, chunk);
      }
    });
    return;
  }
  predict_rows(x, 0, n, out, chunk);
}

void Graph::input_gradient(const float* const* x, int64_t n, const float* const* seeds,
                           float* const* dx) {
  if (n <= 0) return;
  Plan& P = plan(kGrad, n);
  bind_inputs(P, x, 0, n, nullptr, main_);
  forward(P, n, main_);
  compute_probs(P, n, main_);
  last_batch_ = n;
  for (size_t j = 0; j < outputs_.size(); ++j) {
    const int t = outputs_[j];
    float* g = main_.gptr[size_t(t)];
    if (!g) continue;
    const int64_t c = output_classes(int(j)), rows = n * output_lead(int(j));
    if (!fused_[j]) {
      std::memcpy(g, seeds[j], sizeof(float) * size_t(rows * c));
      continue;
    }
    // The seed is a gradient with respect to probabilities; the tensor holds logits.
    const float* p = main_.out[j];
    if (nodes_[size_t(tensors_[size_t(t)].producer)].op->tail_activation() == "softmax") {
      softmax_backward(p, seeds[j], g, rows, c);
    } else {
      for (int64_t i = 0; i < rows * c; ++i) g[i] = seeds[j][i] * p[i] * (1.0f - p[i]);
    }
  }
  backward(P, n);
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const int t = inputs_[i];
    const int64_t sz = tensors_[size_t(t)].size;
    if (const float* g = main_.gptr[size_t(t)])
      std::memcpy(dx[i], g, sizeof(float) * size_t(n * sz));
    else
      std::memset(dx[i], 0, sizeof(float) * size_t(n * sz));
  }
}

void Graph::forward_train(const float* const* x, int64_t n, float* const* out, uint64_t call) {
  if (n <= 0) return;
  Plan& P = plan(kTrain, n);
  bind_inputs(P, x, 0, n, nullptr, main_);
  // Training steps use stream steps 0, 1, 2, ...; eager calls start at 2^50 (far beyond any
  // step count), so the two never share a dropout mask.
  forward(P, n, main_, (uint64_t(1) << 50) + call);
  compute_probs(P, n, main_);
  last_batch_ = n;
  for (size_t j = 0; j < outputs_.size(); ++j) {
    const int64_t sz = tensors_[size_t(outputs_[j])].size;
    std::memcpy(out[j], main_.out[j], sizeof(float) * size_t(n * sz));
  }
}

GraphMemory Graph::memory_info() {
  GraphMemory m;
  int64_t cap = 0;
  for (auto& p : plans_)
    if (p) cap = std::max(cap, p->cap);
  {
    std::lock_guard<std::mutex> lk(ctx_mu_);
    for (const auto& c : idle_) cap = std::max(cap, c->plan.cap);
  }
  m.capacity = cap = std::max<int64_t>(cap, 1);
  int64_t* dst[3] = {&m.train_bytes, &m.predict_bytes, &m.input_grad_bytes};
  for (int mode = 0; mode < 3; ++mode) {
    if (!plans_[mode]) plans_[mode] = std::make_unique<Plan>();
    Plan& P = *plans_[mode];
    if (!P.built) build_plan(Mode(mode), P);  // leaves it unbound: laid out at its next use
    std::vector<int64_t> offs;
    *dst[mode] = int64_t(sizeof(float)) * layout_offsets(P.bufs, cap, offs);
    m.allocated_bytes += int64_t(sizeof(float)) * int64_t(P.arena.size());
  }
  {
    std::lock_guard<std::mutex> lk(ctx_mu_);
    for (const auto& c : idle_) m.allocated_bytes += int64_t(sizeof(float)) * int64_t(c->plan.arena.size());
  }
  auto bytes = [](const auto& v) { return int64_t(v.size() * sizeof(v[0])); };
  for (const auto& v : gather_) m.io_bytes += bytes(v);
  for (const auto& v : tgt_buf_) m.io_bytes += bytes(v);
  for (const auto& v : lab_buf_) m.io_bytes += bytes(v);
  for (const auto& v : sw_buf_) m.io_bytes += bytes(v);
  for (const GraphParam& p : params_) {
    m.param_bytes += p.size * int64_t(sizeof(float));
    m.grad_bytes += bytes(p.grad);
    for (const auto& s : p.slots) m.slot_bytes += bytes(s);
  }
  return m;
}

}  // namespace pynn::nn
