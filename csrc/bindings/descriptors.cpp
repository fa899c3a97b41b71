// Python views and strict parsers of the descriptor tables (see descriptors.h).
#include "bindings/descriptors.h"

#include <pybind11/stl.h>

#include <cmath>
#include <string>

namespace pynn::bind {

namespace {

std::string type_name(const py::handle& h) {
  return py::str(py::type::of(h).attr("__name__"));
}

std::string short_repr(const py::handle& h) {
  std::string r = py::repr(h);
  if (r.size() > 40) r = r.substr(0, 37) + "...";
  return r;
}

// Python int or float, or a NumPy real scalar; bools (Python's and NumPy's) are not numbers
// here, so that `momentum=True` is caught.
bool is_real_number(const py::handle& v) {
  if (PyBool_Check(v.ptr())) return false;
  if (PyFloat_Check(v.ptr()) || PyLong_Check(v.ptr())) return true;
  return py::isinstance(v, py::module_::import("numbers").attr("Real"));
}

bool is_bool(const py::handle& v) {
  return PyBool_Check(v.ptr()) ||
         py::isinstance(v, py::module_::import("numpy").attr("bool_"));
}

}  // namespace

py::dict param_dict(const nn::ParamDesc& p) {
  py::dict d;
  d["name"] = p.name;
  const bool real = p.type == nn::ParamType::real;
  d["type"] = real ? "float" : "bool";
  if (p.default_is_none) d["default"] = py::none();
  else if (real) d["default"] = p.default_value;
  else d["default"] = p.default_value != 0.0;
  d["min"] = p.range.lo;
  d["max"] = p.range.hi;
  d["min_inclusive"] = !p.range.lo_open;
  d["max_inclusive"] = !p.range.hi_open;
  d["range"] = p.range.str();
  d["nullable"] = p.nullable;
  return d;
}

double parse_real(const py::handle& v, const nn::ParamDesc& p, const std::string& owner) {
  if (v.is_none())
    throw py::value_error(owner + ": expected " + nn::constraint(p.name, p.range) +
                          ", got None");
  if (!is_real_number(v))
    throw py::type_error(owner + ": expected " + p.name + " to be a number, got " +
                         type_name(v) + " (" + short_repr(v) + ")");
  double d = PyFloat_AsDouble(v.ptr());
  if (d == -1.0 && PyErr_Occurred()) {  // an int too large for a double
    PyErr_Clear();
    d = PyObject_RichCompareBool(v.ptr(), py::int_(0).ptr(), Py_GT) == 1 ? nn::kInf : -nn::kInf;
  }
  const std::string err = nn::real_param_error(p, d);
  if (!err.empty()) throw py::value_error(owner + ": " + err);
  return d;
}

bool parse_bool(const py::handle& v, const nn::ParamDesc& p, const std::string& owner) {
  if (!is_bool(v))
    throw py::type_error(owner + ": expected " + p.name + " to be a bool, got " + type_name(v) +
                         " (" + short_repr(v) + ")");
  return PyObject_IsTrue(v.ptr()) == 1;
}

float parse_flag_as_float(const py::handle& v, const nn::ParamDesc& p, const std::string& owner) {
  if (is_bool(v) || !is_real_number(v)) return parse_bool(v, p, owner) ? 1.0f : 0.0f;
  const nn::ParamDesc as_real{p.name, nn::ParamType::real, 0.0, nn::kAnyReal, false, false};
  return float(parse_real(v, as_real, owner));
}

// --- optimizers -----------------------------------------------------------------------------

const nn::OptimizerDesc& optimizer_or_throw(const std::string& kind) {
  if (const nn::OptimizerDesc* d = nn::find_optimizer(kind)) return *d;
  std::string known;
  for (const auto& d : nn::optimizer_descriptors())
    known += std::string(known.empty() ? "" : ", ") + d.name;
  throw py::value_error("kind: unknown optimizer '" + kind + "'; expected one of " + known);
}

nn::OptConfig parse_optimizer_config(const std::string& kind, const py::object& config) {
  const nn::OptimizerDesc& desc = optimizer_or_throw(kind);
  nn::OptConfig c = nn::optimizer_defaults(desc);
  if (config.is_none()) return c;
  if (!py::isinstance<py::dict>(config))
    throw py::type_error("config: expected a dict of optimizer arguments or None, got " +
                         type_name(config));
  for (auto item : config.cast<py::dict>()) {
    if (!py::isinstance<py::str>(item.first))
      throw py::type_error("config: keys must be argument names (str), got " +
                           type_name(item.first));
    const std::string key = item.first.cast<std::string>();
    const nn::OptFieldDesc* field = nullptr;
    for (const auto& f : desc.fields)
      if (key == f.param.name) field = &f;
    if (field == nullptr) {
      std::string known;
      for (const auto& f : desc.fields)
        known += std::string(known.empty() ? "" : ", ") + f.param.name;
      throw py::value_error(std::string(desc.name) + ": '" + key + "' is not an argument of " +
                            desc.name + " (it takes " + known + ")");
    }
    const py::handle v = item.second;
    if (field->flag != nullptr) {
      c.*field->flag = parse_bool(v, field->param, desc.name);
    } else if (v.is_none() && field->param.nullable) {
      c.*field->real = 0.0f;  // off
    } else {
      c.*field->real = float(parse_real(v, field->param, desc.name));
    }
  }
  // Whole-config rules, and the ranges again after rounding to float32.
  const std::string err = nn::optimizer_config_error(c);
  if (!err.empty()) throw py::value_error(err);
  return c;
}

py::dict optimizer_config_dict(const nn::OptConfig& c) {
  py::dict d;
  for (const auto& f : nn::optimizer_descriptor(c.kind).fields) {
    if (f.flag != nullptr) {
      d[f.param.name] = c.*f.flag;
      continue;
    }
    const float v = c.*f.real;
    // Values come back as the decimals the user wrote (0.001, not float32's
    // 0.0010000000474974513); an option that is off reads None, as in Keras.
    if (f.param.nullable && v == 0.0f) d[f.param.name] = py::none();
    else d[f.param.name] = nn::decimal_value(v);
  }
  return d;
}

// --- losses ---------------------------------------------------------------------------------

const nn::LossDesc& loss_or_throw(const std::string& name, const std::string& what) {
  if (const nn::LossDesc* d = nn::find_loss(name)) return *d;
  std::string known;
  for (const auto& d : nn::loss_descriptors())
    known += std::string(known.empty() ? "" : ", ") + d.name;
  throw py::value_error(what + ": unknown loss '" + name + "'; expected one of " + known);
}

}  // namespace pynn::bind
