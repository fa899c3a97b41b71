// Helpers shared by the register_*.cpp files: turning NumPy arrays into raw views.
// The Python layer validates user input; these checks are a last line of defence so that a
// mistake in Python can never become an out-of-bounds access in C++.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/fpenv.h"
#include "gemm/gemm.h"

namespace pynn::bind {

namespace py = pybind11;

// What a binding holds while it computes: the GIL released, and flush-to-zero and
// denormals-are-zero on this thread until it returns (common/fpenv.h explains why; the
// caller's MXCSR is restored, so NumPy keeps its subnormals).
struct __attribute__((visibility("hidden"))) ComputeCall {  // hidden, as pybind11 is
  py::gil_scoped_release nogil;
  fp::FlushDenormals ftz;
};

// The sizes (M, K, N) of out = a @ b, after checking that a (M, K), b (K, N) and out (M, N)
// agree; a ValueError naming the mismatch otherwise.
struct ProductShape {
  int64_t m, k, n;
};

inline ProductShape product_shape(const py::array& a, const py::array& b,
                                  const py::array& out) {
  const int64_t M = a.shape(0), K = a.shape(1), N = b.shape(1);
  if (b.shape(0) != K) throw py::value_error("a and b: inner dimensions differ");
  if (out.shape(0) != M || out.shape(1) != N)
    throw py::value_error("out: wrong shape for the product");
  return {M, K, N};
}

inline void require_f32(const py::array& a, const char* name, int ndim) {
  if (!py::isinstance<py::array_t<float>>(a) || a.dtype().kind() != 'f' || a.itemsize() != 4)
    throw py::type_error(std::string(name) + ": expected a float32 array");
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(ndim) +
                          "-D array, got " + std::to_string(a.ndim()) + "-D");
  for (int d = 0; d < ndim; ++d)
    if (a.strides(d) % 4 != 0)
      throw py::value_error(std::string(name) + ": strides must be multiples of 4 bytes");
}

inline gemm::MatrixView matrix_view(const py::array& a, const char* name) {
  require_f32(a, name, 2);
  return {static_cast<const float*>(a.data()), a.strides(0) / 4, a.strides(1) / 4};
}

inline float* mutable_c_contiguous(py::array& a, const char* name, int ndim) {
  require_f32(a, name, ndim);
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  if (!a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  return static_cast<float*>(a.mutable_data());
}

// Property accessors with named arguments (self, value) in signatures and stubs.
template <class F>
py::cpp_function getter(F&& f) {
  return py::cpp_function(std::forward<F>(f), py::arg("self"));
}
template <class F>
py::cpp_function setter(F&& f) {
  return py::cpp_function(std::forward<F>(f), py::arg("self"), py::arg("value"));
}

inline const float* c_contiguous(const py::array& a, const char* name, int ndim) {
  require_f32(a, name, ndim);
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  return static_cast<const float*>(a.data());
}

// A product's checked operands: a and b as float32 2-D views, out C-contiguous and writable,
// and the shapes agreeing (product_shape).
struct ProductOperands {
  gemm::MatrixView a, b;
  float* c;
  int64_t m, k, n;
};

inline ProductOperands product_operands(const py::array& a, const py::array& b,
                                        py::array& out) {
  const gemm::MatrixView av = matrix_view(a, "a");
  const gemm::MatrixView bv = matrix_view(b, "b");
  float* c = mutable_c_contiguous(out, "out", 2);
  const ProductShape s = product_shape(a, b, out);
  return {av, bv, c, s.m, s.k, s.n};
}

// The checked bias of a product with n columns (null when there is none).
inline const float* bias_for_columns(const std::optional<py::array>& bias, int64_t n) {
  if (!bias) return nullptr;
  const float* p = c_contiguous(*bias, "bias", 1);
  if (bias->shape(0) != n) throw py::value_error("bias: length must equal columns of out");
  return p;
}

}  // namespace pynn::bind
