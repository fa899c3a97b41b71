// Bindings for the layers area (see csrc/nn/dense.h and csrc/nn/regularization.h).
//
// Arrays are float32; inputs must be C-contiguous (x of the dense kernels may also be a row
// slice: unit column stride, row stride >= its width). Outputs are allocated here and returned,
// except where an argument is documented as updated in place. Every shape is checked before
// the GIL is released and the kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bindings/util.h"
#include "nn/activations.h"
#include "nn/dense.h"
#include "nn/regularization.h"

namespace pynn::bind {
namespace py = pybind11;

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (d) s += ", ";
    s += std::to_string(a.shape(d));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

void require_shape(const py::array& a, const char* name, std::vector<int64_t> shape) {
  bool ok = a.ndim() == py::ssize_t(shape.size());
  for (size_t d = 0; ok && d < shape.size(); ++d) ok = a.shape(d) == shape[d];
  if (!ok) {
    std::string want = "(";
    for (size_t d = 0; d < shape.size(); ++d) {
      if (d) want += ", ";
      want += std::to_string(shape[d]);
    }
    want += shape.size() == 1 ? ",)" : ")";
    throw py::value_error(std::string(name) + ": expected shape " + want + ", got " +
                          shape_str(a));
  }
}

py::array_t<float> new_array(std::vector<py::ssize_t> shape) { return py::array_t<float>(shape); }

const nn::ActivationInfo& activation_or_throw(const std::string& name, size_t nparams) {
  const nn::ActivationInfo* act = nn::find_activation(name);
  if (act == nullptr) throw py::value_error("activation: unknown name '" + name + "'");
  if (int(nparams) != act->nparams)
    throw py::value_error("params: activation '" + name + "' takes " +
                          std::to_string(act->nparams) + " parameters, got " +
                          std::to_string(nparams));
  return *act;
}

// x of the dense kernels: 2-D float32 with unit column stride; returns the row stride.
int64_t row_slice_view(const py::array& x, const char* name, const float** data) {
  require_f32(x, name, 2);
  const int64_t rs = x.strides(0) / 4, cs = x.strides(1) / 4;
  // Strides of an empty array are arbitrary and never used.
  const bool empty = x.size() == 0;
  const bool cols_ok = empty || x.shape(1) <= 1 || cs == 1;
  const bool rows_ok = empty || x.shape(0) <= 1 || rs >= std::max<int64_t>(x.shape(1), 1);
  if (!cols_ok || !rows_ok)
    throw py::value_error(std::string(name) +
                          ": expected rows of contiguous float32 (C-contiguous or a column "
                          "slice of one)");
  *data = static_cast<const float*>(x.data());
  return x.shape(0) > 1 && !empty ? rs : std::max<int64_t>(x.shape(1), 1);
}

// x (n, in) as a row slice and W (in, out), checked once for forward and backward.
struct DenseArgs {
  const float* x;
  const float* W;
  int64_t ldx, n, in, out;
};

DenseArgs dense_args(const py::array& x, const py::array& W) {
  DenseArgs d;
  d.ldx = row_slice_view(x, "x", &d.x);
  d.W = c_contiguous(W, "W", 2);
  d.n = x.shape(0);
  d.in = x.shape(1);
  d.out = W.shape(1);
  if (W.shape(0) != d.in)
    throw py::value_error("W: expected " + std::to_string(d.in) +
                          " rows (the columns of x), got shape " + shape_str(W));
  return d;
}

}  // namespace

void register_layers(py::module_& m) {
  m.def(
      "dense_forward",
      [](py::array x, py::array W, std::optional<py::array> b, const std::string& activation,
         std::vector<float> params, bool save_z, int nthreads) {
        const auto& act = activation_or_throw(activation, params.size());
        const DenseArgs d = dense_args(x, W);
        const float *xp = d.x, *Wp = d.W;
        const int64_t ldx = d.ldx, n = d.n, in = d.in, out = d.out;
        const float* bp = nullptr;
        if (b) {
          bp = c_contiguous(*b, "b", 1);
          require_shape(*b, "b", {out});
        }
        py::array_t<float> y = new_array({n, out});
        py::object z = py::none();
        float* zp = nullptr;
        if (save_z) {
          py::array_t<float> za = new_array({n, out});
          zp = za.mutable_data();
          z = za;
        }
        float* yp = y.mutable_data();
        {
          ComputeCall nogil;
          nn::dense_forward(n, in, out, xp, ldx, Wp, bp, &act, params.data(), zp, yp, nthreads);
        }
        return py::make_tuple(y, z);
      },
      py::arg("x"), py::arg("W"), py::arg("b") = py::none(), py::arg("activation") = "linear",
      py::arg("params") = std::vector<float>{}, py::arg("save_z") = true,
      py::arg("nthreads") = 0,
      "y = act(x @ W + b) in one fused GEMM. Returns (y, z) with z = x @ W + b (None unless "
      "save_z). x (n, in), W (in, out), b (out,) or None.");

  m.def(
      "dense_backward",
      [](py::array x, py::array W, std::optional<py::array> z, py::array y, py::array dy,
         const std::string& activation, std::vector<float> params, bool compute_dx,
         bool overwrite_dy, std::optional<py::array> dW_out, std::optional<py::array> db_out,
         bool accumulate, int nthreads) {
        const auto& act = activation_or_throw(activation, params.size());
        const DenseArgs d = dense_args(x, W);
        const float *xp = d.x, *Wp = d.W;
        const int64_t ldx = d.ldx, n = d.n, in = d.in, out = d.out;
        const float* yp = c_contiguous(y, "y", 2);
        require_shape(y, "y", {n, out});
        const float* zp = yp;  // activations that read only y never look at z
        if (z) {
          zp = c_contiguous(*z, "z", 2);
          require_shape(*z, "z", {n, out});
        } else if (activation != "linear") {
          throw py::value_error("z: the pre-activation is required for activation '" +
                                activation + "' (call dense_forward with save_z=True)");
        }
        float* dzp;
        py::array dz = dy;
        if (overwrite_dy) {
          dzp = mutable_c_contiguous(dy, "dy", 2);
        } else {
          const float* dyp = c_contiguous(dy, "dy", 2);
          py::array_t<float> copy = new_array({dy.shape(0), dy.shape(1)});
          dzp = copy.mutable_data();
          std::memcpy(dzp, dyp, size_t(dy.size()) * 4);  // dy itself stays untouched
          dz = copy;
        }
        require_shape(dy, "dy", {n, out});
        if (accumulate && (!dW_out || !db_out))
          throw py::value_error("accumulate: needs both dW_out and db_out to add into");
        py::array dW = dW_out ? *dW_out : py::array(new_array({in, out}));
        py::array db = db_out ? *db_out : py::array(new_array({out}));
        float* dWp = mutable_c_contiguous(dW, "dW_out", 2);
        require_shape(dW, "dW_out", {in, out});
        float* dbp = mutable_c_contiguous(db, "db_out", 1);
        require_shape(db, "db_out", {out});
        py::object dx = py::none();
        float* dxp = nullptr;
        if (compute_dx) {
          py::array_t<float> dxa = new_array({n, in});
          dxp = dxa.mutable_data();
          dx = dxa;
        }
        {
          ComputeCall nogil;
          nn::dense_backward(n, in, out, xp, ldx, Wp, zp, yp, dzp, &act, params.data(), dWp,
                             dbp, dxp, nthreads, accumulate);
        }
        return py::make_tuple(dx, dW, db);
      },
      py::arg("x"), py::arg("W"), py::arg("z"), py::arg("y"), py::arg("dy"),
      py::arg("activation") = "linear", py::arg("params") = std::vector<float>{},
      py::arg("compute_dx") = true, py::arg("overwrite_dy") = false,
      py::arg("dW_out") = py::none(), py::arg("db_out") = py::none(),
      py::arg("accumulate") = false, py::arg("nthreads") = 0,
      "Backward of dense_forward. Returns (dx or None, dW, db). dz = dy * act'(z) is written "
      "into dy when overwrite_dy (else into a copy). dW/db go to dW_out/db_out when given, "
      "added to their contents when accumulate.");

  m.def(
      "column_sums",
      [](py::array x, int nthreads) {
        const float* xp = c_contiguous(x, "x", 2);
        const int64_t n = x.shape(0), c = x.shape(1);
        py::array_t<float> out = new_array({c});
        float* op = out.mutable_data();
        {
          ComputeCall nogil;
          nn::activation_backward_colsum(n, c, nullptr, nullptr, const_cast<float*>(xp),
                                         nullptr, nullptr, op, false, nthreads);
        }
        return out;
      },
      py::arg("x"), py::arg("nthreads") = 0,
      "Sums of the columns of a C-contiguous float32 (n, c) array, rows added in order.");

  m.def(
      "dropout_forward",
      [](py::array x, float rate, uint64_t seed, uint64_t stream) {
        const float* xp = c_contiguous(x, "x", x.ndim());
        if (!(rate >= 0.0f && rate < 1.0f))
          throw py::value_error("rate: expected a number in [0, 1), got " + std::to_string(rate));
        std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
        py::array_t<float> y(shape), mask(shape);
        float* yp = y.mutable_data();
        float* mp = mask.mutable_data();
        const int64_t n = x.size();
        {
          ComputeCall nogil;
          std::memcpy(yp, xp, size_t(n) * 4);
          nn::dropout_forward(yp, mp, n, rate, seed, stream);
        }
        return py::make_tuple(y, mask);
      },
      py::arg("x"), py::arg("rate"), py::arg("seed"), py::arg("stream") = 0,
      "Inverted dropout. Returns (y, mask), mask holding 1/(1-rate) for kept elements and 0 "
      "for dropped ones; element i of the mask depends only on (seed, stream, i).");
  m.def(
      "dropout_backward",
      [](py::array dy, py::array mask) {
        const float* dyp = c_contiguous(dy, "dy", dy.ndim());
        const float* mp = c_contiguous(mask, "mask", dy.ndim());
        std::vector<int64_t> shape(dy.shape(), dy.shape() + dy.ndim());
        require_shape(mask, "mask", shape);
        py::array_t<float> dx(std::vector<py::ssize_t>(dy.shape(), dy.shape() + dy.ndim()));
        float* dxp = dx.mutable_data();
        const int64_t n = dy.size();
        {
          ComputeCall nogil;
          nn::dropout_backward(dyp, mp, dxp, n);
        }
        return dx;
      },
      py::arg("dy"), py::arg("mask"), "dx = dy * mask.");

  m.def(
      "batchnorm_forward_train",
      [](py::array x, py::array gamma, py::array beta, py::array moving_mean,
         py::array moving_var, float momentum, float epsilon) {
        const float* xp = c_contiguous(x, "x", 2);
        const int64_t n = x.shape(0), c = x.shape(1);
        const float* gp = c_contiguous(gamma, "gamma", 1);
        require_shape(gamma, "gamma", {c});
        const float* bp = c_contiguous(beta, "beta", 1);
        require_shape(beta, "beta", {c});
        float* mmp = mutable_c_contiguous(moving_mean, "moving_mean", 1);
        require_shape(moving_mean, "moving_mean", {c});
        float* mvp = mutable_c_contiguous(moving_var, "moving_var", 1);
        require_shape(moving_var, "moving_var", {c});
        if (n < 1) throw py::value_error("x: batch statistics need at least one row, got 0");
        if (!(epsilon > 0.0f))
          throw py::value_error("epsilon: expected a positive number, got " +
                                std::to_string(epsilon));
        py::array_t<float> y = new_array({n, c}), xhat = new_array({n, c}),
                           inv_std = new_array({c});
        float* yp = y.mutable_data();
        float* hp = xhat.mutable_data();
        float* ip = inv_std.mutable_data();
        {
          ComputeCall nogil;
          nn::batchnorm_forward_train(xp, n, c, gp, bp, momentum, epsilon, mmp, mvp, hp, ip, yp);
        }
        return py::make_tuple(y, xhat, inv_std);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("moving_mean"),
      py::arg("moving_var"), py::arg("momentum") = 0.99f, py::arg("epsilon") = 1e-3f,
      "Batch normalisation with batch statistics. Returns (y, xhat, inv_std); moving_mean and "
      "moving_var are updated in place.");
  m.def(
      "batchnorm_forward_infer",
      [](py::array x, py::array gamma, py::array beta, py::array moving_mean,
         py::array moving_var, float epsilon) {
        const float* xp = c_contiguous(x, "x", 2);
        const int64_t n = x.shape(0), c = x.shape(1);
        const float* gp = c_contiguous(gamma, "gamma", 1);
        require_shape(gamma, "gamma", {c});
        const float* bp = c_contiguous(beta, "beta", 1);
        require_shape(beta, "beta", {c});
        const float* mmp = c_contiguous(moving_mean, "moving_mean", 1);
        require_shape(moving_mean, "moving_mean", {c});
        const float* mvp = c_contiguous(moving_var, "moving_var", 1);
        require_shape(moving_var, "moving_var", {c});
        if (!(epsilon > 0.0f))
          throw py::value_error("epsilon: expected a positive number, got " +
                                std::to_string(epsilon));
        py::array_t<float> y = new_array({n, c});
        float* yp = y.mutable_data();
        {
          ComputeCall nogil;
          nn::batchnorm_forward_infer(xp, n, c, gp, bp, mmp, mvp, epsilon, yp);
        }
        return y;
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("moving_mean"),
      py::arg("moving_var"), py::arg("epsilon") = 1e-3f,
      "Batch normalisation with the moving statistics (inference).");
  m.def(
      "batchnorm_backward",
      [](py::array dy, py::array xhat, py::array inv_std, py::array gamma) {
        const float* dyp = c_contiguous(dy, "dy", 2);
        const int64_t n = dy.shape(0), c = dy.shape(1);
        const float* hp = c_contiguous(xhat, "xhat", 2);
        require_shape(xhat, "xhat", {n, c});
        const float* ip = c_contiguous(inv_std, "inv_std", 1);
        require_shape(inv_std, "inv_std", {c});
        const float* gp = c_contiguous(gamma, "gamma", 1);
        require_shape(gamma, "gamma", {c});
        py::array_t<float> dx = new_array({n, c}), dgamma = new_array({c}),
                           dbeta = new_array({c});
        float* dxp = dx.mutable_data();
        float* dgp = dgamma.mutable_data();
        float* dbp = dbeta.mutable_data();
        {
          ComputeCall nogil;
          nn::batchnorm_backward(dyp, hp, ip, gp, n, c, dxp, dgp, dbp);
        }
        return py::make_tuple(dx, dgamma, dbeta);
      },
      py::arg("dy"), py::arg("xhat"), py::arg("inv_std"), py::arg("gamma"),
      "Backward of batchnorm_forward_train. Returns (dx, dgamma, dbeta).");

  m.def(
      "l1_l2_penalty",
      [](py::array w, std::optional<py::array> g, float l1, float l2) {
        const float* wp = c_contiguous(w, "w", w.ndim());
        float* gp = nullptr;
        if (g) {
          gp = mutable_c_contiguous(*g, "g", g->ndim());
          std::vector<int64_t> shape(w.shape(), w.shape() + w.ndim());
          require_shape(*g, "g", shape);
        }
        if (!(l1 >= 0.0f) || !(l2 >= 0.0f))
          throw py::value_error("l1, l2: expected non-negative numbers, got l1=" +
                                std::to_string(l1) + ", l2=" + std::to_string(l2));
        const int64_t n = w.size();
        double v;
        {
          ComputeCall nogil;
          v = nn::l1_l2_penalty(wp, gp, n, l1, l2);
        }
        return v;
      },
      py::arg("w"), py::arg("g") = py::none(), py::arg("l1") = 0.0f, py::arg("l2") = 0.0f,
      "Returns l1*sum|w| + l2*sum w^2 and adds its gradient l1*sign(w) + 2*l2*w to g (in place) "
      "when g is given.");
}

}  // namespace pynn::bind
