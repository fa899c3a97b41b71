// Bindings for the optimizers and initializers (csrc/nn/optimizers.h, csrc/nn/initializers.h).
//
// An optimizer is named by its Keras string ("sgd", "adam", ...) and configured by a dict of
// Keras constructor arguments; missing ones take that optimizer's Keras default (SGD's
// learning_rate 0.01, Adadelta's rho 0.95, AdamW's weight_decay 0.004, ...). Names, defaults
// and checks all come from the optimizer table (nn/optimizers.h) through the one strict
// parser in bindings/descriptors.h.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "bindings/descriptors.h"
#include "bindings/util.h"
#include "nn/initializers.h"
#include "nn/optimizers.h"

namespace pynn::bind {
namespace py = pybind11;

namespace {

double finite_number(const py::handle& v, const std::string& key) {
  if (py::isinstance<py::bool_>(v) || !(py::isinstance<py::float_>(v) || py::isinstance<py::int_>(v)))
    throw py::type_error("params['" + key + "']: expected a number, got " +
                         std::string(py::str(py::type::of(v).attr("__name__"))));
  const double d = v.cast<double>();
  if (!std::isfinite(d) || std::fabs(d) > 3.4e38)  // float32 holds it
    throw py::value_error("params['" + key + "']: expected a finite number, got " +
                          std::to_string(d));
  return d;
}

void check_step(int64_t t) {
  if (t < 1) throw py::value_error("t: expected the 1-based step number (>= 1), got " +
                                   std::to_string(t));
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (int d = 0; d < a.ndim(); ++d) s += std::to_string(a.shape(d)) + (a.ndim() == 1 || d + 1 < a.ndim() ? "," : "");
  return s + ")";
}

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (int d = 0; d < a.ndim(); ++d)
    if (a.shape(d) != b.shape(d)) return false;
  return true;
}

// One tensor's raw views, checked: param and slots writable, all of param's shape.
struct TensorViews {
  float* param = nullptr;
  const float* grad = nullptr;
  std::vector<float*> slots;
  int64_t n = 0;
  // References that keep every array alive while the GIL is released, even if the caller's
  // lists are changed meanwhile by another thread.
  std::vector<py::array> owners;
};

TensorViews tensor_views(const nn::OptConfig& cfg, py::array& param, const py::array& grad,
                         const py::list& slots, const std::string& where) {
  TensorViews v;
  v.param = mutable_c_contiguous(param, (where + "param").c_str(), param.ndim());
  v.grad = c_contiguous(grad, (where + "grad").c_str(), grad.ndim());
  if (!same_shape(param, grad))
    throw py::value_error(where + "grad: expected shape " + shape_str(param) + " (param's), got " +
                          shape_str(grad));
  const int ns = nn::optimizer_num_slots(cfg);
  if (int(slots.size()) != ns)
    throw py::value_error(where + "slots: expected " + std::to_string(ns) +
                          " slot arrays for this optimizer, got " + std::to_string(slots.size()));
  for (int s = 0; s < ns; ++s) {
    const std::string name = where + "slots[" + std::to_string(s) + "]";
    if (!py::isinstance<py::array>(slots[s]))
      throw py::type_error(name + ": expected a float32 NumPy array");
    py::array a = slots[s].cast<py::array>();
    float* p = mutable_c_contiguous(a, name.c_str(), a.ndim());
    if (!same_shape(param, a))
      throw py::value_error(name + ": expected shape " + shape_str(param) + " (param's), got " +
                            shape_str(a));
    v.slots.push_back(p);
    v.owners.push_back(a);
  }
  v.owners.push_back(param);
  v.owners.push_back(grad);
  v.n = param.size();
  return v;
}

std::vector<int64_t> shape_vector(const py::object& shape) {
  std::vector<int64_t> out;
  if (py::isinstance<py::int_>(shape)) {
    out.push_back(shape.cast<int64_t>());
  } else {
    for (auto d : shape) {
      if (!py::isinstance<py::int_>(d) || py::isinstance<py::bool_>(d))
        throw py::type_error("shape: expected a tuple of non-negative integers");
      out.push_back(d.cast<int64_t>());
    }
  }
  for (int64_t d : out)
    if (d < 0) throw py::value_error("shape: expected non-negative dimensions, got " + std::to_string(d));
  return out;
}

nn::InitParams parse_init_params(const std::string& name, const py::object& params) {
  nn::InitParams p;
  if (params.is_none()) return p;
  if (!py::isinstance<py::dict>(params)) throw py::type_error("params: expected a dict or None");
  std::set<std::string> allowed;
  if (name == "random_normal" || name == "truncated_normal") allowed = {"mean", "stddev"};
  else if (name == "random_uniform") allowed = {"minval", "maxval"};
  else if (name == "identity" || name == "orthogonal") allowed = {"gain"};
  else if (name == "constant") allowed = {"value"};
  for (auto item : params.cast<py::dict>()) {
    const std::string key = py::str(item.first);
    if (!allowed.count(key))
      throw py::value_error("params: '" + key + "' is not an argument of " + name);
    const double v = finite_number(item.second, key);
    if (key == "mean") p.mean = v;
    else if (key == "stddev") {
      if (v < 0) throw py::value_error("params['stddev']: expected >= 0, got " + std::to_string(v));
      p.stddev = v;
    } else if (key == "minval") p.minval = v;
    else if (key == "maxval") p.maxval = v;
    else if (key == "gain") p.gain = v;
    else if (key == "value") p.value = v;
  }
  return p;
}

}  // namespace

void register_optimizers(py::module_& m) {
  m.def(
      "optimizer_descriptors",
      [] {
        py::list out;
        for (const auto& d : nn::optimizer_descriptors()) {
          py::dict e;
          e["name"] = d.name;
          e["class_name"] = d.class_name;
          e["kind"] = int(d.kind);
          py::list fields;
          for (const auto& f : d.fields) {
            py::dict fd = param_dict(f.param);
            fd["explicit"] = f.explicit_arg;
            fields.append(fd);
          }
          e["fields"] = fields;
          py::list exclusive;
          exclusive.append(py::make_tuple("clipnorm", "global_clipnorm"));
          e["exclusive"] = exclusive;
          out.append(e);
        }
        return out;
      },
      "The optimizer table: one dict per optimizer with its Keras name, class name, engine "
      "kind, and its arguments in Keras constructor order (name, type, default, valid range, "
      "whether None turns it off, whether the constructor names it or takes it through "
      "**kwargs), plus the groups of arguments of which at most one may be set.");
  m.def(
      "optimizer_config",
      [](const std::string& kind, const py::object& config) {
        return optimizer_config_dict(parse_optimizer_config(kind, config));
      },
      py::arg("kind"), py::arg("config") = py::none(),
      "The full, validated configuration of optimizer `kind`: Keras defaults overridden by "
      "`config`.");
  m.def(
      "optimizer_slot_names",
      [](const std::string& kind, const py::object& config) {
        const nn::OptConfig c = parse_optimizer_config(kind, config);
        std::vector<std::string> names;
        for (int s = 0; s < nn::optimizer_num_slots(c); ++s)
          names.emplace_back(nn::optimizer_slot_name(c, s));
        return names;
      },
      py::arg("kind"), py::arg("config") = py::none(),
      "Names of the per-parameter slot arrays, in the order optimizer_update takes them.");
  m.def(
      "optimizer_slots",
      [](const std::string& kind, const py::object& config, const py::object& shape) {
        const nn::OptConfig c = parse_optimizer_config(kind, config);
        const std::vector<int64_t> dims = shape_vector(shape);
        py::list out;
        for (int s = 0; s < nn::optimizer_num_slots(c); ++s) {
          py::array_t<float> a(dims);
          std::fill(a.mutable_data(), a.mutable_data() + a.size(), nn::optimizer_slot_init(c, s));
          out.append(a);
        }
        return out;
      },
      py::arg("kind"), py::arg("config"), py::arg("shape"),
      "Freshly initialised slot arrays for a parameter of the given shape.");
  m.def(
      "optimizer_begin_step",
      [](const std::string& kind, const py::object& config, int64_t t, double u_product) {
        check_step(t);
        const nn::OptConfig c = parse_optimizer_config(kind, config);
        nn::OptScalars st;
        st.u_product = u_product;
        nn::optimizer_begin_step(c, st, t);
        return st.u_product;
      },
      py::arg("kind"), py::arg("config"), py::arg("t"), py::arg("u_product") = 1.0,
      "Advances the optimizer's scalar state to step t (Nadam's momentum product) and returns "
      "it; call once per step before optimizer_update.");
  m.def(
      "optimizer_update",
      [](const std::string& kind, const py::object& config, int64_t t, py::array param,
         py::array grad, py::list slots, double u_product, double grad_scale) {
        check_step(t);
        const nn::OptConfig c = parse_optimizer_config(kind, config);
        if (c.clipnorm > 0.0f || c.global_clipnorm > 0.0f)
          throw py::value_error(
              "config: optimizer_update takes clipnorm/global_clipnorm as grad_scale; use "
              "optimizer_apply for the whole step");
        if (!std::isfinite(grad_scale))
          throw py::value_error("grad_scale: expected a finite number, got " +
                                std::to_string(grad_scale));
        TensorViews v = tensor_views(c, param, grad, slots, "");
        nn::OptScalars st;
        st.u_product = u_product;
        {
          ComputeCall nogil;
          nn::optimizer_update(c, st, t, v.param, v.grad, v.slots.data(), v.n, float(grad_scale));
        }
      },
      py::arg("kind"), py::arg("config"), py::arg("t"), py::arg("param"), py::arg("grad"),
      py::arg("slots"), py::arg("u_product") = 1.0, py::arg("grad_scale") = 1.0,
      "Fused update of one parameter in place (t is the 1-based step; u_product is what "
      "optimizer_begin_step returned for t). The gradient is multiplied by grad_scale, then "
      "clipped to clipvalue; weight decay is applied first.");
  m.def(
      "optimizer_apply",
      [](const std::string& kind, const py::object& config, int64_t t, py::list params,
         py::list grads, py::list slots, double u_product) {
        check_step(t);
        const nn::OptConfig c = parse_optimizer_config(kind, config);
        const size_t count = params.size();
        if (grads.size() != count || slots.size() != count)
          throw py::value_error("params, grads and slots: expected lists of the same length, got " +
                                std::to_string(count) + ", " + std::to_string(grads.size()) +
                                " and " + std::to_string(slots.size()));
        std::vector<TensorViews> views;
        for (size_t i = 0; i < count; ++i) {
          const std::string where = "tensor " + std::to_string(i) + ": ";
          if (!py::isinstance<py::array>(params[i]) || !py::isinstance<py::array>(grads[i]))
            throw py::type_error(where + "params and grads must be float32 NumPy arrays");
          if (!py::isinstance<py::list>(slots[i]))
            throw py::type_error(where + "slots: expected a list of arrays");
          py::array p = params[i].cast<py::array>();
          py::array g = grads[i].cast<py::array>();
          views.push_back(tensor_views(c, p, g, slots[i].cast<py::list>(), where));
        }
        std::vector<float*> ps(count);
        std::vector<const float*> gs(count);
        std::vector<float* const*> ss(count);
        std::vector<int64_t> ns(count);
        for (size_t i = 0; i < count; ++i) {
          ps[i] = views[i].param;
          gs[i] = views[i].grad;
          ss[i] = views[i].slots.data();
          ns[i] = views[i].n;
        }
        nn::OptScalars st;
        st.u_product = u_product;
        {
          ComputeCall nogil;
          nn::optimizer_apply(c, st, t, ps.data(), gs.data(), ss.data(), ns.data(),
                              int64_t(count));
        }
        return st.u_product;
      },
      py::arg("kind"), py::arg("config"), py::arg("t"), py::arg("params"), py::arg("grads"),
      py::arg("slots"), py::arg("u_product") = 1.0,
      "One whole Keras step over lists of parameters (clipping included); returns the new "
      "u_product to pass at the next step.");
  m.def(
      "sum_of_squares",
      [](const py::array& g) {
        const float* p = c_contiguous(g, "g", g.ndim());
        const int64_t n = g.size();
        ComputeCall nogil;
        return nn::sum_of_squares(p, n);
      },
      py::arg("g"), "Sum of squares of a float32 array, accumulated in double in a fixed order.");
  m.def("clip_scale", &nn::clip_scale, py::arg("norm"), py::arg("max_norm"),
        "The factor that brings a gradient of the given norm within max_norm.");

  m.def("initializer_names", [] { return nn::initializer_names(); });
  m.def(
      "compute_fans",
      [](const py::object& shape) {
        double fi, fo;
        nn::compute_fans(shape_vector(shape), fi, fo);
        return py::make_tuple(int64_t(fi), int64_t(fo));
      },
      py::arg("shape"), "Keras's (fan_in, fan_out) of a weight shape.");
  m.def(
      "initializer_fill",
      [](const std::string& name, const py::object& shape, uint64_t seed,
         const py::object& params) {
        if (!nn::is_initializer(name)) {
          std::string known;
          for (const auto& k : nn::initializer_names()) known += (known.empty() ? "" : ", ") + k;
          throw py::value_error("name: expected one of " + known + "; got '" + name + "'");
        }
        const nn::InitParams p = parse_init_params(name, params);
        const std::vector<int64_t> dims = shape_vector(shape);
        py::array_t<float> out(dims);
        float* dst = out.mutable_data();
        std::string err;
        {
          ComputeCall nogil;
          err = nn::initializer_fill(name, dims, seed, p, dst);
        }
        if (!err.empty()) throw py::value_error("shape: " + err);
        return out;
      },
      py::arg("name"), py::arg("shape"), py::arg("seed"), py::arg("params") = py::none(),
      "A new float32 array of `shape` filled by the named initializer from `seed`.");
}

}  // namespace pynn::bind
