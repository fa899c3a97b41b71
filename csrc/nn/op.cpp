// The op registry and the attribute map (see op.h).
#include "nn/op.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace pynn::nn {

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  if (s.size() == 1) out += ",";
  return out + ")";
}

int64_t shape_size(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d > 0 && n > INT64_MAX / d) return INT64_MAX;  // saturates: callers reject it
    n *= d;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------

const AttrValue* Attrs::find(const std::string& key) const {
  asked_.insert(key);
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

bool Attrs::has(const std::string& key) const { return find(key) != nullptr; }

void Attrs::type_error(const std::string& key, const char* expected) const {
  throw std::invalid_argument(where_ + ": attribute '" + key + "' must be " + expected);
}

double Attrs::get_double(const std::string& key, double def) const {
  const AttrValue* v = find(key);
  if (!v) return def;
  if (auto d = std::get_if<double>(v)) return *d;
  if (auto i = std::get_if<int64_t>(v)) return double(*i);
  type_error(key, "a number");
}

int64_t Attrs::get_int(const std::string& key, int64_t def) const {
  const AttrValue* v = find(key);
  if (!v) return def;
  if (auto i = std::get_if<int64_t>(v)) return *i;
  if (auto d = std::get_if<double>(v))
    if (std::isfinite(*d) && *d == std::floor(*d) && std::fabs(*d) < 9.0e15) return int64_t(*d);
  type_error(key, "an integer");
}

bool Attrs::get_bool(const std::string& key, bool def) const {
  if (!has(key)) return def;
  const int64_t i = get_int(key, 0);
  if (i != 0 && i != 1) type_error(key, "a bool");
  return i != 0;
}

std::string Attrs::get_string(const std::string& key, const std::string& def) const {
  const AttrValue* v = find(key);
  if (!v) return def;
  if (auto s = std::get_if<std::string>(v)) return *s;
  type_error(key, "a string");
}

std::vector<double> Attrs::get_doubles(const std::string& key) const {
  const AttrValue* v = find(key);
  if (!v) return {};
  if (auto d = std::get_if<std::vector<double>>(v)) return *d;
  if (auto i = std::get_if<std::vector<int64_t>>(v)) return std::vector<double>(i->begin(), i->end());
  if (auto d = std::get_if<double>(v)) return {*d};
  if (auto i = std::get_if<int64_t>(v)) return {double(*i)};
  type_error(key, "a list of numbers");
}

std::vector<int64_t> Attrs::get_ints(const std::string& key) const {
  const AttrValue* v = find(key);
  if (!v) return {};
  if (auto i = std::get_if<std::vector<int64_t>>(v)) return *i;
  if (auto i = std::get_if<int64_t>(v)) return {*i};
  if (auto d = std::get_if<std::vector<double>>(v)) {
    std::vector<int64_t> out;
    for (double x : *d) {
      if (!(std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9.0e15))
        type_error(key, "a list of integers");
      out.push_back(int64_t(x));
    }
    return out;
  }
  type_error(key, "a list of integers");
}

int64_t Attrs::require_int(const std::string& key) const {
  if (!has(key)) throw std::invalid_argument(where_ + ": attribute '" + key + "' is required");
  return get_int(key, 0);
}

std::vector<int64_t> Attrs::require_ints(const std::string& key) const {
  if (!has(key)) throw std::invalid_argument(where_ + ": attribute '" + key + "' is required");
  return get_ints(key);
}

std::vector<std::string> Attrs::unknown() const {
  std::vector<std::string> out;
  for (const auto& kv : values_)
    if (!asked_.count(kv.first)) out.push_back(kv.first);
  return out;
}

// ---------------------------------------------------------------------------------------------

namespace {
// Function-local so that registrations from any translation unit's static initialisers find
// it constructed.
std::map<std::string, OpFactory>& registry() {
  static std::map<std::string, OpFactory> r;
  return r;
}
}  // namespace

bool register_op(const char* name, OpFactory factory) {
  registry()[name] = factory;
  return true;
}

std::vector<std::string> op_names() {
  std::vector<std::string> out;
  for (const auto& kv : registry()) out.push_back(kv.first);
  return out;
}

std::unique_ptr<Op> make_op(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& n : op_names()) known += (known.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown op '" + name + "' (known ops: " + known + ")");
  }
  return it->second();
}

void store_or_add(float* dst, const float* src, int64_t n, bool acc) {
  if (acc) {
    for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

void op_error(const Attrs& attrs, const std::string& msg) {
  throw std::invalid_argument(attrs.where() + ": " + msg);
}

void check_arity(const Attrs& attrs, const std::vector<Shape>& in, int min_in, int max_in,
                 const std::vector<Shape>& params, int min_p, int max_p) {
  const int ni = int(in.size()), np = int(params.size());
  if (ni < min_in || (max_in >= 0 && ni > max_in)) {
    std::string want = min_in == max_in ? std::to_string(min_in)
                       : max_in < 0     ? "at least " + std::to_string(min_in)
                                        : std::to_string(min_in) + " to " + std::to_string(max_in);
    op_error(attrs, "expected " + want + " input(s), got " + std::to_string(ni));
  }
  if (np < min_p || np > max_p) {
    std::string want = min_p == max_p ? std::to_string(min_p)
                                      : std::to_string(min_p) + " to " + std::to_string(max_p);
    op_error(attrs, "expected " + want + " parameter(s), got " + std::to_string(np));
  }
}

int64_t resolve_axis(const Attrs& attrs, const char* what, int64_t axis, int64_t rank) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    op_error(attrs, std::string(what) + " " + std::to_string(axis) +
                        " is out of range for a per-sample rank of " + std::to_string(rank));
  return a;
}

}  // namespace pynn::nn
