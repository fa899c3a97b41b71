// The graph engine: a compiled functional model over N-D tensors (pynn._core.Graph).
//
// A Graph is a list of nodes in topological order over numbered tensors, built one call at a
// time (add_input, add_param, add_node); each node's op (nn/op.h) checks shapes as it is
// added. Parameters are the caller's float32 arrays, read and written in place; the graph
// owns one gradient buffer per learnable parameter and the optimizer slots. A training step
// is one call: gather the batch rows, forward over the schedule, per-output losses, backward
// over the reverse schedule, L1/L2 penalties, one fused optimizer update.
//
// Invariants:
//  - Tensors are row-major with the batch axis first; shapes here are per sample. A node may
//    only read tensors that exist when it is added, so the node order is a topological order
//    and the graph has no cycle.
//  - Memory: each execution mode (train, infer, input-gradient) has one float arena, laid out
//    from buffer lifetimes on the node schedule (forward i at time i, losses at N, backward i
//    at 2N - i) by placing the largest buffers first at the lowest offset that no buffer with
//    an overlapping lifetime uses. The arena is sized for the largest batch seen and never
//    shrinks; views (reshape, flatten, identity, dropout at inference, a softmax fused into
//    the loss) share their input's storage. After the first step of a given size nothing is
//    allocated: plans and pointer tables are rebuilt only when the graph, the losses or a
//    trainable flag change.
//  - Gradients: a tensor gets a gradient buffer only if a learnable parameter (or, for
//    input_gradient, an input) is upstream of it and a loss (or seed) downstream. The loss
//    contribution comes first, then consumers in reverse node order; the first contribution
//    writes, the later ones add, so sums run in a fixed order. The same holds for a parameter
//    shared by several nodes. Frozen parameters get no gradient; a node with nothing to
//    compute runs no backward.
//  - Results do not depend on the thread count (the kernels' sums have fixed orders) and
//    randomness is counter-based on (seed, step * 4096 + node index), as in nn::Network.
//  - Threads: predict() may run on several threads at once (each call takes an inference
//    context of its own: plan, arena and pointer tables, kept for reuse); every other call
//    needs the graph to itself. The caller arranges that (a reader-writer lock in the
//    bindings). Ops' forward() therefore never writes to the op object.
//  - Loss fusion as in Network: an output produced by a softmax (sigmoid) whose loss is
//    (sparse) categorical (binary) cross-entropy on probabilities, and that no node reads,
//    is computed as logits and the loss runs from logits; outputs reported are probabilities.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nn/losses.h"
#include "nn/op.h"
#include "nn/optimizers.h"

namespace pynn::nn {

struct GraphParam {
  std::string name;
  Shape shape;
  int64_t size = 0;
  float* value = nullptr;                 // the caller's array (not a copy)
  std::vector<float> grad;                // allocated once a node uses it as a weight
  std::vector<std::vector<float>> slots;  // optimizer state (weights only)
  bool flag = true;                       // the trainable flag (Keras's trainable)
  bool weight = false;                    // some node differentiates it
  bool state = false;                     // some node updates it as state (moving stats)
  float l1 = 0.0f, l2 = 0.0f;
  bool trainable() const { return weight && flag; }
};

struct GraphLoss {
  bool has = false;
  LossConfig cfg;      // as given
  double weight = 1.0;  // Keras's loss_weights are Python floats: the total is formed in double
  // Index of another output holding this loss's mask, one value per loss row of a sample
  // (nonzero: the row counts), or -1. As Keras: the loss is sum(w l) / (rows kept) and
  // accuracy counts the kept rows only.
  int mask_output = -1;
  // Keras's mean reductions scale kept rows by rows / kept; its "sum" reduction does not (the
  // caller then scales the weights by the rows itself).
  bool mask_rescale = true;
};

// What one train/test step reads; arrays are full data sets, idx picks the batch rows.
struct StepData {
  const float* const* x = nullptr;         // per input: rows x size(input)
  const float* const* y = nullptr;         // per output: dense targets, or null
  const int32_t* const* labels = nullptr;  // per output: sparse labels, or null
  const float* const* sw = nullptr;        // per output: per-row sample weights, or null
  const char* sw_steps = nullptr;          // per output: 1 when sw has a weight per loss row
                                           // (rows x lead, Keras's temporal weights), else 0
  const int64_t* idx = nullptr;            // batch rows (null: rows 0..batch-1)
  int64_t batch = 0;
};

struct GraphMemory {
  int64_t capacity = 0;          // rows the figures below are for
  int64_t train_bytes = 0;       // training arena (activations, saved values, gradients)
  int64_t predict_bytes = 0;     // inference arena
  int64_t input_grad_bytes = 0;  // input-gradient arena
  int64_t allocated_bytes = 0;   // arenas allocated now (all modes)
  int64_t io_bytes = 0;          // gathered batch rows, targets, labels, weights
  int64_t param_bytes = 0, grad_bytes = 0, slot_bytes = 0;
};

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // --- building ----------------------------------------------------------------------------
  int add_input(const Shape& shape);
  int add_param(float* value, const Shape& shape, const std::string& name, bool trainable);
  // Returns the output tensor id.
  int add_node(const std::string& op, const std::vector<int>& inputs,
               const std::vector<int>& params, std::map<std::string, AttrValue> attrs,
               const std::string& name);
  void set_outputs(const std::vector<int>& tensors);
  // One per output (has = false: no loss on that output).
  void set_losses(const std::vector<GraphLoss>& losses);
  void set_regularization(int pid, float l1, float l2);
  void set_trainable(int pid, bool trainable);
  void set_optimizer(const OptConfig& cfg);

  // --- reading -----------------------------------------------------------------------------
  int num_tensors() const { return int(tensors_.size()); }
  int num_params() const { return int(params_.size()); }
  int num_nodes() const { return int(nodes_.size()); }
  const Shape& tensor_shape(int t) const { return tensors_[size_t(t)].shape; }
  int64_t tensor_size(int t) const { return tensors_[size_t(t)].size; }
  const std::vector<int>& inputs() const { return inputs_; }
  const std::vector<int>& outputs() const { return outputs_; }
  GraphParam& param(int pid) { return params_[size_t(pid)]; }
  const GraphLoss& loss(int j) const { return losses_[size_t(j)]; }
  bool has_losses() const { return has_losses_; }
  bool has_optimizer() const { return has_opt_; }
  // Rows per sample of output j's loss (prod(shape[:-1])) and its classes (shape[-1]).
  int64_t output_lead(int j) const;
  int64_t output_classes(int j) const;
  // Bumped by every structural change; the bindings use it to detect a graph changed by
  // another thread between argument checks and the computation.
  uint64_t version() const { return version_; }

  float learning_rate() const { return opt_.learning_rate; }
  void set_learning_rate(float lr) { opt_.learning_rate = lr; }
  int64_t iterations() const { return step_; }
  void set_iterations(int64_t t) { step_ = t; }
  OptScalars& optimizer_scalars() { return opt_scalars_; }

  // --- running -----------------------------------------------------------------------------
  void train_step(const StepData& d);
  // The same step; `next` (or null) is the step that will follow with the same arrays, whose
  // batch rows are then gathered inside the optimizer update's parallel region (the rows of
  // this step are no longer read by then) instead of by one thread at the start of `next`.
  void train_step(const StepData& d, const StepData* next);
  void test_step(const StepData& d);
  // Results of the last train/test step.
  double step_total() const { return total_; }
  const std::vector<double>& step_losses() const { return step_losses_; }
  const std::vector<int64_t>& step_correct() const { return step_correct_; }
  // Output j of the last forward (probabilities when fused), last_batch() rows.
  const float* output_value(int j) const { return main_.out[size_t(j)]; }
  int64_t last_batch() const { return last_batch_; }

  // x: per input, n contiguous rows; out: per output, n rows. Safe to call from several
  // threads at once (and only then: nothing else may run meanwhile).
  void predict(const float* const* x, int64_t n, float* const* out, int64_t chunk);
  // predict runs a chain of dense layers on the fused path from this many rows (fewer: the
  // per-call weight packing costs more than the direct kernels save).
  static constexpr int64_t kChainMinRows = 128;
  // d(sum_j sum out_j * seed_j) / d x_i in inference mode; dx: per input, n rows.
  void input_gradient(const float* const* x, int64_t n, const float* const* seeds,
                      float* const* dx);
  // Keras's `model(x, training=True)`: one forward pass in training mode (dropout and noise
  // active, batch statistics, BatchNormalization's moving statistics updated), no loss, no
  // update. The random ops draw from streams of their own for each `call` (never those of a
  // training step), so calls with different numbers differ and a call number repeats.
  void forward_train(const float* const* x, int64_t n, float* const* out, uint64_t call);

  GraphMemory memory_info();
  // Layers of the fused dense chain predict runs (0: the graph takes the general path).
  int dense_chain_layers();

 private:
  struct Tensor {
    Shape shape;
    int64_t size = 0;            // elements per sample
    int producer = -1;           // node index, -1 for a graph input
    int input = -1;              // index in inputs_, -1 for a node output
    std::vector<int> consumers;  // node indices, once per input slot that reads it
  };
  struct Node {
    std::string op_name, name;
    std::unique_ptr<Op> op;
    std::vector<int> inputs;
    int output = -1;
    std::vector<int> params;
  };
  // The pointer tables of one running call, sized with the graph and refilled by every call.
  struct Frame {
    std::vector<const float*> tptr;  // value of each tensor
    std::vector<float*> gptr;        // gradient of each tensor (null: none)
    std::vector<const float*> out;   // each output as reported (probabilities when fused)
    std::vector<std::vector<const float*>> x;  // per node: its inputs
    std::vector<std::vector<float*>> p, dx, dp;  // per node: params, input and param grads
    double added_loss = 0.0;  // loss terms the ops added in the last forward
    bool wants_loss = true;   // false for predict's frames: ops skip their loss terms
  };
  struct Plan;
  struct InferContext;
  enum Mode { kTrain = 0, kInfer = 1, kGrad = 2 };

  void changed();               // structure changed: plans and fusion are stale
  void invalidate_plans();
  void decide_fusion();
  Plan& plan(Mode m, int64_t rows);  // built and laid out for at least `rows`
  // Only reads the graph: safe from concurrent predicts, each on its own Plan.
  void build_plan(Mode m, Plan& p) const;
  void bind_plan(Plan& p, int64_t rows) const;  // laid out for at least `rows`
  void size_frame(Frame& f) const;
  static int64_t layout(Plan& p, int64_t cap);
  void rebuild_update_tables();
  void bind_inputs(const Plan& p, const float* const* x, int64_t row0, int64_t n,
                   const int64_t* idx, Frame& f, bool gathered = false);
  void gather_rows(const float* const* x, const int64_t* idx, int64_t r0, int64_t r1);
  void forward(Plan& p, int64_t n, Frame& f) const { forward(p, n, f, uint64_t(step_)); }
  // stream_step: the random ops' stream is stream_step * 4096 + node index.
  void forward(Plan& p, int64_t n, Frame& f, uint64_t stream_step) const;
  void backward(Plan& p, int64_t n);
  void compute_probs(Plan& p, int64_t n, Frame& f) const;
  std::unique_ptr<InferContext> take_context();
  void predict_rows(const float* const* x, int64_t r0, int64_t n, float* const* out,
                    int64_t chunk);
  void give_context(std::unique_ptr<InferContext> c);
  void build_chain(InferContext& c) const;
  // false: not a dense chain, or one on which n rows do not pay (predict then runs the ops)
  bool predict_chain(const float* x, int64_t n, float* out);
  void losses(const StepData& d, bool want_grad);
  const float* masked_weights(int j, const float* keep, const float* sw, int64_t rows);
  void check_labels(const StepData& d) const;

  std::vector<Tensor> tensors_;
  std::vector<GraphParam> params_;
  std::vector<Node> nodes_;
  std::vector<int> inputs_;
  std::vector<int> outputs_;
  std::vector<GraphLoss> losses_;
  std::vector<LossConfig> used_loss_;  // per output, from_logits set when fused
  std::vector<char> fused_;            // per output
  bool has_losses_ = false;
  uint64_t version_ = 0;

  OptConfig opt_;
  OptScalars opt_scalars_;
  bool has_opt_ = false;
  bool tables_dirty_ = true;
  int64_t step_ = 0;
  std::vector<float*> upd_params_;
  std::vector<const float*> upd_grads_;
  std::vector<int64_t> upd_sizes_;
  std::vector<float* const*> upd_slots_;
  std::vector<std::vector<float*>> slot_ptrs_;  // per param

  std::unique_ptr<Plan> plans_[3];
  // Per-call state (sized when the graph or capacity changes, reused every step).
  Frame main_;  // train/test steps and input gradients
  std::mutex ctx_mu_;  // idle_
  std::vector<std::unique_ptr<InferContext>> idle_;  // predict's contexts not in use
  std::vector<std::vector<float>> gather_;   // per input: gathered rows
  // The batch gather_ already holds for the next train_step (train_step(d, next)): valid
  // only for that call, with these arrays and rows.
  struct Prefetched {
    const float* const* x = nullptr;
    const int64_t* idx = nullptr;
    int64_t batch = 0;
  } prefetched_;
  std::vector<std::vector<float>> tgt_buf_;  // per output
  std::vector<std::vector<int32_t>> lab_buf_;
  std::vector<std::vector<float>> sw_buf_;
  std::vector<double> step_losses_;
  std::vector<int64_t> step_correct_;
  double total_ = 0.0;
  int64_t last_batch_ = 0;
};

}  // namespace pynn::nn
