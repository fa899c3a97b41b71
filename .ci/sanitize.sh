#!/usr/bin/env bash
# Builds the core with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# PYNN_SANITIZE) into a fresh venv and runs the core and kernel tests under them.
# Any sanitizer report, from pytest itself or from a subprocess a test starts, fails the run.
#
# Usage: bash .ci/sanitize.sh            (from anywhere; builds the tree this script lives in)
# Env:   PYTHON       interpreter to make the venv from (default python3)
#        SANITIZE_DIR scratch folder for venv, build tree and reports (default: a new temp dir)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="${SANITIZE_DIR:-$(mktemp -d -t pynn-sanitize.XXXXXX)}"
mkdir -p "$WORK"
REPORTS="$WORK/reports"
rm -rf "$REPORTS" "$WORK/venv"
mkdir -p "$REPORTS"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

echo "== sanitize: venv and build in $WORK"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
# The build backend goes into the venv so the sanitized build can reuse one build tree
# (--no-build-isolation); the rest is what the selected tests import.
"$VPY" -m pip install -q scikit-build-core pybind11 numpy pytest threadpoolctl hypothesis
# --no-cache-dir: the sanitized extension must be built here, never a wheel pip cached from the
# ordinary install of the same version from the same folder.
"$VPY" -m pip install -q --no-cache-dir --no-build-isolation \
  -Ccmake.define.PYNN_SANITIZE=ON -Cbuild-dir="$WORK/build" "$ROOT"

# The extension is instrumented but the interpreter is not, so the ASan runtime has to be the
# first library loaded: preload the one of the compiler that built the extension.
# libstdc++ is preloaded right after it: the interpreter does not link it, and ASan resolves the
# real __cxa_throw when it starts, so without it the first C++ exception aborts with
# "CHECK failed: ... real___cxa_throw ...".
LIBASAN="$(${CXX:-g++} -print-file-name=libasan.so)"
LIBSTDCXX="$(${CXX:-g++} -print-file-name=libstdc++.so)"
for lib in "$LIBASAN" "$LIBSTDCXX"; do
  if [ ! -e "$lib" ]; then
    echo "sanitize: runtime library not found (got '$lib')" >&2
    exit 2
  fi
done

# A guard against a silently unsanitized build (option renamed, flags dropped): the installed
# extension must link the ASan runtime.
# (Found by path: importing it here, before the preload below, would fail.)
CORE_SO="$(ls "$WORK"/venv/lib/python3*/site-packages/pynn/_core*.so | head -n 1)"
# (ldd's output is captured first: with pipefail, `ldd | grep -q` fails at random when grep
# exits at its first match and ldd, still writing, dies of SIGPIPE.)
CORE_LIBS="$(ldd "$CORE_SO")"
if ! grep -q libasan <<<"$CORE_LIBS"; then
  echo "sanitize: $CORE_SO is not linked against libasan; PYNN_SANITIZE had no effect" >&2
  exit 2
fi

TESTS=()
for t in "$ROOT"/tests/test_gemm*.py tests/test_dense.py tests/test_regularization.py \
         tests/test_activations.py tests/test_losses.py tests/test_optimizers.py \
         tests/test_descriptors.py tests/test_graph_engine.py; do
  case "$t" in /*) ;; *) t="$ROOT/$t" ;; esac
  [ -e "$t" ] && TESTS+=("$t")
done
echo "== sanitize: running ${#TESTS[@]} test files under ASan + UBSan"

# detect_leaks=0: CPython never frees much of what it allocates at exit (interned objects,
# module state, arenas), so LeakSanitizer would report thousands of "leaks" that are not ours
# and bury anything real; leaks are measured separately (RSS over repeated fit/predict).
# log_path: every process, including the subprocesses some tests start (they inherit this
# environment), writes its reports to files we inspect afterwards, so a finding in a child
# whose exit status a test tolerates still fails this script.
set +e
(
  cd "$ROOT/tests"  # not the repo root: the source tree's pynn has no compiled _core
  LD_PRELOAD="$LIBASAN $LIBSTDCXX" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$REPORTS/asan" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$REPORTS/ubsan" \
  "$VPY" -P -m pytest -q -p no:cacheprovider --rootdir="$ROOT" -c "$ROOT/pyproject.toml" \
    "${TESTS[@]}"
)
status=$?
set -e

found=0
for f in "$REPORTS"/*; do
  [ -e "$f" ] || continue
  found=1
  echo "== sanitizer report: $f"
  cat "$f"
done
if [ "$found" -ne 0 ]; then
  echo "sanitize: FAILED, sanitizer findings above" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize: FAILED, pytest exit status $status" >&2
  exit "$status"
fi
echo "sanitize: OK, no findings"
