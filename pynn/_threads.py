"""Thread control for the compiled core.

pynn's kernels run on its own worker pool (csrc/common/parallel.h), not on an OpenMP runtime:
libgomp's pool does not survive ``fork()``, and a child forked after the parent had trained
(multiprocessing's default start method on Linux, pre-fork servers, DataLoader-style workers)
used to wait for it forever. A forked child now starts its own workers.

The thread count is one process-wide setting:

* ``OMP_NUM_THREADS``, read when pynn is imported (its first entry, if it is a list), as
  joblib's and Dask's workers set it; otherwise the number of CPUs this process may run on;
* :func:`set_num_threads`;
* ``threadpoolctl``: pynn registers a controller with it (``internal_api`` "pynn",
  ``user_api`` "openmp", so that ``threadpool_limits(n)`` and
  ``threadpool_limits(n, user_api="openmp")`` limit pynn as they limit OpenMP libraries).
  The registration happens when threadpoolctl is imported, before or after pynn, so importing
  pynn does not import threadpoolctl.

Results are bitwise identical for any thread count.

Waiting: an idle worker spins for 2 ms before it sleeps (``PYNN_SPIN_US``). A thread done
with its share of a region takes over the tasks nobody has started (a worker held up by a busy
machine does not stall the region); ``PYNN_STEAL_US`` makes the region's owner wait that long
first (at most about twice its own share's time). A fork waits up to 10 s in total for
model calls running in other threads (``PYNN_FORK_WAIT_MS``); a model still busy then refuses
to run in the child.
All three are read at import.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import numbers
import sys

from pynn import _core


def get_num_threads() -> int:
    """The number of threads pynn's kernels may use."""
    return int(_core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Sets the number of threads pynn's kernels may use (a positive integer), for the whole
    process."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n: expected a positive integer, got {n!r} ({type(n).__name__})")
    if n < 1:
        raise ValueError(f"n: expected a positive integer, got {n}")
    _core.set_num_threads(int(n))


# --- threadpoolctl ---------------------------------------------------------------------------

# The core exports these with C linkage for the controller (csrc/bindings/register_system.cpp).
_GET = "pynn_threadpool_get_num_threads"
_SET = "pynn_threadpool_set_num_threads"
_registered = False


def _register_controller(threadpoolctl) -> None:
    """Teaches threadpoolctl (>= 3.0, which has `register`) to find and limit pynn's pool."""
    global _registered
    if _registered or not hasattr(threadpoolctl, "register"):
        return
    import os

    core_name = os.path.basename(_core.__file__)
    prefix = core_name.split(".")[0]  # "_core": confirmed by the exported symbols below

    class PynnController(threadpoolctl.LibController):
        user_api = "openmp"
        internal_api = "pynn"
        filename_prefixes = (prefix,)
        check_symbols = (_GET, _SET)

        def get_num_threads(self):
            fn = getattr(self.dynlib, _GET, None)
            return None if fn is None else int(fn())

        def set_num_threads(self, num_threads):
            fn = getattr(self.dynlib, _SET, None)
            if fn is not None:
                fn(max(1, int(num_threads)))

        def get_version(self):
            from pynn import __version__

            return __version__

    threadpoolctl.register(PynnController)
    _registered = True


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `_register_controller` right after threadpoolctl is imported.

    It stays on ``sys.meta_path`` until the module has really been executed: a caller that
    only asks whether threadpoolctl exists (``importlib.util.find_spec``, as torch and some
    test tools do) gets a spec that is never executed, and a one-shot hook spent on such a
    probe left pynn unregistered when threadpoolctl was imported for real later."""

    _looking = False  # set while our own find_spec call below runs: it must not find us

    def find_spec(self, name, path=None, target=None):
        if name != "threadpoolctl" or self._looking:
            return None
        self._looking = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        exec_module = loader.exec_module
        finder = self

        def exec_then_register(module):
            exec_module(module)
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
            try:
                _register_controller(module)
            except Exception:  # noqa: BLE001 - a threadpoolctl we do not understand: skip
                pass

        loader.exec_module = exec_then_register
        return spec


def _install() -> None:
    module = sys.modules.get("threadpoolctl")
    if module is not None:
        try:
            _register_controller(module)
        except Exception:  # noqa: BLE001
            pass
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


_install()
