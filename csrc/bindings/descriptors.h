// The descriptor tables (nn/descriptors.h) as Python sees them: the exported lists of dicts,
// and the strict parsers every binding uses to read a family's name and settings.
//
// Errors are Python exceptions naming the entry, the argument, its valid range and the value:
// ValueError for an unknown name or a value out of range (None included where the argument
// has no "off" state), TypeError for a value of the wrong type.
#pragma once
#include <pybind11/pybind11.h>

#include <string>

#include "nn/activations.h"
#include "nn/descriptors.h"
#include "nn/losses.h"
#include "nn/optimizers.h"

namespace pynn::bind {

namespace py = pybind11;

// {"name", "type" ("float" or "bool"), "default", "min", "max", "min_inclusive",
//  "max_inclusive", "range" (e.g. "[0, 1)"), "nullable"}
py::dict param_dict(const nn::ParamDesc& p);

// A real number from Python (int, float or a NumPy real scalar; never a bool), checked
// against `p`; `owner` names the table entry in messages ("sgd: expected momentum in ...").
double parse_real(const py::handle& v, const nn::ParamDesc& p, const std::string& owner);
// A bool (Python or NumPy) for the boolean parameter `p`.
bool parse_bool(const py::handle& v, const nn::ParamDesc& p, const std::string& owner);
// A boolean parameter that travels as a float (the activation kernels): a bool gives 0 or 1,
// a finite number is taken as is (the kernel reads non-zero as true).
float parse_flag_as_float(const py::handle& v, const nn::ParamDesc& p, const std::string& owner);

// --- optimizers -----------------------------------------------------------------------------
// By Keras name (case-insensitive); ValueError listing the known names otherwise.
const nn::OptimizerDesc& optimizer_or_throw(const std::string& kind);
// Keras defaults of `kind` overridden by `config` (a dict of Keras constructor arguments, or
// None). Strict: unknown arguments, wrong types and values out of range are refused.
nn::OptConfig parse_optimizer_config(const std::string& kind, const py::object& config);
// Every field by its Keras name: the decimals the user wrote, None for an option that is off.
py::dict optimizer_config_dict(const nn::OptConfig& c);

// --- losses ---------------------------------------------------------------------------------
// By canonical name, internal kinds included; `what` prefixes the ValueError.
const nn::LossDesc& loss_or_throw(const std::string& name, const std::string& what);

}  // namespace pynn::bind
