// Losses: value and gradient in one call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "bindings/util.h"
#include "nn/losses.h"

namespace pynn::bind {

namespace {

const std::vector<std::pair<std::string, nn::LossKind>>& loss_table() {
  static const std::vector<std::pair<std::string, nn::LossKind>> t = {
      {"mean_squared_error", nn::LossKind::mean_squared_error},
      {"mean_absolute_error", nn::LossKind::mean_absolute_error},
      {"huber", nn::LossKind::huber},
      {"binary_crossentropy", nn::LossKind::binary_crossentropy},
      {"categorical_crossentropy", nn::LossKind::categorical_crossentropy},
      {"sparse_categorical_crossentropy", nn::LossKind::sparse_categorical_crossentropy},
  };
  return t;
}

nn::LossKind kind_or_throw(const std::string& name) {
  std::string known;
  for (const auto& [k, v] : loss_table()) {
    if (k == name) return v;
    known += (known.empty() ? "" : ", ") + k;
  }
  throw py::value_error("kind: unknown loss '" + name + "'; expected one of " + known);
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (int d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

}  // namespace

void register_losses(py::module_& m) {
  m.def("loss_names", [] {
    std::vector<std::string> names;
    for (const auto& kv : loss_table()) names.push_back(kv.first);
    return names;
  });
  m.def(
      "loss_value_grad",
      [](const std::string& kind_name, py::array pred, py::array target,
         py::object sample_weight, bool from_logits, float delta) {
        nn::LossConfig cfg;
        cfg.kind = kind_or_throw(kind_name);
        cfg.from_logits = from_logits;
        cfg.huber_delta = delta;
        const bool categorical = cfg.kind == nn::LossKind::binary_crossentropy ||
                                 cfg.kind == nn::LossKind::categorical_crossentropy ||
                                 cfg.kind == nn::LossKind::sparse_categorical_crossentropy;
        if (from_logits && !categorical)
          throw py::value_error("from_logits: only the cross-entropy losses take logits; " +
                                kind_name + " got from_logits=True");
        if (cfg.kind == nn::LossKind::huber && !(std::isfinite(delta) && delta > 0.0f))
          throw py::value_error("delta: expected a positive finite number, got " +
                                std::to_string(delta));
        const float* pp = c_contiguous(pred, "pred", 2);
        const int64_t n = pred.shape(0), c = pred.shape(1);
        const float* tp = nullptr;
        const int32_t* lp = nullptr;
        if (cfg.kind == nn::LossKind::sparse_categorical_crossentropy) {
          if (!py::isinstance<py::array_t<int32_t>>(target) || target.dtype().kind() != 'i' ||
              target.itemsize() != 4)
            throw py::type_error("labels: expected an int32 array, got dtype " +
                                 std::string(py::str(target.dtype())));
          if (target.ndim() != 1 || target.shape(0) != n)
            throw py::value_error("labels: expected shape (" + std::to_string(n) +
                                  ",) (one label per row of pred), got " + shape_str(target));
          if (!(target.flags() & py::array::c_style))
            throw py::value_error("labels: expected a C-contiguous array");
          lp = static_cast<const int32_t*>(target.data());
          if (c == 0 && n > 0) throw py::value_error("pred: expected at least one class, got 0");
          for (int64_t i = 0; i < n; ++i)
            if (lp[i] < 0 || lp[i] >= c)
              throw py::value_error("labels: expected integers in [0, " + std::to_string(c) +
                                    "), got " + std::to_string(lp[i]) + " at index " +
                                    std::to_string(i));
        } else {
          tp = c_contiguous(target, "target", 2);
          if (target.shape(0) != n || target.shape(1) != c)
            throw py::value_error("target: expected the shape of pred " + shape_str(pred) +
                                  ", got " + shape_str(target));
        }
        const float* wp = nullptr;
        if (!sample_weight.is_none()) {
          py::array w = sample_weight.cast<py::array>();
          wp = c_contiguous(w, "sample_weight", 1);
          if (w.shape(0) != n)
            throw py::value_error("sample_weight: expected shape (" + std::to_string(n) +
                                  ",), got " + shape_str(w));
        }
        py::array_t<float> grad(std::vector<py::ssize_t>{py::ssize_t(n), py::ssize_t(c)});
        float* gp = grad.mutable_data();
        double loss;
        {
          py::gil_scoped_release nogil;
          loss = nn::loss_value_grad(cfg, n, c, pp, tp, lp, wp, gp);
        }
        return py::make_tuple(loss, grad);
      },
      py::arg("kind_name"), py::arg("pred"), py::arg("target_or_labels"),
      py::arg("sample_weight") = py::none(), py::arg("from_logits") = false,
      py::arg("delta") = 1.0f,
      "(loss, grad) of a Keras loss with 'sum_over_batch_size' reduction. pred (n, c) float32 "
      "probabilities or logits; target (n, c) float32, or int32 labels (n,) for "
      "sparse_categorical_crossentropy; sample_weight (n,) float32 or None. grad is "
      "d loss / d pred.");
}

}  // namespace pynn::bind
