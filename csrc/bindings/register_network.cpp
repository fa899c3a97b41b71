// Bindings for the network area (see csrc/nn/).
#include <pybind11/pybind11.h>

namespace pynn::bind {
namespace py = pybind11;

void register_network(py::module_& m) {}

}  // namespace pynn::bind
