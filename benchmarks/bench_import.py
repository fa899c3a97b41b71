"""Time of a fresh `import pynn` (target <= 0.2 s), with `import numpy` alone for scale.

    pytest benchmarks/bench_import.py
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import record

CODE = "import time; t=time.perf_counter(); import {mod}; print(time.perf_counter()-t)"


@pytest.mark.parametrize("mod", ["pynn", "numpy"])
def test_import_time(mod):
    times = []
    for _ in range(7):
        res = subprocess.run([sys.executable, "-c", CODE.format(mod=mod)], capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(__file__), timeout=60)
        times.append(float(res.stdout))
    record("import", "fresh interpreter", "pynn" if mod == "pynn" else "numpy", min(times))
