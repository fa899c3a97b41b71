// Machine-level facts and settings: instruction set, kernel, blocksizes, threads.
#include <pybind11/pybind11.h>

#include <chrono>

#include "common/cpu.h"
#include "common/parallel.h"

#include "gemm/blocksizes.h"
#include "gemm/gemm.h"

namespace pynn::gemm {
float fma_loop_avx512(int64_t iters);
float fma_loop_avx2(int64_t iters);
}  // namespace pynn::gemm

namespace pynn::bind {
namespace py = pybind11;

void register_system(py::module_& m) {
  m.def("arch_error", [] { return arch_error(); },
        "Why PYNN_ARCH could not be honoured ('' when it was).");
  m.def("arch", [] { return std::string(arch_name(active_arch())); });
  m.def(
      "cpu_supports",
      [](const std::string& name) {
        if (name == "generic") return cpu_supports(Arch::generic);
        if (name == "avx2") return cpu_supports(Arch::avx2);
        if (name == "avx512") return cpu_supports(Arch::avx512);
        if (name == "avx512_bf16") return cpu_supports(Bf16Arch::avx512_bf16);
        if (name == "amx") return cpu_supports(Bf16Arch::amx);
        throw py::value_error("unknown instruction set '" + name + "'");
      },
      py::arg("name"), "Whether this CPU runs the named instruction set (generic, avx2, avx512, "
      "avx512_bf16, amx).");
  m.def("kernel_info", [] {
    const gemm::KernelInfo& k = gemm::active_kernel();
    py::dict d;
    d["kernel"] = k.name;
    d["arch"] = arch_name(k.arch);
    d["MR"] = k.mr;
    d["NR"] = k.nr;
    d["KC"] = k.kc;
    d["MC"] = k.mc;
    d["NC"] = k.nc;
    d["parallel_threshold"] = gemm::kParallelThreshold;
    d["direct_max_m"] = k.direct_max_m;
    d["narrow_max_n"] = k.narrow_max_n;
    // The zero-skipping path (gemm.h): columns per pass, B rows per L1 sub-block, and when
    // the default mode takes it.
    d["sparse_width"] = k.sparse_width;
    d["sparse_depth"] = k.sparse_depth;
    d["sparse_min_zero_fraction"] = gemm::kSparseMinZeroFraction;
    d["sparse_min_n"] = gemm::kSparseMinN;
    // The caches cpuid reports (bytes, 0: not reported), from which KC, MC and NC derive.
    const gemm::CacheSizes& c = gemm::cpu_caches();
    d["cache_l1d"] = c.l1d;
    d["cache_l2"] = c.l2;
    d["cache_l3"] = c.l3;
    return d;
  });
  m.def(
      "measure_fma_peak",
      [](int64_t iters) {
        // One core's FP32 multiply-add rate (GFLOP/s) for the active ISA, measured.
        py::gil_scoped_release nogil;
        const auto t0 = std::chrono::steady_clock::now();
        double flops = 0.0;
        volatile float sink = 0.0f;
#if defined(PYNN_X86)
        if (active_arch() == Arch::avx512) {
          sink = gemm::fma_loop_avx512(iters);
          flops = double(iters) * 16 * 16 * 2;  // kPeakChains x lanes x 2, kernels_avx512.cpp
        } else if (active_arch() == Arch::avx2) {
          sink = gemm::fma_loop_avx2(iters);
          flops = double(iters) * 12 * 8 * 2;  // kPeakChains x lanes x 2, kernels_avx2.cpp
        }
#endif
        (void)sink;
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return s > 0 ? flops / s / 1e9 : 0.0;
      },
      py::arg("iters") = 20000000);
  m.def("get_num_threads", [] { return parallel::max_threads(); });
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("n must be a positive integer, got " + std::to_string(n));
    parallel::set_max_threads(n);
  }, py::arg("n"));
  m.def(
      "pool_info",
      [] {
        const parallel::PoolStats s = parallel::stats();
        py::dict d;
        d["pid"] = s.pid;
        d["workers"] = s.workers;
        d["regions"] = s.regions;
        d["inline_regions"] = s.inline_regions;
        d["worker_tasks"] = s.worker_tasks;
        d["forks"] = s.forks;
        return d;
      },
      "The worker pool of this process: the pid it was made in (0: none yet), worker threads "
      "started, regions run on it and on the caller alone, tasks run by workers, and how many "
      "fork()s this process descends from since the core was loaded.");
}

}  // namespace pynn::bind

// C entry points for pynn's threadpoolctl controller (pynn/_threads.py), which reaches them
// through ctypes the way threadpoolctl reaches omp_get_max_threads in an OpenMP runtime.
extern "C" {
__attribute__((visibility("default"))) int pynn_threadpool_get_num_threads(void) {
  return pynn::parallel::max_threads();
}
__attribute__((visibility("default"))) void pynn_threadpool_set_num_threads(int n) {
  pynn::parallel::set_max_threads(n);
}
}
