// Shared pieces of the descriptor tables (see descriptors.h).
#include "nn/descriptors.h"

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace pynn::nn {

bool Range::contains(double v) const {
  if (std::isnan(v)) return false;
  const bool above = lo_open ? v > lo : v >= lo;
  const bool below = hi_open ? v < hi : v <= hi;
  return above && below;
}

std::string Range::str() const {
  return std::string(lo_open ? "(" : "[") + format_number(lo) + ", " + format_number(hi) +
         (hi_open ? ")" : "]");
}

std::string format_number(double v, bool as_float) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    const double back = std::strtod(buf, nullptr);
    if (as_float ? float(back) == float(v) : back == v) break;
  }
  return buf;
}

std::string constraint(const std::string& name, const Range& r) {
  const bool lo = !std::isinf(r.lo), hi = !std::isinf(r.hi);
  if (lo && !hi) return name + (r.lo_open ? " > " : " >= ") + format_number(r.lo);
  if (hi && !lo) return name + (r.hi_open ? " < " : " <= ") + format_number(r.hi);
  if (!lo && !hi) return "a finite " + name;
  return name + " in " + r.str();
}

std::string real_param_error(const ParamDesc& p, double v, bool as_float) {
  const std::string name = p.name;
  if (!std::isfinite(v) || std::fabs(v) > double(FLT_MAX))
    return "expected a finite " + name + " (float32), got " + name + "=" +
           format_number(v, as_float);
  if (p.range.contains(v)) return {};
  return "expected " + constraint(name, p.range) + ", got " + name + "=" +
         format_number(v, as_float);
}

}  // namespace pynn::nn
