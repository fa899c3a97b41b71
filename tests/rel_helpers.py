"""Helpers for the reliability suites: run many cases in child processes, so that a case that
crashes the interpreter (segfault, abort, OOM kill) fails its test instead of the whole run.

A child runs the named cases of one test module in order and prints one JSON line per case
(prefixed by MARK) as soon as it finishes; when the child dies, the first case without a line
is the one that crashed, and a fresh child goes on with the cases after it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback

MARK = "@@case "
HERE = os.path.dirname(os.path.abspath(__file__))


def child_env(**extra):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def limit_address_space(gib):
    """Caps this process's virtual memory, so an attempt to allocate hugely fails with
    MemoryError (std::bad_alloc) instead of touching the machine's memory."""
    import resource

    limit = int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def peak_rss_mib():
    """This process's RSS high-water mark (VmHWM). Not getrusage's ru_maxrss, which survives
    exec and so reports the forking parent's peak in a fresh child."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def report(name, **fields):
    sys.stdout.write(MARK + json.dumps({"name": name, **fields}) + "\n")
    sys.stdout.flush()


def describe_exception(exc):
    return {"outcome": "raised", "type": type(exc).__name__,
            "mro": [c.__name__ for c in type(exc).__mro__],
            "msg": str(exc)[:500], "where": traceback.format_exc(limit=-2)[-600:]}


def run_cases(module, names, *, timeout=120, env=None, address_space_gib=None):
    """Runs `module._child(names)` in fresh interpreters until every case reported or crashed.

    Returns (results by name, crashed names with the child's exit status and stderr tail).
    """
    results, crashes = {}, {}
    remaining = list(names)
    while remaining:
        code = (f"import sys, json; sys.path.insert(0, {HERE!r}); import rel_helpers; "
                + (f"rel_helpers.limit_address_space({address_space_gib}); "
                   if address_space_gib else "")
                + f"import {module} as m; m._child(json.loads(sys.argv[1]))")
        try:
            proc = subprocess.run([sys.executable, "-P", "-c", code, json.dumps(remaining)],
                                  capture_output=True, text=True, timeout=timeout,
                                  env=env or child_env(), cwd=HERE)
            out, err, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err, rc = "timeout", "timeout"
        for line in out.splitlines():
            if line.startswith(MARK):
                rec = json.loads(line[len(MARK):])
                results[rec["name"]] = rec
        left = [n for n in remaining if n not in results]
        if not left:
            break
        crashes[left[0]] = {"returncode": rc, "stderr": err[-2000:]}
        remaining = left[1:]
    return results, crashes
