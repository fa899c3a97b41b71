// Optimizer steps: the per-step scalars (in double), the choice of loop by instruction set, the
// split among threads, and norm clipping. The loops themselves are in optimizers_kernels.h.
#define PYNN_OPTIMIZER_KERNELS_BODY
#include "nn/optimizers.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "common/cpu.h"
#include "common/parallel.h"
#include "nn/optimizers_kernels.h"

namespace pynn::nn {

void update_generic(const UpdateCoeffs& c, float* w, const float* g, float* const* s, int64_t n) {
  update_any(c, w, g, s, n);
}

namespace {

// Below this many elements a tensor is updated on one thread: a fork/join costs a few
// microseconds, about what one core needs for 32k Adam elements.
constexpr int64_t kParallelChunk = int64_t(1) << 15;

UpdateKernel pick_kernel() {
#ifdef PYNN_X86
  switch (active_arch()) {
    case Arch::avx512: return update_avx512;
    case Arch::avx2: return update_avx2;
    default: break;
  }
#endif
  return update_generic;
}

UpdateKernel kernel() {
  static const UpdateKernel k = pick_kernel();
  return k;
}

// Nadam's u_t = beta_1 * (1 - 0.5 * 0.96^t).
double nadam_u(double beta_1, int64_t t) { return beta_1 * (1.0 - 0.5 * std::pow(0.96, double(t))); }

UpdateCoeffs coeffs(const OptConfig& cfg, const OptScalars& state, int64_t t, float scale) {
  UpdateCoeffs c;
  const double rho = decimal_value(cfg.rho);
  const double beta_1 = decimal_value(cfg.beta_1);
  const double beta_2 = decimal_value(cfg.beta_2);
  c.kind = cfg.kind;
  c.lr = cfg.learning_rate;
  c.wd = cfg.weight_decay > 0.0f ? cfg.weight_decay : 0.0f;
  c.scale = scale;
  c.clip = cfg.clipvalue > 0.0f ? cfg.clipvalue : std::numeric_limits<float>::infinity();
  c.momentum = cfg.momentum;
  c.rho = cfg.rho;
  c.one_minus_rho = float(1.0 - rho);
  c.epsilon = cfg.epsilon;
  c.one_minus_beta_1 = float(1.0 - beta_1);
  c.one_minus_beta_2 = float(1.0 - beta_2);
  c.beta_2 = cfg.beta_2;
  c.nesterov = cfg.nesterov;
  c.centered = cfg.centered;
  c.amsgrad = cfg.amsgrad;
  c.has_momentum = cfg.momentum > 0.0f;
  const double td = double(t);
  const double b1p = std::pow(beta_1, td);
  const double b2p = std::pow(beta_2, td);
  switch (cfg.kind) {
    case OptKind::adam:
    case OptKind::adamw:
      // Keras folds both bias corrections into the step size instead of forming m_hat, v_hat.
      c.alpha = float(decimal_value(cfg.learning_rate) * std::sqrt(1.0 - b2p) / (1.0 - b1p));
      break;
    case OptKind::nadam: {
      const double u_t = nadam_u(beta_1, t);
      const double u_next = nadam_u(beta_1, t + 1);
      const double prod = state.u_product;  // already includes u_t (optimizer_begin_step)
      c.m_coef = float(u_next / (1.0 - prod * u_next));
      c.g_coef = float((1.0 - u_t) / (1.0 - prod));
      c.v_coef = float(1.0 / (1.0 - b2p));
      break;
    }
    case OptKind::adamax: c.bias_1 = float(1.0 - b1p); break;
    default: break;
  }
  return c;
}

}  // namespace

namespace {

OptFieldDesc real_field(ParamDesc p, float OptConfig::*m, bool explicit_arg = true) {
  return {p, explicit_arg, m, nullptr};
}
OptFieldDesc bool_field(const char* name, bool def, bool OptConfig::*m) {
  return {bool_param(name, def), true, nullptr, m};
}

// The arguments every Keras optimizer takes through **kwargs (AdamW names weight_decay in its
// signature instead, with a default of its own).
void add_shared(std::vector<OptFieldDesc>& f, bool with_weight_decay) {
  if (with_weight_decay)
    f.push_back(real_field(optional_param("weight_decay", kNonNegative), &OptConfig::weight_decay,
                           false));
  f.push_back(real_field(optional_param("clipnorm", kPositive), &OptConfig::clipnorm, false));
  f.push_back(real_field(optional_param("clipvalue", kPositive), &OptConfig::clipvalue, false));
  f.push_back(real_field(optional_param("global_clipnorm", kPositive),
                         &OptConfig::global_clipnorm, false));
}

OptimizerDesc make(const char* name, const char* class_name, OptKind kind, double lr,
                   std::vector<OptFieldDesc> own, bool shared_weight_decay = true) {
  std::vector<OptFieldDesc> f;
  // The engine takes a learning rate of 0 (nothing moves); pynn.optimizers asks for > 0.
  f.push_back(real_field(real_param("learning_rate", lr, kNonNegative), &OptConfig::learning_rate));
  f.insert(f.end(), own.begin(), own.end());
  add_shared(f, shared_weight_decay);
  return {name, class_name, kind, std::move(f)};
}

std::vector<OptimizerDesc> build_optimizer_table() {
  auto epsilon = [] {
    return real_field(real_param("epsilon", 1e-7, kPositive), &OptConfig::epsilon);
  };
  auto beta_1 = [] { return real_field(real_param("beta_1", 0.9, kUnitOpen), &OptConfig::beta_1); };
  auto beta_2 = [] {
    return real_field(real_param("beta_2", 0.999, kUnitOpen), &OptConfig::beta_2);
  };
  // Keras 3's constructors, argument for argument (order and defaults).
  return {
      make("sgd", "SGD", OptKind::sgd, 0.01,
           {real_field(real_param("momentum", 0.0, kUnitClosed), &OptConfig::momentum),
            bool_field("nesterov", false, &OptConfig::nesterov)}),
      make("adagrad", "Adagrad", OptKind::adagrad, 0.001,
           {real_field(real_param("initial_accumulator_value", 0.1, kNonNegative),
                       &OptConfig::initial_accumulator_value),
            epsilon()}),
      make("adadelta", "Adadelta", OptKind::adadelta, 0.001,
           {real_field(real_param("rho", 0.95, kUnitOpen), &OptConfig::rho), epsilon()}),
      make("rmsprop", "RMSprop", OptKind::rmsprop, 0.001,
           {real_field(real_param("rho", 0.9, kUnitOpen), &OptConfig::rho),
            real_field(real_param("momentum", 0.0, kUnitOpen), &OptConfig::momentum), epsilon(),
            bool_field("centered", false, &OptConfig::centered)}),
      make("adam", "Adam", OptKind::adam, 0.001,
           {beta_1(), beta_2(), epsilon(), bool_field("amsgrad", false, &OptConfig::amsgrad)}),
      make("adamw", "AdamW", OptKind::adamw, 0.001,
           {real_field(real_param("weight_decay", 0.004, kNonNegative), &OptConfig::weight_decay),
            beta_1(), beta_2(), epsilon(), bool_field("amsgrad", false, &OptConfig::amsgrad)},
           false),
      make("nadam", "Nadam", OptKind::nadam, 0.001, {beta_1(), beta_2(), epsilon()}),
      make("adamax", "Adamax", OptKind::adamax, 0.001, {beta_1(), beta_2(), epsilon()}),
  };
}

}  // namespace

const std::vector<OptimizerDesc>& optimizer_descriptors() {
  static const std::vector<OptimizerDesc> table = [] {
    std::vector<OptimizerDesc> t = build_optimizer_table();
    for (size_t i = 0; i < t.size(); ++i)  // optimizer_descriptor() indexes by kind
      if (size_t(t[i].kind) != i) throw std::logic_error("optimizer table out of OptKind order");
    return t;
  }();
  return table;
}

const OptimizerDesc& optimizer_descriptor(OptKind kind) {
  return optimizer_descriptors()[size_t(kind)];
}

const OptimizerDesc* find_optimizer(const std::string& name) {
  std::string lower = name;
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& d : optimizer_descriptors())
    if (lower == d.name) return &d;
  return nullptr;
}

OptConfig optimizer_defaults(const OptimizerDesc& desc) {
  OptConfig c;
  c.kind = desc.kind;
  for (const OptFieldDesc& f : desc.fields) {
    if (f.real != nullptr) c.*f.real = f.param.default_is_none ? 0.0f : float(f.param.default_value);
    else c.*f.flag = f.param.default_value != 0.0;
  }
  return c;
}

std::string optimizer_config_error(const OptConfig& cfg) {
  const OptimizerDesc& desc = optimizer_descriptor(cfg.kind);
  for (const OptFieldDesc& f : desc.fields) {
    if (f.real == nullptr) continue;
    const float v = cfg.*f.real;
    if (f.param.nullable && v == 0.0f) continue;  // off
    const std::string err = real_param_error(f.param, double(v));
    if (!err.empty()) return std::string(desc.name) + ": " + err;
  }
  if (cfg.clipnorm > 0.0f && cfg.global_clipnorm > 0.0f)
    return std::string(desc.name) + ": only one of clipnorm and global_clipnorm can be set";
  return {};
}

double decimal_value(float f) {
  if (!std::isfinite(f) || f == 0.0f) return double(f);
  // round(f * 10^s) / 10^s for growing digit counts; 10^s is exact in double for |s| <= 22,
  // so each candidate is the double nearest its decimal. Nine digits always round-trip.
  const int e = int(std::floor(std::log10(std::fabs(double(f)))));
  for (int digits = 1; digits <= 9; ++digits) {
    const int s = digits - 1 - e;
    if (s < -22 || s > 22) break;
    const double p = std::pow(10.0, std::abs(s));
    const double d = s >= 0 ? std::nearbyint(double(f) * p) / p : std::nearbyint(double(f) / p) * p;
    if (float(d) == f) return d;
  }
  return double(f);
}

int optimizer_num_slots(const OptConfig& cfg) {
  switch (cfg.kind) {
    case OptKind::sgd: return cfg.momentum > 0.0f ? 1 : 0;
    case OptKind::adagrad: return 1;
    case OptKind::adadelta: return 2;
    case OptKind::rmsprop: return 1 + (cfg.momentum > 0.0f) + (cfg.centered ? 1 : 0);
    case OptKind::adam:
    case OptKind::adamw: return cfg.amsgrad ? 3 : 2;
    case OptKind::nadam: return 2;
    case OptKind::adamax: return 2;
  }
  return 0;
}

float optimizer_slot_init(const OptConfig& cfg, int s) {
  return (cfg.kind == OptKind::adagrad && s == 0) ? cfg.initial_accumulator_value : 0.0f;
}

const char* optimizer_slot_name(const OptConfig& cfg, int s) {
  if (s < 0 || s >= optimizer_num_slots(cfg)) return nullptr;
  switch (cfg.kind) {
    case OptKind::sgd: return "momentum";
    case OptKind::adagrad: return "accumulator";
    case OptKind::adadelta: return s == 0 ? "accumulated_grad" : "accumulated_delta_var";
    case OptKind::rmsprop:
      if (s == 0) return "velocity";
      if (s == 1 && cfg.momentum > 0.0f) return "momentum";
      return "average_gradient";
    case OptKind::adam:
    case OptKind::adamw:
    case OptKind::nadam: return s == 0 ? "momentum" : s == 1 ? "velocity" : "velocity_hat";
    case OptKind::adamax: return s == 0 ? "momentum" : "norm";
  }
  return nullptr;
}

void optimizer_begin_step(const OptConfig& cfg, OptScalars& state, int64_t t) {
  if (cfg.kind == OptKind::nadam) state.u_product *= nadam_u(decimal_value(cfg.beta_1), t);
}

void optimizer_update(const OptConfig& cfg, const OptScalars& state, int64_t t, float* param,
                      const float* grad, float* const* slots, int64_t n, float grad_scale) {
  if (n <= 0) return;
  const UpdateCoeffs c = coeffs(cfg, state, t, grad_scale);
  const UpdateKernel k = kernel();
  const int ns = optimizer_num_slots(cfg);
  const int64_t nchunks = (n + kParallelChunk - 1) / kParallelChunk;
  const int nt = parallel::available_threads();
  if (nchunks < 2 || nt < 2) {
    k(c, param, grad, slots, n);
    return;
  }
  // Elements are independent, so the split changes nothing in the result.
  parallel::parallel_for(nchunks, nt, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * kParallelChunk;
      const int64_t len = std::min(kParallelChunk, n - lo);
      float* s[3] = {nullptr, nullptr, nullptr};
      for (int j = 0; j < ns; ++j) s[j] = slots[j] + lo;
      k(c, param + lo, grad + lo, s, len);
    }
  });
}

double sum_of_squares(const float* g, int64_t n) {
  // Eight partial sums in a fixed interleaving, added in a fixed order: the same result on
  // every call and every thread count.
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += double(g[i + j]) * double(g[i + j]);
  for (; i < n; ++i) acc[0] += double(g[i]) * double(g[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void optimizer_apply(const OptConfig& cfg, OptScalars& state, int64_t t, float* const* params,
                     const float* const* grads, float* const* const* slots, const int64_t* sizes,
                     int64_t count, SideWork side, void* side_ctx) {
  optimizer_begin_step(cfg, state, t);
  float global_scale = 1.0f;
  if (cfg.global_clipnorm > 0.0f) {
    double total = 0.0;
    for (int64_t i = 0; i < count; ++i) total += sum_of_squares(grads[i], sizes[i]);
    const double norm = std::sqrt(total);
    // Keras adds (norm - norm) to the scale so that an inf/NaN norm poisons every update
    // rather than passing the bad gradients through unscaled.
    global_scale = std::isfinite(norm) ? clip_scale(norm, cfg.global_clipnorm)
                                       : std::numeric_limits<float>::quiet_NaN();
  }
  // Every tensor's coefficients first, then all the elements in one parallel region (a
  // region per tensor would cost a fork/join each and leave the small tensors on one thread).
  // (the caller's buffer, reused from step to step; the tasks reach it through this reference,
  // not by the thread_local's name, which would be each worker's own)
  thread_local std::vector<UpdateCoeffs> coeff_buf;
  std::vector<UpdateCoeffs>& cs = coeff_buf;
  cs.resize(size_t(std::max<int64_t>(count, 0)));
  int64_t total = 0;
  // The step's scalars are the same for every tensor but the gradient scale: formed once (the
  // decimal readings of the hyperparameters and the powers of beta cost a few hundred ns each).
  const UpdateCoeffs step_coeffs = coeffs(cfg, state, t, 1.0f);
  for (int64_t i = 0; i < count; ++i) {
    float scale = global_scale;
    if (cfg.clipnorm > 0.0f) scale = clip_scale(std::sqrt(sum_of_squares(grads[i], sizes[i])),
                                                cfg.clipnorm);
    cs[size_t(i)] = step_coeffs;
    cs[size_t(i)].scale = scale;
    total += std::max<int64_t>(sizes[i], 0);
  }
  const UpdateKernel k = kernel();
  const int ns = optimizer_num_slots(cfg);
  // Elements [lo, hi) of the tensors laid end to end.
  auto update_range = [&](int64_t lo, int64_t hi) {
    int64_t base = 0;
    for (int64_t i = 0; i < count && base < hi; ++i) {
      const int64_t n = std::max<int64_t>(sizes[i], 0);
      const int64_t a = std::max(lo, base), b = std::min(hi, base + n);
      if (a < b) {
        const int64_t off = a - base;
        float* s[3] = {nullptr, nullptr, nullptr};
        for (int j = 0; j < ns; ++j) s[j] = slots[i][j] + off;
        k(cs[size_t(i)], params[i] + off, grads[i] + off, s, b - a);
      }
      base += n;
    }
  };
  const int nt = parallel::available_threads();
  if (nt < 2 || total < 2 * kParallelChunk) {
    update_range(0, total);
    if (side != nullptr) side(side_ctx, 0, 1);
    return;
  }
  // Cut points at multiples of kCutAlign elements from their tensor's start (any cut gives the
  // same result, elements being independent; aligned cuts keep the vector loops whole).
  constexpr int64_t kCutAlign = 1024;
  auto cut = [&](int part) {
    const int64_t target = total * part / nt;
    int64_t base = 0;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t n = std::max<int64_t>(sizes[i], 0);
      if (target < base + n) return base + (target - base) / kCutAlign * kCutAlign;
      base += n;
    }
    return total;
  };
  parallel::run(nt, [&](int task) {
    const int64_t lo = cut(task), hi = task + 1 == nt ? total : cut(task + 1);
    if (lo < hi) update_range(lo, hi);
    if (side != nullptr) side(side_ctx, task, nt);
  });
}

}  // namespace pynn::nn
