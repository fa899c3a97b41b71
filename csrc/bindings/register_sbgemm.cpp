// pynn._core.sbgemm and sbgemm_info: the bf16 GEMM (gemm/sbgemm.h) behind pynn.ops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdlib>
#include <memory>
#include <optional>

#include <pybind11/stl.h>

#include "bindings/util.h"
#include "common/cpu.h"
#include "gemm/sbgemm.h"
#include "gemm/sbgemv.h"

namespace pynn::bind {

namespace {

// out = bf16(a) @ bf16(b) + beta out + bias: checks the arguments, then runs `run(operands, epilogue)` without the GIL.
template <class Run>
py::array sb_product(py::array a, py::array b, py::array out, std::optional<py::array> bias,
                     Run run) {
  const ProductOperands p = product_operands(a, b, out);
  gemm::Epilogue ep;
  ep.bias = bias_for_columns(bias, p.n);
  ComputeCall nogil;
  run(p, ep);
  return out;
}

}  // namespace

void register_sbgemm(py::module_& m) {
  m.def(
      "sbgemm",
      [](py::array a, py::array b, py::array out, float beta, std::optional<py::array> bias,
         int nthreads) {
        return sb_product(a, b, out, bias, [&](const ProductOperands& p, const gemm::Epilogue& ep) {
          gemm::sbgemm(p.m, p.n, p.k, p.a, p.b, beta, p.c, p.n, ep, nthreads);
        });
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("beta") = 0.0f,
      py::arg("bias") = py::none(), py::arg("nthreads") = 0,
      "out = bf16(a) @ bf16(b) + beta * out + bias, summed in float32; a, b float32 2-D views "
      "with any strides, out C-contiguous float32.");
  m.def(
      "sbgemm_prepacked_b",
      [](py::array a, py::array b, py::array out, float beta, std::optional<py::array> bias,
         int nthreads) {
        return sb_product(a, b, out, bias, [&](const ProductOperands& p, const gemm::Epilogue& ep) {
          const size_t bytes = (size_t(gemm::sb_packed_b_bytes(p.k, p.n)) + 127) / 64 * 64;
          std::unique_ptr<void, decltype(&std::free)> packed(std::aligned_alloc(64, bytes),
                                                             &std::free);
          if (!packed) throw std::bad_alloc();
          gemm::sb_pack_b_whole(p.k, p.n, p.b, packed.get());
          gemm::sbgemm_prepacked_b(p.m, p.n, p.k, p.a, packed.get(), beta, p.c, p.n, ep,
                                   nthreads);
        });
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("beta") = 0.0f,
      py::arg("bias") = py::none(), py::arg("nthreads") = 0,
      "sbgemm with b rounded and packed whole first (sb_pack_b_whole, then "
      "sbgemm_prepacked_b): the path the bf16 recurrent layers take; for tests.");
  m.def(
      "sbgemm_info",
      [] {
        const gemm::SbKernelInfo& k = gemm::active_sb_kernel();
        py::dict d;
        d["kernel"] = k.name;
        d["arch"] = arch_name(active_bf16_arch());
        d["MR"] = k.mr;
        d["NR"] = k.nr;
        d["KC"] = k.kc;
        d["MC"] = k.mc;
        d["NC"] = k.nc;
        d["kpad"] = k.kpad;
        d["row_kernel"] = gemm::sb_row_kernel() != nullptr;
        const gemm::SbRowKernel* rk = gemm::sb_row_kernel();
        d["row_kernel_max_rows"] = rk != nullptr ? rk->max_rows : 0;
        py::list calls;
        for (int r = 1; r <= gemm::kSbRowsMax; ++r) calls.append(gemm::sb_row_calls(r));
        d["row_kernel_calls"] = calls;
        return d;
      },
      "The bf16 GEMM's kernel and blocksizes (arch: what cpuid/PYNN_ARCH asked for; kernel: "
      "what runs, which differs when Linux refuses AMX; row_kernel: whether a one-row bf16 "
      "predict reads the weights in place, gemm/sbgemv.h, instead of packing them; "
      "row_kernel_max_rows: the most rows a predict takes there; row_kernel_calls[r - 1]: "
      "how many r-row blocks of a layer it has run in this process).");
}

}  // namespace pynn::bind
