// Bindings for the optimizers area (see csrc/nn/).
#include <pybind11/pybind11.h>

namespace pynn::bind {
namespace py = pybind11;

void register_optimizers(py::module_& m) {}

}  // namespace pynn::bind
