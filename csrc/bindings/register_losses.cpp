// Losses: the loss table and value and gradient in one call. Names, kinds and parameter checks
// come from the loss table (nn/losses.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "bindings/descriptors.h"
#include "bindings/util.h"
#include "nn/losses.h"

namespace pynn::bind {

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (int d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

const char* target_name(nn::LossTarget t) {
  switch (t) {
    case nn::LossTarget::dense: return "dense";
    case nn::LossTarget::labels: return "labels";
    case nn::LossTarget::none: return "none";
  }
  return "";
}

}  // namespace

void register_losses(py::module_& m) {
  m.def(
      "loss_names",
      [] {
        std::vector<std::string> names;
        for (const auto& d : nn::loss_descriptors()) names.emplace_back(d.name);
        return names;
      },
      "Every loss kind the engine knows, internal ones (mean_of_output) included.");
  m.def(
      "loss_descriptors",
      [] {
        py::list out;
        for (const auto& d : nn::loss_descriptors()) {
          py::dict e;
          e["name"] = d.name;
          e["class_name"] = d.class_name;
          e["kind"] = int(d.kind);
          py::list aliases;
          for (const char* a : d.aliases) aliases.append(a);
          e["aliases"] = aliases;
          e["target"] = target_name(d.target);
          e["from_logits"] = d.takes_logits;
          e["classification"] = d.classification;
          e["internal"] = d.internal;
          py::list params;
          for (const auto& p : d.params) params.append(param_dict(p));
          e["params"] = params;
          out.append(e);
        }
        return out;
      },
      "The loss table: one dict per kind with its Keras name and class name, engine kind, "
      "aliases, target ('dense', 'labels' or 'none'), whether it takes logits, whether the "
      "engine counts accuracy for it, whether it is internal (not a compile() name), and its "
      "constructor parameters (name, type, default, valid range).");
  m.def(
      "loss_config",
      [](const std::string& kind, const py::object& params) {
        const nn::LossDesc& d = loss_or_throw(kind, "kind");
        py::dict out;
        for (const auto& p : d.params) {
          if (p.type == nn::ParamType::boolean) out[p.name] = p.default_value != 0.0;
          else out[p.name] = p.default_value;
        }
        if (params.is_none()) return out;
        if (!py::isinstance<py::dict>(params))
          throw py::type_error("params: expected a dict of loss parameters or None, got " +
                               std::string(py::str(py::type::of(params).attr("__name__"))));
        for (auto item : params.cast<py::dict>()) {
          const std::string key = py::str(item.first);
          const nn::ParamDesc* p = nullptr;
          std::string known;
          for (const auto& q : d.params) {
            if (key == q.name) p = &q;
            known += std::string(known.empty() ? "" : ", ") + q.name;
          }
          if (p == nullptr)
            throw py::value_error(std::string(d.name) + ": '" + key + "' is not a parameter of " +
                                  d.name + " (it takes " + (known.empty() ? "none" : known) + ")");
          if (p->type == nn::ParamType::boolean) out[p->name] = parse_bool(item.second, *p, d.name);
          else out[p->name] = parse_real(item.second, *p, d.name);
        }
        return out;
      },
      py::arg("kind"), py::arg("params") = py::none(),
      "The parameters of loss `kind` (from_logits for the cross-entropies, delta for huber): "
      "the table's defaults overridden by the dict `params`, checked against the table.");
  m.def(
      "loss_value_grad",
      [](const std::string& kind_name, py::array pred, py::object target,
         py::object sample_weight, bool from_logits, float delta) {
        const nn::LossDesc& desc = loss_or_throw(kind_name, "kind");
        nn::LossConfig cfg;
        cfg.kind = desc.kind;
        cfg.from_logits = from_logits;
        cfg.huber_delta = delta;
        if (const std::string err = nn::loss_config_error(cfg, true); !err.empty())
          throw py::value_error(err);
        const float* pp = c_contiguous(pred, "pred", 2);
        const int64_t n = pred.shape(0), c = pred.shape(1);
        const float* tp = nullptr;
        const int32_t* lp = nullptr;
        if (desc.target == nn::LossTarget::labels) {
          if (!py::isinstance<py::array>(target))
            throw py::type_error("labels: expected an int32 array, got " +
                                 std::string(py::str(py::type::of(target).attr("__name__"))));
          py::array labels = target.cast<py::array>();
          if (!py::isinstance<py::array_t<int32_t>>(labels) || labels.dtype().kind() != 'i' ||
              labels.itemsize() != 4)
            throw py::type_error("labels: expected an int32 array, got dtype " +
                                 std::string(py::str(labels.dtype())));
          if (labels.ndim() != 1 || labels.shape(0) != n)
            throw py::value_error("labels: expected shape (" + std::to_string(n) +
                                  ",) (one label per row of pred), got " + shape_str(labels));
          if (!(labels.flags() & py::array::c_style))
            throw py::value_error("labels: expected a C-contiguous array");
          lp = static_cast<const int32_t*>(labels.data());
          if (c == 0 && n > 0) throw py::value_error("pred: expected at least one class, got 0");
          for (int64_t i = 0; i < n; ++i)
            if (lp[i] < 0 || lp[i] >= c)
              throw py::value_error("labels: expected integers in [0, " + std::to_string(c) +
                                    "), got " + std::to_string(lp[i]) + " at index " +
                                    std::to_string(i));
        } else if (desc.target == nn::LossTarget::dense) {
          if (!py::isinstance<py::array>(target))
            throw py::type_error("target: expected a float32 array, got " +
                                 std::string(py::str(py::type::of(target).attr("__name__"))));
          py::array t = target.cast<py::array>();
          tp = c_contiguous(t, "target", 2);
          if (t.shape(0) != n || t.shape(1) != c)
            throw py::value_error("target: expected the shape of pred " + shape_str(pred) +
                                  ", got " + shape_str(t));
        }  // LossTarget::none: the prediction is the loss; target_or_labels is not read
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
          ComputeCall nogil;
          loss = nn::loss_value_grad(cfg, n, c, pp, tp, lp, wp, gp);
        }
        return py::make_tuple(loss, grad);
      },
      py::arg("kind_name"), py::arg("pred"), py::arg("target_or_labels") = py::none(),
      py::arg("sample_weight") = py::none(), py::arg("from_logits") = false,
      py::arg("delta") = 1.0f,
      "(loss, grad) of a Keras loss with 'sum_over_batch_size' reduction. pred (n, c) float32 "
      "probabilities or logits; target (n, c) float32, or int32 labels (n,) for "
      "sparse_categorical_crossentropy, not read (may be None) for mean_of_output; "
      "sample_weight (n,) float32 or None. grad is d loss / d pred.");
}

}  // namespace pynn::bind
