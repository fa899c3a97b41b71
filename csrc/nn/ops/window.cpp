// Sliding-window geometry (see window.h). Not an op: registers nothing.
#include "nn/ops/window.h"

#include <algorithm>

namespace pynn::nn::ops {
namespace {

std::string ints_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// `key` as one positive integer per spatial axis (`def` when absent).
std::vector<int64_t> per_axis(const Attrs& attrs, const char* key, size_t rank,
                              const std::vector<int64_t>& def) {
  std::vector<int64_t> v = attrs.get_ints(key);
  if (!attrs.has(key)) v = def.empty() ? std::vector<int64_t>(rank, 1) : def;
  if (v.size() != rank)
    op_error(attrs, std::string(key) + " must have " + std::to_string(rank) +
                        " value(s), one per spatial axis, got " + ints_str(v));
  for (int64_t s : v)
    if (s < 1) op_error(attrs, std::string(key) + " must be positive, got " + ints_str(v));
  return v;
}

}  // namespace

Window make_window(const Attrs& attrs, const Shape& x, const std::vector<int64_t>& ksize,
                   const char* ksize_name, const std::vector<int64_t>& default_strides,
                   bool with_dilation, bool allow_causal) {
  const size_t rank = ksize.size();
  if (rank < 1 || rank > 2 || x.size() != rank + 1)
    op_error(attrs, "expects samples of shape " +
                        std::string(rank == 1 ? "(width, channels)" : "(height, width, channels)") +
                        " for a " + std::to_string(rank) + "-D window, got input shape " +
                        shape_str(x));
  for (int64_t k : ksize)
    if (k < 1) op_error(attrs, std::string(ksize_name) + " must be positive, got " + ints_str(ksize));
  const std::vector<int64_t> strides = per_axis(attrs, "strides", rank, default_strides);
  const std::vector<int64_t> dil =
      with_dilation ? per_axis(attrs, "dilation_rate", rank, {}) : std::vector<int64_t>(rank, 1);
  const std::string padding = attrs.get_string("padding", "valid");
  if (padding != "valid" && padding != "same" && !(allow_causal && padding == "causal")) {
    const std::string allowed = allow_causal && rank == 1 ? "'valid', 'same' or 'causal'"
                                                           : "'valid' or 'same'";
    op_error(attrs, "padding must be " + allowed + ", got '" + padding + "'");
  }
  if (padding == "causal" && rank != 1)
    op_error(attrs, "padding 'causal' is for 1-D convolutions only");

  Window w;
  w.spatial = int(rank);
  w.C = x.back();
  // Spatial axis a of the op goes to the geometry's (H, W); a 1-D op has H = 1.
  int64_t* in[2] = {&w.H, &w.W};
  int64_t* k[2] = {&w.KH, &w.KW};
  int64_t* s[2] = {&w.SH, &w.SW};
  int64_t* d[2] = {&w.DH, &w.DW};
  int64_t* pad[2] = {&w.PH, &w.PW};
  int64_t* out[2] = {&w.OH, &w.OW};
  const size_t first = 2 - rank;
  for (size_t a = 0; a < rank; ++a) {
    const size_t g = first + a;
    const int64_t len = x[a], kk = ksize[a], ss = strides[a], dd = dil[a];
    const int64_t span = (kk - 1) * dd + 1;
    *in[g] = len;
    *k[g] = kk;
    *s[g] = ss;
    *d[g] = dd;
    if (padding == "valid") {
      if (len < span)
        op_error(attrs, std::string(ksize_name) + " " + ints_str(ksize) +
                            (with_dilation ? " with dilation_rate " + ints_str(dil) : "") +
                            " spans " + std::to_string(span) + " positions, more than the " +
                            std::to_string(len) + " of input shape " + shape_str(x) +
                            " on spatial axis " + std::to_string(a) +
                            " (padding 'valid'; use 'same' to pad)");
      *out[g] = (len - span) / ss + 1;
      *pad[g] = 0;
    } else if (padding == "same") {
      *out[g] = (len + ss - 1) / ss;
      const int64_t total = std::max<int64_t>((*out[g] - 1) * ss + span - len, 0);
      *pad[g] = total / 2;
    } else {  // causal
      *out[g] = (len + ss - 1) / ss;
      *pad[g] = span - 1;
    }
  }
  return w;
}

Shape window_output_shape(const Window& w, int64_t channels) {
  if (w.spatial == 1) return {w.OW, channels};
  return {w.OH, w.OW, channels};
}

}  // namespace pynn::nn::ops
