// Descriptor tables: the one place that says what each family takes.
//
// Every family (activations in activations.cpp, losses in losses.cpp, optimizers in
// optimizers.cpp) keeps one table of entries: its Keras name, its aliases and its parameters
// with their defaults and valid ranges. The lookups, the argument checks of the bindings and
// the Python classes (through _core.*_descriptors()) all read those tables; nothing else lists
// names or defaults. This header holds what the tables share: a parameter's description and
// the check of a value against it.
#pragma once
#include <limits>
#include <string>

namespace pynn::nn {

constexpr double kInf = std::numeric_limits<double>::infinity();

// An interval of the real line; an infinite bound means "no bound on that side".
struct Range {
  double lo = -kInf;
  double hi = kInf;
  bool lo_open = true;
  bool hi_open = true;

  bool contains(double v) const;  // false for NaN
  std::string str() const;        // "[0, 1)", "(0, inf)", "(-inf, inf)"
};

// The ranges the tables use.
constexpr Range kAnyReal{-kInf, kInf, true, true};
constexpr Range kNonNegative{0.0, kInf, false, true};
constexpr Range kPositive{0.0, kInf, true, true};
constexpr Range kUnitOpen{0.0, 1.0, false, true};    // [0, 1)
constexpr Range kUnitClosed{0.0, 1.0, false, false};  // [0, 1]

enum class ParamType : int { real, boolean };

// One named parameter. A real must be finite (and fit in a float32) and lie in `range`; a
// boolean must be a bool. `nullable` parameters also take None, which means "off" (held as 0
// by the engine); their default may be None (`default_is_none`).
struct ParamDesc {
  const char* name;
  ParamType type;
  double default_value;  // 0/1 for a boolean
  Range range;
  bool nullable;
  bool default_is_none;
};

inline ParamDesc real_param(const char* name, double def, Range range) {
  return {name, ParamType::real, def, range, false, false};
}
inline ParamDesc bool_param(const char* name, bool def) {
  return {name, ParamType::boolean, def ? 1.0 : 0.0, kAnyReal, false, false};
}
// A real that None turns off; its default is None.
inline ParamDesc optional_param(const char* name, Range range) {
  return {name, ParamType::real, 0.0, range, true, true};
}

// The shortest decimal that reads back as `v` ("0.001", "1e-07", "inf", "nan"); with
// `as_float`, the shortest that reads back as the float32 `v` (0.2f gives "0.2").
std::string format_number(double v, bool as_float = false);

// "beta > 0", "threshold >= 0", "momentum in [0, 1]", "a finite alpha": what `r` asks of the
// parameter called `name`.
std::string constraint(const std::string& name, const Range& r);

// Empty when the real `v` suits `p`; otherwise "expected beta > 0, got beta=0": the parameter,
// its valid range and the value. Callers prefix it with where the value came from.
// `as_float` formats `v` as a float32 value (see format_number).
std::string real_param_error(const ParamDesc& p, double v, bool as_float = false);

}  // namespace pynn::nn
