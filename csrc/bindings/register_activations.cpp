// Activation kernels: the element-wise table, row-wise softmax, PReLU and RReLU.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "bindings/descriptors.h"
#include "bindings/util.h"
#include "nn/activations.h"
#include "nn/activations_param.h"
#include "nn/softmax.h"

namespace pynn::bind {

namespace {

const nn::ActivationInfo& activation_or_throw(const std::string& name,
                                              const std::vector<float>& params) {
  const nn::ActivationInfo* act = nn::find_activation(name);
  if (act == nullptr) {
    std::string known;
    for (const auto& a : nn::activations())
      known += std::string(known.empty() ? "" : ", ") + a.name;
    throw py::value_error("name: unknown activation '" + name + "'; expected one of " + known);
  }
  if (params.size() != size_t(act->nparams))
    throw py::value_error("params: activation '" + name + "' takes " +
                          std::to_string(act->nparams) + " parameters, got " +
                          std::to_string(params.size()));
  const std::string err = nn::activation_params_error(*act, params.data());
  if (!err.empty()) throw py::value_error("params: activation '" + name + "': " + err);
  return *act;
}

py::array_t<float> empty_like_shape(const py::array& a) {
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  return py::array_t<float>(shape);
}

}  // namespace

void register_activations(py::module_& m) {
  m.def(
      "activation_names",
      [] {
        std::vector<std::string> names;
        for (const auto& a : nn::activations()) names.emplace_back(a.name);
        return names;
      },
      "The element-wise activations (softmax, row-wise, is not among them).");
  m.def(
      "activation_descriptors",
      [] {
        py::list out;
        auto entry = [&out](const char* name, bool elementwise, const nn::ActivationInfo* a) {
          py::dict e;
          e["name"] = name;
          e["elementwise"] = elementwise;
          py::list params, aliases;
          if (a != nullptr) {
            for (int i = 0; i < a->nparams; ++i) params.append(param_dict(a->params[i]));
            if (a->alias != nullptr) aliases.append(a->alias);
          }
          e["params"] = params;
          e["aliases"] = aliases;
          // A rule between the two parameters, as text ("min_val <= max_val"), or None.
          e["ordered"] = a != nullptr && a->ordered
                             ? py::object(py::str(std::string(a->params[0].name) + " <= " +
                                                  a->params[1].name))
                             : py::object(py::none());
          out.append(e);
        };
        for (const auto& a : nn::activations()) entry(a.name, true, &a);
        entry("softmax", false, nullptr);  // row-wise (nn/softmax.h), no parameters
        return out;
      },
      "The activation table: one dict per activation with its name, whether it is "
      "element-wise (all but softmax), its parameters in the order the kernel takes them "
      "(name, type, default, valid range), its aliases and the rule between its two "
      "parameters, if any.");
  m.def(
      "activation_params",
      [](const std::string& name, const py::object& params) {
        const nn::ActivationInfo* act = nn::find_activation(name);
        if (act == nullptr && name != "softmax") activation_or_throw(name, {});
        // Doubles: the values as given (and the table's defaults), which the caller keeps
        // for its config; the kernel rounds them to float32 when it takes them.
        std::vector<double> values;
        if (act != nullptr)
          for (int i = 0; i < act->nparams; ++i) values.push_back(act->params[i].default_value);
        if (!params.is_none()) {
          if (!py::isinstance<py::dict>(params))
            throw py::type_error("params: expected a dict of parameter values or None, got " +
                                 std::string(py::str(py::type::of(params).attr("__name__"))));
          const std::string owner = "activation '" + name + "'";
          for (auto item : params.cast<py::dict>()) {
            const std::string key = py::str(item.first);
            int k = -1;
            for (int i = 0; act != nullptr && i < act->nparams; ++i)
              if (key == act->params[i].name) k = i;
            if (k < 0) {
              std::string known;
              for (int i = 0; act != nullptr && i < act->nparams; ++i)
                known += std::string(known.empty() ? "" : ", ") + act->params[i].name;
              throw py::value_error(owner + ": unknown parameter '" + key + "'; it takes " +
                                    (known.empty() ? std::string("none") : known));
            }
            const nn::ParamDesc& d = act->params[k];
            values[size_t(k)] = d.type == nn::ParamType::boolean
                                    ? double(parse_flag_as_float(item.second, d, owner))
                                    : parse_real(item.second, d, owner);
          }
        }
        if (act != nullptr) {  // every rule of the table, on the values the kernel will read
          const std::vector<float> as_read(values.begin(), values.end());
          if (const std::string err = nn::activation_params_error(*act, as_read.data());
              !err.empty())
            throw py::value_error("activation '" + name + "': " + err);
        }
        return values;
      },
      py::arg("name"), py::arg("params") = py::none(),
      "The parameters (in the kernel's order) of the named activation: its "
      "defaults overridden by the dict `params` of Keras parameter names; unknown names, wrong "
      "types and values out of range raise naming the parameter and its valid range.");
  m.def(
      "activation_defaults",
      [](const std::string& name) {
        const nn::ActivationInfo* act = nn::find_activation(name);
        if (act == nullptr) throw py::value_error("name: unknown activation '" + name + "'");
        return std::vector<float>(act->defaults, act->defaults + act->nparams);
      },
      py::arg("name"), "The default parameters of the named activation (nparams floats).");
  m.def(
      "activation_forward",
      [](py::array x, const std::string& name, std::vector<float> params) {
        const auto& act = activation_or_throw(name, params);
        float* p = mutable_c_contiguous(x, "x", x.ndim());
        const int64_t n = x.size();
        {
          ComputeCall nogil;
          act.forward(p, n, params.data());
        }
        return x;
      },
      py::arg("x"), py::arg("name"), py::arg("params") = std::vector<float>{},
      "Applies the activation in place to a C-contiguous float32 array and returns it.");
  m.def(
      "activation_backward",
      [](py::array z, py::array y, py::array dy, py::array dz, const std::string& name,
         std::vector<float> params) {
        const auto& act = activation_or_throw(name, params);
        const int nd = z.ndim();
        const float* zp = c_contiguous(z, "z", nd);
        const float* yp = c_contiguous(y, "y", nd);
        const float* dyp = c_contiguous(dy, "dy", nd);
        float* dzp = mutable_c_contiguous(dz, "dz", nd);
        const int64_t n = z.size();
        if (y.size() != n || dy.size() != n || dz.size() != n)
          throw py::value_error("z, y, dy, dz: expected the same size, got " +
                                std::to_string(n) + ", " + std::to_string(y.size()) + ", " +
                                std::to_string(dy.size()) + ", " + std::to_string(dz.size()));
        {
          ComputeCall nogil;
          act.backward(zp, yp, dyp, dzp, n, params.data());
        }
        return dz;
      },
      py::arg("z"), py::arg("y"), py::arg("dy"), py::arg("dz"), py::arg("name"),
      py::arg("params") = std::vector<float>{},
      "dz = dy * f'(z) for the named activation (y = f(z) must be given too); dz may be dy.");

  m.def(
      "softmax_forward",
      [](py::array x) {
        float* p = mutable_c_contiguous(x, "x", 2);
        const int64_t n = x.shape(0), c = x.shape(1);
        {
          ComputeCall nogil;
          nn::softmax_forward(p, n, c);
        }
        return x;
      },
      py::arg("x"), "Row-wise softmax of a C-contiguous float32 (n, c) array, in place.");
  m.def(
      "softmax_backward",
      [](py::array y, py::array dy, py::array dz) {
        const float* yp = c_contiguous(y, "y", 2);
        const float* dyp = c_contiguous(dy, "dy", 2);
        float* dzp = mutable_c_contiguous(dz, "dz", 2);
        for (int d = 0; d < 2; ++d)
          if (dy.shape(d) != y.shape(d) || dz.shape(d) != y.shape(d))
            throw py::value_error("y, dy, dz: expected the same shape");
        const int64_t n = y.shape(0), c = y.shape(1);
        {
          ComputeCall nogil;
          nn::softmax_backward(yp, dyp, dzp, n, c);
        }
        return dz;
      },
      py::arg("y"), py::arg("dy"), py::arg("dz"),
      "dz = y * (dy - <dy, y>) row by row, y the softmax output; dz may be dy.");

  m.def(
      "prelu_forward",
      [](py::array x, py::array alpha) {
        const float* xp = c_contiguous(x, "x", 2);
        const float* ap = c_contiguous(alpha, "alpha", 1);
        const int64_t n = x.shape(0), c = x.shape(1);
        if (alpha.shape(0) != c)
          throw py::value_error("alpha: expected " + std::to_string(c) +
                                " entries (one per channel of x), got " +
                                std::to_string(alpha.shape(0)));
        py::array_t<float> y = empty_like_shape(x);
        float* yp = y.mutable_data();
        {
          ComputeCall nogil;
          nn::prelu_forward(xp, yp, n, c, ap);
        }
        return y;
      },
      py::arg("x"), py::arg("alpha"),
      "PReLU of x (n, c) with one slope per channel: x if x > 0 else alpha * x.");
  m.def(
      "prelu_backward",
      [](py::array x, py::array alpha, py::array dy) {
        const float* xp = c_contiguous(x, "x", 2);
        const float* ap = c_contiguous(alpha, "alpha", 1);
        const float* dyp = c_contiguous(dy, "dy", 2);
        const int64_t n = x.shape(0), c = x.shape(1);
        if (alpha.shape(0) != c)
          throw py::value_error("alpha: expected " + std::to_string(c) + " entries, got " +
                                std::to_string(alpha.shape(0)));
        if (dy.shape(0) != n || dy.shape(1) != c)
          throw py::value_error("dy: expected the shape of x");
        py::array_t<float> dx = empty_like_shape(x);
        py::array_t<float> dalpha(std::vector<py::ssize_t>{py::ssize_t(c)});
        float* dxp = dx.mutable_data();
        float* dap = dalpha.mutable_data();
        {
          ComputeCall nogil;
          nn::prelu_backward(xp, dyp, dxp, dap, n, c, ap);
        }
        return py::make_tuple(dx, dalpha);
      },
      py::arg("x"), py::arg("alpha"), py::arg("dy"),
      "(dx, dalpha) of PReLU: dx = dy * (x > 0 ? 1 : alpha), dalpha = column sums of dy * "
      "min(x, 0).");

  m.def(
      "rrelu_forward",
      [](py::array x, float lower, float upper, bool training, uint64_t seed, uint64_t stream,
         uint64_t offset) {
        activation_or_throw("rrelu", {lower, upper});  // the table's rules for rrelu
        const float* xp = c_contiguous(x, "x", x.ndim());
        const int64_t n = x.size();
        py::array_t<float> y = empty_like_shape(x);
        py::array_t<float> slope = empty_like_shape(x);
        float* yp = y.mutable_data();
        float* sp = slope.mutable_data();
        {
          ComputeCall nogil;
          if (training) {
            nn::rrelu_forward_train(xp, yp, sp, n, lower, upper, seed, stream, offset);
          } else {
            const float a = 0.5f * (lower + upper);
            for (int64_t i = 0; i < n; ++i) {
              sp[i] = xp[i] >= 0.0f ? 1.0f : a;
              yp[i] = sp[i] * xp[i];
            }
          }
        }
        return py::make_tuple(y, slope);
      },
      py::arg("x"), py::arg("lower") = 1.0f / 8.0f, py::arg("upper") = 1.0f / 3.0f,
      py::arg("training") = true, py::arg("seed") = 0, py::arg("stream") = 0,
      py::arg("offset") = 0,
      "(y, slope) of RReLU. Training: slope ~ U(lower, upper) per negative element, from the "
      "counter-based generator; inference: slope (lower + upper) / 2.");
  m.def(
      "rrelu_backward",
      [](py::array slope, py::array dy) {
        const float* sp = c_contiguous(slope, "slope", slope.ndim());
        const float* dyp = c_contiguous(dy, "dy", slope.ndim());
        const int64_t n = slope.size();
        if (dy.size() != n) throw py::value_error("dy: expected the shape of slope");
        py::array_t<float> dx = empty_like_shape(dy);
        float* dxp = dx.mutable_data();
        {
          ComputeCall nogil;
          nn::rrelu_backward(sp, dyp, dxp, n);
        }
        return dx;
      },
      py::arg("slope"), py::arg("dy"), "dx = dy * slope (slope as returned by rrelu_forward).");
}

}  // namespace pynn::bind
