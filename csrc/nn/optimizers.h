// Optimizers as fused one-pass updates: for each parameter tensor, one loop reads the
// gradient and the optimizer's slots and writes the new parameter and slots.
//
// Keras 3 semantics and defaults. Per step, the engine calls
//   1. scale = clip_scale(...)  (clipnorm per tensor / global_clipnorm over all tensors)
//   2. optimizer_update(cfg, state, t, param, grad, slots, n, scale)  for each tensor
// Gradients are multiplied by `scale`, then clipped element-wise to [-clipvalue, clipvalue]
// when clipvalue > 0, inside the update loop (no extra pass). weight_decay > 0 applies Keras's
// decoupled decay  w -= lr * weight_decay * w  before the update (AdamW's default 0.004).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/descriptors.h"

namespace pynn::nn {

enum class OptKind : int { sgd = 0, adagrad, adadelta, rmsprop, adam, adamw, nadam, adamax };

// An optimizer's settings. The values come from the optimizer table below (Keras defaults
// for what a caller leaves out); the zeros here are placeholders, not defaults.
struct OptConfig {
  OptKind kind = OptKind::sgd;
  float learning_rate = 0.0f;
  float momentum = 0.0f;          // sgd, rmsprop
  bool nesterov = false;          // sgd
  float rho = 0.0f;               // rmsprop, adadelta
  bool centered = false;          // rmsprop
  float beta_1 = 0.0f;            // adam family
  float beta_2 = 0.0f;
  float epsilon = 0.0f;
  bool amsgrad = false;           // adam, adamw
  float initial_accumulator_value = 0.0f;  // adagrad
  float weight_decay = 0.0f;      // 0 = off
  float clipnorm = 0.0f;          // 0 = off
  float clipvalue = 0.0f;         // 0 = off
  float global_clipnorm = 0.0f;   // 0 = off
};

// One argument of an optimizer: its description (Keras name, default, range; a nullable one
// takes None for "off", held as 0) and the OptConfig member it sets (exactly one of `real`
// and `flag` is set).
struct OptFieldDesc {
  ParamDesc param;
  bool explicit_arg;  // named in the Python constructor; else taken through **kwargs
  float OptConfig::*real;
  bool OptConfig::*flag;
};

// The descriptor of one optimizer: Keras's string and class names, and every argument in the
// order of the Keras constructor (the explicit ones first, then those every optimizer takes
// through **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm). At most one of
// clipnorm and global_clipnorm may be set, as in Keras.
struct OptimizerDesc {
  const char* name;
  const char* class_name;
  OptKind kind;
  std::vector<OptFieldDesc> fields;
};

// The optimizer table, in OptKind order.
const std::vector<OptimizerDesc>& optimizer_descriptors();
const OptimizerDesc& optimizer_descriptor(OptKind kind);
// By Keras name, case-insensitively ("adam", "Adam"); nullptr when unknown.
const OptimizerDesc* find_optimizer(const std::string& name);
// The Keras defaults of every field.
OptConfig optimizer_defaults(const OptimizerDesc& desc);
// Empty when the settings satisfy the table (every field in its range, the clipping rule),
// else a message naming the field, its valid range and the value.
std::string optimizer_config_error(const OptConfig& cfg);

// Number of float arrays of the parameter's size the optimizer keeps per parameter.
int optimizer_num_slots(const OptConfig& cfg);
// Initial value of slot s (e.g. Adagrad's accumulator starts at initial_accumulator_value).
float optimizer_slot_init(const OptConfig& cfg, int s);

// Per-optimizer scalar state shared by all tensors (e.g. Nadam's running momentum product).
struct OptScalars {
  double u_product = 1.0;
};
// Called once per step before the tensor updates (t is the 1-based step number).
void optimizer_begin_step(const OptConfig& cfg, OptScalars& state, int64_t t);

void optimizer_update(const OptConfig& cfg, const OptScalars& state, int64_t t, float* param,
                      const float* grad, float* const* slots, int64_t n, float grad_scale);

// Sum of squares of a gradient (double, fixed order) for norm clipping.
double sum_of_squares(const float* g, int64_t n);
// The factor that brings a gradient of norm `norm` within `max_norm` (1 when already within).
inline float clip_scale(double norm, float max_norm) {
  return (max_norm > 0.0f && norm > max_norm) ? float(max_norm / norm) : 1.0f;
}

// The shortest decimal (at most 9 significant digits) that rounds to f, as a double: the
// value the user wrote (0.999 for 0.999f). Keras keeps hyperparameters as Python floats and
// forms 1 - beta_2, 1 - rho and the bias corrections in double before rounding to float32;
// 1 - 0.999f instead would be off by 1.3e-5 relative, so the per-step scalars start from this.
double decimal_value(float f);

// Keras's name of slot s for this configuration (nullptr when s is out of range). Slot order
// per kind (what optimizer_update expects):
//   sgd      [momentum]                    (only when momentum > 0)
//   adagrad  accumulator
//   adadelta accumulated_grad, accumulated_delta_var
//   rmsprop  velocity, [momentum], [average_gradient]  (momentum > 0, centered)
//   adam(w)  momentum, velocity, [velocity_hat]        (amsgrad)
//   nadam    momentum, velocity
//   adamax   momentum, norm
const char* optimizer_slot_name(const OptConfig& cfg, int s);

// One whole Keras step over a set of tensors: begin_step, then clipping (clipnorm per tensor,
// global_clipnorm over all of them; a non-finite global norm makes the scale NaN, as in
// Keras), then the fused update of each tensor. slots[i] points at tensor i's slot arrays.
// `side`, when given, is other work that may share the update's parallel region: it is
// called as side(task, ntasks) once by every task of the region (side(0, 1) when the update
// runs on one thread), and must split its work by (task, ntasks) alone.
using SideWork = void (*)(void* ctx, int task, int ntasks);
void optimizer_apply(const OptConfig& cfg, OptScalars& state, int64_t t, float* const* params,
                     const float* const* grads, float* const* const* slots, const int64_t* sizes,
                     int64_t count, SideWork side = nullptr, void* side_ctx = nullptr);

}  // namespace pynn::nn
