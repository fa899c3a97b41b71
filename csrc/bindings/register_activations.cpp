// Activation kernels (element-wise and softmax).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/util.h"
#include "nn/activations.h"

namespace pynn::bind {

namespace {
const nn::ActivationInfo& activation_or_throw(const std::string& name, size_t nparams) {
  const nn::ActivationInfo* act = nn::find_activation(name);
  if (act == nullptr) throw py::value_error("unknown activation '" + name + "'");
  if (int(nparams) != act->nparams)
    throw py::value_error("activation '" + name + "' takes " + std::to_string(act->nparams) +
                          " parameters, got " + std::to_string(nparams));
  return *act;
}
}  // namespace

void register_activations(py::module_& m) {
  m.def("activation_names", [] {
    std::vector<std::string> names;
    for (const auto& a : nn::activations()) names.emplace_back(a.name);
    return names;
  });
  m.def(
      "activation_forward",
      [](py::array x, const std::string& name, std::vector<float> params) {
        const auto& act = activation_or_throw(name, params.size());
        float* p = mutable_c_contiguous(x, "x", x.ndim());
        const int64_t n = x.size();
        {
          py::gil_scoped_release nogil;
          act.forward(p, n, params.data());
        }
        return x;
      },
      py::arg("x"), py::arg("name"), py::arg("params") = std::vector<float>{},
      "Applies the activation in place to a C-contiguous float32 array and returns it.");
  m.def(
      "activation_backward",
      [](py::array z, py::array y, py::array dy, py::array dz, const std::string& name,
         std::vector<float> params) {
        const auto& act = activation_or_throw(name, params.size());
        const int nd = z.ndim();
        const float* zp = c_contiguous(z, "z", nd);
        const float* yp = c_contiguous(y, "y", nd);
        const float* dyp = c_contiguous(dy, "dy", nd);
        float* dzp = mutable_c_contiguous(dz, "dz", nd);
        const int64_t n = z.size();
        if (y.size() != n || dy.size() != n || dz.size() != n)
          throw py::value_error("z, y, dy and dz must have the same size");
        {
          py::gil_scoped_release nogil;
          act.backward(zp, yp, dyp, dzp, n, params.data());
        }
        return dz;
      },
      py::arg("z"), py::arg("y"), py::arg("dy"), py::arg("dz"), py::arg("name"),
      py::arg("params") = std::vector<float>{},
      "dz = dy * f'(z) for the named activation (y = f(z) must be given too).");
}

}  // namespace pynn::bind
