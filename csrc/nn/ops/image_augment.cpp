// image_augment: Keras's RandomFlip, RandomTranslation, RandomRotation and RandomZoom, plus a
// plain per-sample affine resampling (kind "affine", the transform given as a second input, as
// keras.ops.image.affine_transform takes it). Random kinds are active in training only (or
// always with force_training, for an eager `layer(x, training=True)`); otherwise a view.
//
// Geometry (Keras's convention, pixel centres on integer coordinates, no half-pixel shift):
// output pixel (row i, column j) of sample b reads the input at
//     xs = a0 j + a1 i + a2,   ys = b0 j + b1 i + b2     (divided by c0 j + c1 i + 1)
// - flip:        column W-1-j and/or row H-1-i (one draw per sample, u <= 0.5 flips; in
//                "horizontal_and_vertical" that one draw flips both axes, as Keras 3 does)
// - translation: xs = j - tx, ys = i - ty with ty = h * H, tx = w * W (h, w drawn in
//                [lower, upper]; positive moves the content down / right)
// - rotation:    by angle = f * 2 pi (f drawn; positive turns the content counter-clockwise
//                on screen) about ((W-1)/2, (H-1)/2): xs = cos (j-cx) - sin (i-cy) + cx,
//                ys = sin (j-cx) + cos (i-cy) + cy
// - zoom:        xs = zx (j - cx) + cx, ys = zy (i - cy) + cy with zy = 1 + h, zx = 1 + w (or
//                zy when same_zoom): a factor above 1 samples a wider area (zooms out)
// Sampling: "nearest" rounds half to even (torch.round, as Keras's torch and JAX backends);
// "bilinear" weighs the four neighbours (wy wx, rows then columns). A neighbour outside the
// image is, per fill_mode: constant -> fill_value; nearest -> the clamped index; wrap -> the
// index mod size; reflect -> mirrored about the edge including the edge pixel (d c b a | a b c
// d | d c b a, period 2 size).
// Randomness: draw k (0 rows/height, 1 columns/width) of sample b is
// random_uniform01(seed, stream, 2 b + k); value = lower + (upper - lower) u.
// Layout: per-sample (H, W, C), or (C, H, W) with channels_first.
// Backward (to input 0 only): the transposed sampling, each sample's gradient summed by one
// thread in output order, so the result does not depend on the thread count. Nothing flows
// into the transform input of kind "affine" (its gradient is written as zeros).
// Scratch [0] (saved): the per-sample transform, 8 doubles stored in 16 floats.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/parallel.h"
#include "nn/op.h"
#include "nn/random.h"

namespace pynn::nn {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr int64_t kParallelElems = int64_t(1) << 14;
constexpr int kT = 8;              // doubles per transform
constexpr int64_t kTFloats = 16;   // floats holding them
// Coordinates beyond this are treated as far outside (keeps the integer casts defined).
constexpr double kFar = 1099511627776.0;  // 2^40

enum class Kind { flip, translation, rotation, zoom, affine };
enum class Fill { reflect, wrap, constant, nearest };

// Maps index i of an axis of size n into [0, n) per the fill mode; false when the constant
// mode reads fill_value instead.
inline bool fix_index(int64_t i, int64_t n, Fill f, int64_t& out) {
  if (i >= 0 && i < n) {
    out = i;
    return true;
  }
  switch (f) {
    case Fill::constant:
      return false;
    case Fill::nearest:
      out = i < 0 ? 0 : n - 1;
      return true;
    case Fill::wrap:
      out = ((i % n) + n) % n;
      return true;
    case Fill::reflect: {
      const int64_t p = 2 * n;
      const int64_t m = ((i % p) + p) % p;
      out = m < n ? m : p - 1 - m;
      return true;
    }
  }
  return false;
}

inline double tame(double v) { return (v > -kFar && v < kFar) ? v : -kFar; }

class ImageAugmentOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const std::string kind = attrs.get_string("kind", "");
    const std::string mode = attrs.get_string("mode", "horizontal_and_vertical");
    const std::string fill = attrs.get_string("fill_mode", "reflect");
    const std::string interp = attrs.get_string("interpolation", "bilinear");
    fill_value_ = attrs.get_double("fill_value", 0.0);
    seed_ = uint64_t(attrs.get_int("seed", 0));
    channels_first_ = attrs.get_bool("channels_first", false);
    force_ = attrs.get_bool("force_training", false);
    same_zoom_ = attrs.get_bool("same_zoom", false);
    lower_ = attrs.get_doubles("lower");
    upper_ = attrs.get_doubles("upper");
    if (kind == "flip") kind_ = Kind::flip;
    else if (kind == "translation") kind_ = Kind::translation;
    else if (kind == "rotation") kind_ = Kind::rotation;
    else if (kind == "zoom") kind_ = Kind::zoom;
    else if (kind == "affine") kind_ = Kind::affine;
    else
      op_error(attrs, "kind must be flip, translation, rotation, zoom or affine, got '" + kind +
                          "'");
    check_arity(attrs, in, kind_ == Kind::affine ? 2 : 1, kind_ == Kind::affine ? 2 : 1,
                params, 0, 0);
    if (in[0].size() != 3)
      op_error(attrs, "expected a per-sample image shape (height, width, channels), got " +
                          shape_str(in[0]));
    if (kind_ == Kind::affine && in[1] != Shape{8})
      op_error(attrs, "the transform input must have per-sample shape (8,), got " +
                          shape_str(in[1]));
    if (mode == "horizontal") flip_h_ = true, flip_v_ = false;
    else if (mode == "vertical") flip_h_ = false, flip_v_ = true;
    else if (mode == "horizontal_and_vertical") flip_h_ = flip_v_ = true;
    else
      op_error(attrs, "mode must be horizontal, vertical or horizontal_and_vertical, got '" +
                          mode + "'");
    if (fill == "reflect") fill_ = Fill::reflect;
    else if (fill == "wrap") fill_ = Fill::wrap;
    else if (fill == "constant") fill_ = Fill::constant;
    else if (fill == "nearest") fill_ = Fill::nearest;
    else
      op_error(attrs, "fill_mode must be reflect, wrap, constant or nearest, got '" + fill + "'");
    if (interp == "bilinear") bilinear_ = true;
    else if (interp == "nearest") bilinear_ = false;
    else op_error(attrs, "interpolation must be bilinear or nearest, got '" + interp + "'");
    const size_t draws = kind_ == Kind::rotation ? 1 : 2;
    if (kind_ != Kind::flip && kind_ != Kind::affine) {
      if (lower_.size() != draws || upper_.size() != draws)
        op_error(attrs, "lower and upper must hold " + std::to_string(draws) + " values");
      for (size_t k = 0; k < draws; ++k)
        if (!(std::isfinite(lower_[k]) && std::isfinite(upper_[k]) && lower_[k] <= upper_[k]))
          op_error(attrs, "lower/upper must be finite with lower <= upper");
    }
    if (!std::isfinite(fill_value_)) op_error(attrs, "fill_value must be finite");
    const Shape& s = in[0];
    if (channels_first_) c_ = s[0], h_ = s[1], w_ = s[2];
    else h_ = s[0], w_ = s[1], c_ = s[2];
    size_ = shape_size(s);
    return s;
  }

  bool active(bool training) const { return kind_ == Kind::affine || training || force_; }
  bool aliases(bool training) const override { return !active(training) || idle(); }
  std::vector<ScratchNeed> scratch(bool training, bool backward) const override {
    std::vector<ScratchNeed> s(1);
    if (!aliases(training))
      s[0] = {kTFloats, 0, backward ? ScratchLife::saved : ScratchLife::forward};
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const int64_t n = a.n;
    float* tr = a.scratch[0];
    for (int64_t b = 0; b < n; ++b) {
      double t[kT];
      transform(a, b, t);
      std::memcpy(tr + b * kTFloats, t, sizeof(t));
    }
    const int64_t rows = n * h_;
    const int nt = n * size_ < kParallelElems ? 1 : parallel::available_threads();
    const float* x = a.x[0];
    float* y = a.y;
    parallel::parallel_for(rows, nt, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / h_, i = r % h_;
        double t[kT];
        std::memcpy(t, tr + b * kTFloats, sizeof(t));
        sample_row(t, i, x + b * size_, y + b * size_);
      }
    });
  }

  void backward(const BwdArgs& a) override {
    if (kind_ == Kind::affine && a.dx[1]) {
      if (!a.dx_acc[1]) std::memset(a.dx[1], 0, sizeof(float) * size_t(a.n * kT));
    }
    float* dx = a.dx[0];
    if (!dx) return;
    const int64_t n = a.n;
    const float* tr = a.scratch[0];
    const bool acc = a.dx_acc[0];
    const int nt = n * size_ < kParallelElems ? 1 : parallel::available_threads();
    parallel::parallel_for(n, nt, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double t[kT];
        std::memcpy(t, tr + b * kTFloats, sizeof(t));
        float* d = dx + b * size_;
        if (!acc) std::memset(d, 0, sizeof(float) * size_t(size_));
        const float* g = a.dy + b * size_;
        for (int64_t i = 0; i < h_; ++i) scatter_row(t, i, g, d);
      }
    });
  }

 private:
  // A zero-range draw leaves every image as it is.
  bool idle() const {
    if (kind_ == Kind::flip || kind_ == Kind::affine) return false;
    for (size_t k = 0; k < lower_.size(); ++k)
      if (lower_[k] != 0.0 || upper_[k] != 0.0) return false;
    return true;
  }

  double draw(const FwdArgs& a, int64_t b, int k) const {
    const double u = double(random_uniform01(seed_, a.stream, uint64_t(2 * b + k)));
    return lower_[size_t(k)] + (upper_[size_t(k)] - lower_[size_t(k)]) * u;
  }

  // Sample b's transform [a0 a1 a2 b0 b1 b2 c0 c1].
  void transform(const FwdArgs& a, int64_t b, double* t) const {
    for (int k = 0; k < kT; ++k) t[k] = 0.0;
    t[0] = t[4] = 1.0;
    const double H = double(h_), W = double(w_), cx = (W - 1.0) / 2.0, cy = (H - 1.0) / 2.0;
    switch (kind_) {
      case Kind::affine:
        for (int k = 0; k < kT; ++k) t[k] = double(a.x[1][b * kT + k]);
        break;
      case Kind::flip:
        if (random_uniform01(seed_, a.stream, uint64_t(2 * b)) <= 0.5f) {
          if (flip_h_) t[0] = -1.0, t[2] = W - 1.0;
          if (flip_v_) t[4] = -1.0, t[5] = H - 1.0;
        }
        break;
      case Kind::translation:
        t[5] = -draw(a, b, 0) * H;
        t[2] = -draw(a, b, 1) * W;
        break;
      case Kind::rotation: {
        const double ang = draw(a, b, 0) * kTwoPi, c = std::cos(ang), s = std::sin(ang);
        t[0] = c, t[1] = -s, t[2] = cx - cx * c + cy * s;
        t[3] = s, t[4] = c, t[5] = cy - cx * s - cy * c;
        break;
      }
      case Kind::zoom: {
        const double zy = 1.0 + draw(a, b, 0);
        const double zx = same_zoom_ ? zy : 1.0 + draw(a, b, 1);
        t[0] = zx, t[2] = cx * (1.0 - zx);
        t[4] = zy, t[5] = cy * (1.0 - zy);
        break;
      }
    }
  }

  int64_t pix(int64_t r, int64_t c) const {
    return channels_first_ ? r * w_ + c : (r * w_ + c) * c_;
  }
  int64_t cstride() const { return channels_first_ ? h_ * w_ : 1; }

  // Source coordinates of output pixel (i, j).
  void source(const double* t, int64_t i, int64_t j, double& xs, double& ys) const {
    const double x = double(j), y = double(i);
    xs = t[0] * x + t[1] * y + t[2];
    ys = t[3] * x + t[4] * y + t[5];
    if (t[6] != 0.0 || t[7] != 0.0) {
      const double k = t[6] * x + t[7] * y + 1.0;
      xs /= k, ys /= k;
    }
    xs = tame(xs), ys = tame(ys);
  }

  // Up to four (input pixel offset, weight) pairs for output pixel (i, j); weight of a
  // constant-filled neighbour goes to *wfill. Returns the number of pairs.
  int taps(const double* t, int64_t i, int64_t j, int64_t* off, double* wt, double* wfill) const {
    double xs, ys;
    source(t, i, j, xs, ys);
    *wfill = 0.0;
    if (!bilinear_) {
      int64_t r, c;
      const bool ok = fix_index(int64_t(std::nearbyint(ys)), h_, fill_, r) &&
                      fix_index(int64_t(std::nearbyint(xs)), w_, fill_, c);
      if (!ok) {
        *wfill = 1.0;
        return 0;
      }
      off[0] = pix(r, c), wt[0] = 1.0;
      return 1;
    }
    const double fy = std::floor(ys), fx = std::floor(xs);
    const double wy1 = ys - fy, wx1 = xs - fx;
    const double wy[2] = {1.0 - wy1, wy1}, wx[2] = {1.0 - wx1, wx1};
    const int64_t iy = int64_t(fy), ix = int64_t(fx);
    if (iy >= 0 && iy + 1 < h_ && ix >= 0 && ix + 1 < w_) {  // all four inside: no folding
      const int64_t o = pix(iy, ix), dc = pix(0, 1), dr = pix(1, 0);
      off[0] = o, off[1] = o + dc, off[2] = o + dr, off[3] = o + dr + dc;
      wt[0] = wy[0] * wx[0], wt[1] = wy[0] * wx[1], wt[2] = wy[1] * wx[0], wt[3] = wy[1] * wx[1];
      return 4;
    }
    int m = 0;
    for (int dr = 0; dr < 2; ++dr) {
      int64_t r;
      const bool okr = fix_index(iy + dr, h_, fill_, r);
      for (int dc = 0; dc < 2; ++dc) {
        int64_t c;
        const double w = wy[dr] * wx[dc];
        if (okr && fix_index(ix + dc, w_, fill_, c)) {
          off[m] = pix(r, c), wt[m] = w, ++m;
        } else {
          *wfill += w;
        }
      }
    }
    return m;
  }

  void sample_row(const double* t, int64_t i, const float* x, float* y) const {
    const int64_t cs = cstride();
    for (int64_t j = 0; j < w_; ++j) {
      float* out = y + pix(i, j);
      if (kind_ == Kind::flip) {  // exact copies
        const int64_t r = t[4] < 0 ? h_ - 1 - i : i, c = t[0] < 0 ? w_ - 1 - j : j;
        const float* src = x + pix(r, c);
        for (int64_t ch = 0; ch < c_; ++ch) out[ch * cs] = src[ch * cs];
        continue;
      }
      int64_t off[4];
      double wt[4], wfill;
      const int m = taps(t, i, j, off, wt, &wfill);
      for (int64_t ch = 0; ch < c_; ++ch) {
        double v = wfill * fill_value_;
        for (int k = 0; k < m; ++k) v += wt[k] * double(x[off[k] + ch * cs]);
        out[ch * cs] = float(v);
      }
    }
  }

  void scatter_row(const double* t, int64_t i, const float* dy, float* dx) const {
    const int64_t cs = cstride();
    for (int64_t j = 0; j < w_; ++j) {
      const float* g = dy + pix(i, j);
      if (kind_ == Kind::flip) {
        const int64_t r = t[4] < 0 ? h_ - 1 - i : i, c = t[0] < 0 ? w_ - 1 - j : j;
        float* d = dx + pix(r, c);
        for (int64_t ch = 0; ch < c_; ++ch) d[ch * cs] += g[ch * cs];
        continue;
      }
      int64_t off[4];
      double wt[4], wfill;
      const int m = taps(t, i, j, off, wt, &wfill);
      for (int k = 0; k < m; ++k) {
        const float w = float(wt[k]);
        float* d = dx + off[k];
        for (int64_t ch = 0; ch < c_; ++ch) d[ch * cs] += w * g[ch * cs];
      }
    }
  }

  Kind kind_ = Kind::flip;
  Fill fill_ = Fill::reflect;
  bool bilinear_ = true, channels_first_ = false, force_ = false, same_zoom_ = false;
  bool flip_h_ = true, flip_v_ = true;
  double fill_value_ = 0.0;
  uint64_t seed_ = 0;
  std::vector<double> lower_, upper_;
  int64_t h_ = 0, w_ = 0, c_ = 0, size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("image_augment", pynn::nn::ImageAugmentOp)
