// Bindings for the layers area (see csrc/nn/).
#include <pybind11/pybind11.h>

namespace pynn::bind {
namespace py = pybind11;

void register_layers(py::module_& m) {}

}  // namespace pynn::bind
