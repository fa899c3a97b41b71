// The op interface of the graph engine (nn/graph.h) and the registry that maps op names to
// op classes.
//
// An op is one node's computation on N-D tensors. Shapes are per sample (the batch axis is
// implicit and first); every tensor is row-major and contiguous, so a tensor of per-sample
// shape (d0, ..., dk) in a batch of n is an (n * d0 * ... * d(k-1), dk) matrix as well.
//
// Life of an op object:
//   1. made by make_op(name) (one object per node);
//   2. configure(): parses and validates its attributes, checks the input and parameter
//      shapes and returns the output shape. Errors are std::invalid_argument whose message
//      names the node, and on a shape mismatch both shapes;
//   3. the graph asks, per execution mode, what the op needs: scratch buffers, whether its
//      output is a view of its input, which forward values its backward reads;
//   4. forward()/backward() run with pointers the graph planned (no allocation inside).
//
// Invariants every op keeps:
//  - forward() writes its whole output (unless it aliases its input, then it writes nothing)
//    and never writes its inputs; it may update "state" parameters (batchnorm statistics).
//  - backward() receives dy, the complete gradient of its output, and may overwrite it (the
//    graph gives each node its own dy buffer and reads it after nobody else). For each input
//    k with dx[k] non-null it writes (dx_acc[k] false) or adds to (true) dx[k]; inputs are
//    handled in ascending k so that a tensor fed twice into one node (add(x, x)) gets its
//    contributions in a fixed order; dx[k] never aliases dy. Likewise for each parameter k
//    with dparam[k] non-null. Summation orders do not depend on the thread count.
//  - Randomness comes only from (seed attribute, FwdArgs::stream, element index).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace pynn::nn {

using Shape = std::vector<int64_t>;

// "(2, 3)" (or "()" for a scalar shape).
std::string shape_str(const Shape& s);
// Product of the dimensions (1 for ()), saturating at INT64_MAX instead of overflowing.
int64_t shape_size(const Shape& s);

// One attribute value as it comes from Python (bools arrive as int64).
using AttrValue =
    std::variant<double, int64_t, std::string, std::vector<double>, std::vector<int64_t>>;

// The attributes of one node. Each op reads what it knows through the typed getters, which
// record every key asked for; the graph then rejects keys nobody asked for (unknown()).
class Attrs {
 public:
  Attrs() = default;
  Attrs(std::map<std::string, AttrValue> values, std::string where)
      : values_(std::move(values)), where_(std::move(where)) {}

  bool has(const std::string& key) const;
  // Scalars. get_int refuses a non-integral double; get_bool accepts 0/1.
  double get_double(const std::string& key, double def) const;
  int64_t get_int(const std::string& key, int64_t def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  std::vector<double> get_doubles(const std::string& key) const;  // empty when absent
  std::vector<int64_t> get_ints(const std::string& key) const;    // empty when absent
  // Required variants: throw when absent.
  int64_t require_int(const std::string& key) const;
  std::vector<int64_t> require_ints(const std::string& key) const;

  // Keys given but never asked for, and the keys that were asked for (the op's vocabulary).
  std::vector<std::string> unknown() const;
  const std::set<std::string>& known() const { return asked_; }
  // "node 'dense_1' (dense)": the prefix of every error message about this node.
  const std::string& where() const { return where_; }

 private:
  const AttrValue* find(const std::string& key) const;
  [[noreturn]] void type_error(const std::string& key, const char* expected) const;
  std::map<std::string, AttrValue> values_;
  std::string where_;
  mutable std::set<std::string> asked_;
};

// How long a scratch buffer must keep its contents.
enum class ScratchLife {
  forward,   // only during this node's forward
  backward,  // only during this node's backward
  saved,     // written by forward, read by backward (the whole span between them)
};

// A scratch buffer of per_row * rows + fixed floats (rows = batch size).
struct ScratchNeed {
  int64_t per_row = 0;
  int64_t fixed = 0;
  ScratchLife life = ScratchLife::forward;
};

// What the graph asks of a node's backward in a given plan.
struct BackwardNeeds {
  std::vector<char> dx;      // per input: its gradient is wanted
  std::vector<char> dparam;  // per parameter: its gradient is wanted
};

struct FwdArgs {
  int64_t n = 0;                    // batch rows
  const float* const* x = nullptr;  // per input
  float* y = nullptr;               // the output (unused when the op aliases)
  float* const* param = nullptr;    // per parameter (state parameters are updated in place)
  float* const* scratch = nullptr;  // per declared scratch, in declaration order
  bool training = false;            // this node runs in training mode
  uint64_t stream = 0;              // random stream of this (step, node)
  double* added_loss = nullptr;     // an op that adds a term to the loss (Keras's activity
                                    // regularization) adds it here
};

struct BwdArgs {
  int64_t n = 0;
  const float* const* x = nullptr;  // forward inputs (only those needs_input() asked for)
  const float* y = nullptr;         // forward output (when needs_output())
  float* dy = nullptr;              // gradient of the output; the op may overwrite it
  float* const* dx = nullptr;       // per input: null when not wanted
  const char* dx_acc = nullptr;     // per input: add into dx instead of writing
  float* const* param = nullptr;
  float* const* dparam = nullptr;   // per parameter: null when not wanted
  const char* dparam_acc = nullptr;
  float* const* scratch = nullptr;
  bool training = false;            // the forward ran in training mode
};

struct DenseDesc;  // nn/dense_chain.h

class Op {
 public:
  virtual ~Op() = default;

  // Parses attrs and checks shapes; returns the output shape. Called once, before anything
  // else. `in` and `params` are per-sample input shapes and full parameter shapes.
  virtual Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                          const std::vector<Shape>& params) = 0;

  // Parameter k is state that forward updates (batchnorm moving statistics), not a weight:
  // it gets no gradient and no optimizer slots.
  virtual bool param_is_state(int k) const { return false; }
  // The node runs in inference mode even in training when all its parameters are frozen
  // (Keras's frozen BatchNormalization).
  virtual bool frozen_means_inference() const { return false; }

  // forward adds a term to the loss (FwdArgs::added_loss). In a training plan such a node is
  // a gradient root even when no node reads its output (Keras penalizes every output of a
  // layer, used or not); backward then gets dy == nullptr for an output that nothing
  // downstream differentiates. The term's gradient belongs to training alone: backward with
  // training false (input_gradient) passes dy through.
  virtual bool adds_loss() const { return false; }
  // The output is input 0's values whenever no loss is wanted (an activity penalty): predict's
  // fused dense chain passes over such a node.
  virtual bool identity_without_loss() const { return false; }

  // The output is input 0 itself (a view: same elements, same order). The graph then gives
  // the output input 0's storage, skips forward, and passes gradients straight through.
  virtual bool aliases(bool training) const { return false; }

  // Scratch buffers in this mode (backward: the node will run its backward in this plan).
  virtual std::vector<ScratchNeed> scratch(bool training, bool backward) const { return {}; }
  // Which forward values backward reads, given what is wanted of it.
  virtual bool needs_input(int k, bool training, const BackwardNeeds& needs) const {
    return true;
  }
  virtual bool needs_output(bool training, const BackwardNeeds& needs) const { return false; }

  virtual void forward(const FwdArgs& a) = 0;
  virtual void backward(const BwdArgs& a) = 0;

  // Loss fusion: the activation at the end of this op ("softmax", "sigmoid" or "") and the
  // switch that makes the op emit the values before it (logits) instead.
  virtual std::string tail_activation() const { return ""; }
  virtual void set_emit_logits(bool on) {}

  // The fused MLP predict path (nn/dense_chain.h): true, with *d filled in, when this op at
  // inference is a float32 dense layer over one axis (kernel param 0, bias param 1 if any).
  virtual bool dense_desc(DenseDesc* d) const { return false; }
};

using OpFactory = std::unique_ptr<Op> (*)();

// Registers `name` (called by PYNN_REGISTER_OP at static initialisation); returns true.
bool register_op(const char* name, OpFactory factory);
// A new op of that name; std::invalid_argument listing the known names when unknown.
std::unique_ptr<Op> make_op(const std::string& name);
std::vector<std::string> op_names();

// Small helpers shared by the op files.
// Writes (acc false) or adds (acc true) src into dst, n floats.
void store_or_add(float* dst, const float* src, int64_t n, bool acc);
// Throws std::invalid_argument("<where>: <msg>").
[[noreturn]] void op_error(const Attrs& attrs, const std::string& msg);
// Checks the input count (min..max inputs, max < 0 for unbounded) and parameter count.
void check_arity(const Attrs& attrs, const std::vector<Shape>& in, int min_in, int max_in,
                 const std::vector<Shape>& params, int min_p, int max_p);
// Resolves a per-sample axis (negative from the end) of a rank-r shape.
int64_t resolve_axis(const Attrs& attrs, const char* what, int64_t axis, int64_t rank);

}  // namespace pynn::nn

#define PYNN_OP_CONCAT2(a, b) a##b
#define PYNN_OP_CONCAT(a, b) PYNN_OP_CONCAT2(a, b)
// One line at the bottom of an op file: PYNN_REGISTER_OP("dense", DenseOp)
#define PYNN_REGISTER_OP(NAME, CLASS)                                                    \
  namespace {                                                                            \
  [[maybe_unused]] const bool PYNN_OP_CONCAT(pynn_op_registered_, __COUNTER__) =         \
      ::pynn::nn::register_op(NAME, []() -> std::unique_ptr<::pynn::nn::Op> {            \
        return std::make_unique<CLASS>();                                                \
      });                                                                                \
  }
