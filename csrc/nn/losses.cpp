// Loss values and gradients (contracts in losses.h).
//
// Invariants:
//  - one pass over each row: the per-sample loss l_i (in double) and, when grad is given, its
//    gradient scaled by w_i / n are produced together; the batch sum then runs over i in
//    order, so the value is the same on any thread count.
//  - from logits nothing is exponentiated unguarded: sigmoid via e^-|x|, log-sum-exp after
//    subtracting the row max, log(1 + e^-|x|) with log1p.
//  - from probabilities the clipped quantities follow Keras (eps = 1e-7); where a probability
//    was clipped the gradient is that of the clipped expression, i.e. 0 through the clip.
//  - labels are checked against [0, c) before anything is read (std::invalid_argument).
#include "nn/losses.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace pynn::nn {
namespace {

constexpr double kEps = 1e-7;  // Keras's backend epsilon

inline double sigmoid_d(double x) {
  const double e = std::exp(-std::fabs(x));
  return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

// mean over c of an element loss; g receives d l_i / d p_ij * scale.
template <class F>
double row_mean(const float* p, const float* t, int64_t c, float* g, double scale, F f) {
  double s = 0.0;
  for (int64_t j = 0; j < c; ++j) {
    double gj;
    s += f(double(p[j]), double(t[j]), gj);
    if (g) g[j] = float(gj * scale / double(c));
  }
  return c > 0 ? s / double(c) : 0.0;
}

// Categorical cross-entropy of one row from probabilities, Keras style: q = p / sum(p),
// clipped to [eps, 1 - eps], l = -sum_j t_j log q_j. Gradient through the normalisation:
// dl/dp_k = (sum_j t_j u_j - t_k u_k / q_k) / S, u_j = 1 where q_j was not clipped.
// `label` >= 0 means a one-hot target at that index (t is then unused).
double cce_probs_row(const float* p, const float* t, int64_t label, int64_t c, float* g,
                     double scale) {
  double S = 0.0;
  for (int64_t j = 0; j < c; ++j) S += p[j];
  if (!(S > 0.0)) S = 1e-300;  // all-zero row: every q is clipped to eps, gradient 0
  double loss = 0.0, tu = 0.0;
  for (int64_t j = 0; j < c; ++j) {
    const double tj = label >= 0 ? (j == label ? 1.0 : 0.0) : double(t[j]);
    if (tj == 0.0) continue;
    const double q = double(p[j]) / S;
    const double qc = q < kEps ? kEps : (q > 1.0 - kEps ? 1.0 - kEps : q);
    loss -= tj * std::log(qc);
    if (q >= kEps && q <= 1.0 - kEps) tu += tj;
  }
  if (g) {
    for (int64_t j = 0; j < c; ++j) {
      const double tj = label >= 0 ? (j == label ? 1.0 : 0.0) : double(t[j]);
      const double q = double(p[j]) / S;
      const bool u = q >= kEps && q <= 1.0 - kEps;
      const double gj = (tu - (u && tj != 0.0 ? tj / q : 0.0)) / S;
      g[j] = float(gj * scale);
    }
  }
  return loss;
}

// From logits: l = (sum_j t_j) * lse(x) - sum_j t_j x_j; gradient softmax(x) * sum(t) - t.
double cce_logits_row(const float* x, const float* t, int64_t label, int64_t c, float* g,
                      double scale) {
  if (c <= 0) return 0.0;
  double m = x[0];
  for (int64_t j = 1; j < c; ++j) m = x[j] > m ? x[j] : m;
  double se = 0.0;
  for (int64_t j = 0; j < c; ++j) se += std::exp(double(x[j]) - m);
  const double lse = m + std::log(se);
  double tsum = 0.0, tx = 0.0;
  for (int64_t j = 0; j < c; ++j) {
    const double tj = label >= 0 ? (j == label ? 1.0 : 0.0) : double(t[j]);
    tsum += tj;
    if (tj != 0.0) tx += tj * (double(x[j]) - lse);  // stays finite for huge |x|
  }
  if (g) {
    for (int64_t j = 0; j < c; ++j) {
      const double tj = label >= 0 ? (j == label ? 1.0 : 0.0) : double(t[j]);
      const double pj = std::exp(double(x[j]) - lse);
      g[j] = float((pj * tsum - tj) * scale);
    }
  }
  return -tx;
}

std::vector<LossDesc> build_loss_table() {
  const std::vector<ParamDesc> logits = {bool_param("from_logits", false)};
  // name, class, kind, aliases, target, takes_logits, classification, internal, parameters
  return {
      {"mean_squared_error", "MeanSquaredError", LossKind::mean_squared_error, {"mse"},
       LossTarget::dense, false, false, false, {}},
      {"mean_absolute_error", "MeanAbsoluteError", LossKind::mean_absolute_error, {"mae"},
       LossTarget::dense, false, false, false, {}},
      {"huber", "Huber", LossKind::huber, {}, LossTarget::dense, false, false, false,
       {real_param("delta", 1.0, kPositive)}},
      {"binary_crossentropy", "BinaryCrossentropy", LossKind::binary_crossentropy, {},
       LossTarget::dense, true, true, false, logits},
      {"categorical_crossentropy", "CategoricalCrossentropy",
       LossKind::categorical_crossentropy, {"crossentropy"}, LossTarget::dense, true, true, false,
       logits},
      {"sparse_categorical_crossentropy", "SparseCategoricalCrossentropy",
       LossKind::sparse_categorical_crossentropy, {}, LossTarget::labels, true, true, false,
       logits},
      // The end of a loss written with pynn.ops and traced into the graph: not for compile().
      {"mean_of_output", "", LossKind::mean_of_output, {}, LossTarget::none, false, false, true,
       {}},
  };
}

}  // namespace

const std::vector<LossDesc>& loss_descriptors() {
  static const std::vector<LossDesc> table = [] {
    std::vector<LossDesc> t = build_loss_table();
    for (size_t i = 0; i < t.size(); ++i)  // loss_descriptor() indexes by kind
      if (size_t(t[i].kind) != i) throw std::logic_error("loss table out of LossKind order");
    return t;
  }();
  return table;
}

const LossDesc& loss_descriptor(LossKind kind) { return loss_descriptors()[size_t(kind)]; }

const LossDesc* find_loss(const std::string& name) {
  for (const auto& d : loss_descriptors())
    if (name == d.name) return &d;
  return nullptr;
}

LossConfig loss_defaults(LossKind kind) {
  LossConfig c;
  c.kind = kind;
  for (const ParamDesc& p : loss_descriptor(kind).params) {
    const std::string name = p.name;
    if (name == "from_logits") c.from_logits = p.default_value != 0.0;
    else if (name == "delta") c.huber_delta = float(p.default_value);
  }
  return c;
}

std::string loss_config_error(const LossConfig& cfg, bool strict_logits) {
  const LossDesc& d = loss_descriptor(cfg.kind);
  if (strict_logits && cfg.from_logits && !d.takes_logits)
    return std::string("from_logits: only the cross-entropy losses take logits; ") + d.name +
           " got from_logits=True";
  for (const ParamDesc& p : d.params) {
    if (std::string(p.name) != "delta") continue;
    const std::string err = real_param_error(p, double(cfg.huber_delta));
    if (!err.empty()) return std::string(d.name) + ": " + err;
  }
  return {};
}

double loss_value_grad(const LossConfig& cfg, int64_t n, int64_t c, const float* pred,
                       const float* target, const int32_t* labels, const float* sample_weight,
                       float* grad) {
  if (cfg.kind == LossKind::sparse_categorical_crossentropy) {
    for (int64_t i = 0; i < n; ++i)
      if (labels[i] < 0 || labels[i] >= c)
        throw std::invalid_argument("labels: expected integers in [0, " + std::to_string(c) +
                                    "), got " + std::to_string(labels[i]) + " at index " +
                                    std::to_string(i));
  }
  if (n <= 0) return 0.0;
  const double delta = cfg.huber_delta;
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double w = sample_weight ? double(sample_weight[i]) : 1.0;
    const double scale = w / double(n);
    const float* p = pred + i * c;
    const float* t = target ? target + i * c : nullptr;
    float* g = grad ? grad + i * c : nullptr;
    double l = 0.0;
    switch (cfg.kind) {
      case LossKind::mean_squared_error:
        l = row_mean(p, t, c, g, scale, [](double pv, double tv, double& gv) {
          const double e = pv - tv;
          gv = 2.0 * e;
          return e * e;
        });
        break;
      case LossKind::mean_absolute_error:
        l = row_mean(p, t, c, g, scale, [](double pv, double tv, double& gv) {
          const double e = pv - tv;
          gv = e > 0.0 ? 1.0 : (e < 0.0 ? -1.0 : 0.0);
          return std::fabs(e);
        });
        break;
      case LossKind::huber:
        l = row_mean(p, t, c, g, scale, [delta](double pv, double tv, double& gv) {
          const double e = pv - tv, a = std::fabs(e);
          if (a <= delta) {
            gv = e;
            return 0.5 * e * e;
          }
          gv = e > 0.0 ? delta : -delta;
          return delta * (a - 0.5 * delta);
        });
        break;
      case LossKind::binary_crossentropy:
        if (cfg.from_logits) {
          // max(x, 0) - x t + log(1 + e^-|x|); gradient sigmoid(x) - t
          l = row_mean(p, t, c, g, scale, [](double x, double tv, double& gv) {
            gv = sigmoid_d(x) - tv;
            return std::fmax(x, 0.0) - x * tv + std::log1p(std::exp(-std::fabs(x)));
          });
        } else {
          l = row_mean(p, t, c, g, scale, [](double pv, double tv, double& gv) {
            const bool inside = pv >= kEps && pv <= 1.0 - kEps;
            const double q = pv < kEps ? kEps : (pv > 1.0 - kEps ? 1.0 - kEps : pv);
            gv = inside ? (q - tv) / (q * (1.0 - q)) : 0.0;
            return -(tv * std::log(q) + (1.0 - tv) * std::log(1.0 - q));
          });
        }
        break;
      case LossKind::categorical_crossentropy:
      case LossKind::sparse_categorical_crossentropy: {
        const int64_t label =
            cfg.kind == LossKind::sparse_categorical_crossentropy ? int64_t(labels[i]) : -1;
        l = cfg.from_logits ? cce_logits_row(p, t, label, c, g, scale)
                            : cce_probs_row(p, t, label, c, g, scale);
        break;
      }
      case LossKind::mean_of_output: {  // the output is the loss: its mean; no target
        double s = 0.0;
        for (int64_t j = 0; j < c; ++j) s += double(p[j]);
        l = c > 0 ? s / double(c) : 0.0;
        if (g)
          for (int64_t j = 0; j < c; ++j) g[j] = float(scale / double(c));
        break;
      }
    }
    total += w * l;
  }
  return total / double(n);
}

}  // namespace pynn::nn
