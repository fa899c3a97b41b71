// The pynn._core extension: each area registers its own functions from its own file.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace pynn::bind {
void register_system(py::module_& m);
void register_gemm(py::module_& m);
void register_activations(py::module_& m);
void register_losses(py::module_& m);
void register_layers(py::module_& m);
void register_optimizers(py::module_& m);
void register_network(py::module_& m);
void register_graph(py::module_& m);
void register_sbgemm(py::module_& m);
}  // namespace pynn::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "pynn's compiled core (private: use pynn.ops and the model API)";
  pynn::bind::register_system(m);
  pynn::bind::register_gemm(m);
  pynn::bind::register_activations(m);
  pynn::bind::register_losses(m);
  pynn::bind::register_layers(m);
  pynn::bind::register_optimizers(m);
  pynn::bind::register_network(m);
  pynn::bind::register_graph(m);
  pynn::bind::register_sbgemm(m);
}
