// pynn._core.gemm: the raw GEMM entry point behind pynn.ops.gemm.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <vector>

#include <pybind11/stl.h>

#include "bindings/util.h"
#include "gemm/gemm.h"
#include "nn/activations.h"

namespace pynn::bind {

void register_gemm(py::module_& m) {
  m.def(
      "gemm",
      [](py::array a, py::array b, py::array out, float alpha, float beta,
         std::optional<py::array> bias, const std::string& activation,
         std::vector<float> act_params, std::optional<py::array> preact, int nthreads) {
        const auto [av, bv, c, M, K, N] = product_operands(a, b, out);
        gemm::Epilogue ep;
        ep.bias = bias_for_columns(bias, N);
        if (preact) {
          ep.preact = mutable_c_contiguous(*preact, "preact", 2);
          if (preact->shape(0) != M || preact->shape(1) != N)
            throw py::value_error("preact: must have the shape of out");
          ep.ld_preact = N;
        }
        const nn::ActivationInfo* act = nn::find_activation(activation);
        if (act == nullptr) throw py::value_error("unknown activation '" + activation + "'");
        if (int(act_params.size()) != act->nparams)
          throw py::value_error("activation '" + activation + "' takes " +
                                std::to_string(act->nparams) + " parameters");
        if (auto err = nn::activation_params_error(*act, act_params.data()); !err.empty())
          throw py::value_error("activation '" + activation + "': " + err);
        if (activation != "linear") {
          ep.act = act->forward;
          ep.act_params = act_params.data();
        }
        {
          ComputeCall nogil;
          gemm::sgemm(M, N, K, alpha, av, bv, beta, c, N, ep, nthreads);
        }
        return out;
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha") = 1.0f,
      py::arg("beta") = 0.0f, py::arg("bias") = py::none(), py::arg("activation") = "linear",
      py::arg("act_params") = std::vector<float>{}, py::arg("preact") = py::none(),
      py::arg("nthreads") = 0,
      "out = act(alpha * a @ b + beta * out + bias); a, b float32 2-D views with any strides, "
      "out C-contiguous float32.");
  m.def(
      "gemm_prepacked_b",
      [](py::array a, py::array b, py::array out, float alpha, float beta, int nthreads) {
        const auto [av, bv, c, M, K, N] = product_operands(a, b, out);
        const size_t bytes = (size_t(gemm::packed_b_size(K, N)) * sizeof(float) + 127) / 64 * 64;
        std::unique_ptr<float, decltype(&std::free)> packed(
            static_cast<float*>(std::aligned_alloc(64, bytes)), &std::free);
        if (!packed) throw std::bad_alloc();
        {
          ComputeCall nogil;
          gemm::pack_b_whole(K, N, bv, packed.get());
          gemm::sgemm_prepacked_b(M, N, K, alpha, av, bv, packed.get(), beta, c, N,
                                  gemm::Epilogue{}, nthreads);
        }
        return out;
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha") = 1.0f,
      py::arg("beta") = 0.0f, py::arg("nthreads") = 0,
      "out = alpha * a @ b + beta * out with b packed whole first (pack_b_whole, then "
      "sgemm_prepacked_b): the path the recurrent op takes; for tests.");
  m.def(
      "set_gemm_sparse",
      [](int mode) { gemm::set_sparse_mode(mode); }, py::arg("mode"),
      "The float32 GEMM's zero-skipping path: 1 whenever B allows it, 0 never, -1 when the "
      "probe finds A zero-heavy (the default; PYNN_GEMM_SPARSE sets the initial mode). For "
      "tests and benchmarks: the result is bitwise the same either way when B is finite.");
  m.def("gemm_sparse_mode", [] { return gemm::sparse_mode(); },
        "The zero-skipping path's mode (see set_gemm_sparse).");
  m.def("gemm_sparse_calls", [] { return gemm::sparse_calls(); },
        "How many float32 GEMMs have taken the zero-skipping path in this process.");
  m.def(
      "gemm_threads",
      [](int64_t m, int64_t n, int64_t k) { return gemm::threads_for(m, n, k, 0); },
      py::arg("m"), py::arg("n"), py::arg("k"),
      "How many threads a GEMM of this size would use now.");
}

}  // namespace pynn::bind
