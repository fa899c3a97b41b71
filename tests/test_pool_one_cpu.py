"""The worker pool when its threads outnumber the CPUs (a busy machine, a CPU quota): with the
whole process on one CPU and 2 threads, every parallel region has a thread without a CPU, so
the tasks are taken over by whichever thread runs (the caller from the end of the list, a
worker likewise when the caller is held up). The results must stay bitwise those of 1 thread
(and every region must end: a lost task would hang the call)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CODE = """
    import hashlib, os, sys
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before any thread exists
    import numpy as np, pynn
    from pynn import _core, layers as L

    def run(threads):
        pynn.set_num_threads(threads)
        pynn.utils.set_random_seed(0)
        m = pynn.Sequential([pynn.Input((64,)), L.Dense(96, activation="relu"),
                             L.Dense(10, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(1)
        x = rng.standard_normal((1500, 64)).astype(np.float32)
        y = rng.integers(0, 10, 1500)
        m.fit(x, y, epochs=2, batch_size=64, verbose=0)
        h = hashlib.sha256()
        for w in m.get_weights():
            h.update(w.tobytes())
        h.update(m.predict(x, verbose=0).tobytes())
        h.update(m.predict(x[:1], verbose=0).tobytes())
        a = rng.standard_normal((700, 300)).astype(np.float32)
        b = rng.standard_normal((300, 200)).astype(np.float32)
        h.update(pynn.ops.gemm(a, b, activation="relu").tobytes())
        return h.hexdigest()

    one = run(1)
    two = run(2)
    print(len(os.sched_getaffinity(0)), one == two, _core.pool_info()["workers"])
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
@pytest.mark.parametrize("spin_us", ["2000", "0"])
def test_two_threads_on_one_cpu_give_the_one_thread_bits(spin_us):
    env = dict(os.environ, PYNN_SPIN_US=spin_us)
    env.pop("OMP_NUM_THREADS", None)
    # cwd: the tests folder, so that the source tree's pynn (without _core) is not imported
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(CODE)], env=env,
                         capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0, res.stderr
    cpus, same, workers = res.stdout.split()
    assert cpus == "1"
    assert int(workers) >= 1  # the regions ran on the pool, not inline
    # (which thread ran how many tasks is up to the scheduler: not checked)
    assert same == "True", "2 threads on one CPU changed the results"
