// pynn's own worker pool: the parallel regions of every kernel run on it.
//
// Why not OpenMP: libgomp keeps one process-wide team of threads, and fork() copies only the
// thread that called it. A child forked after the parent used the team (multiprocessing's
// default start method on Linux, pre-fork servers, DataLoader-style workers) waits forever at
// its first parallel region for workers that do not exist. This pool forgets itself in a
// forked child (pthread_atfork) and starts fresh workers there on first use; the parent's
// workers go on untouched.
//
// Model: run(nt, f) calls f(t) once for every t in [0, nt) and returns when all calls have
// finished. Task t belongs to participant t % P (the calling thread is participant 0, worker i
// is participant i), as OpenMP hands thread t its share, so each core keeps working on the
// same part of the data from call to call. A task its thread has not started (asleep, or no
// free CPU) when another thread is done with its own is run by that thread instead (the
// caller, or a worker). So a task must compute from (t, nt)
// alone: then the results depend only on nt, exactly as with OpenMP's `parallel` +
// omp_get_thread_num() or `schedule(static)` loops (static_block below is that schedule's
// split). While another
// caller's region holds the pool, or on a thread that is already running a task, the tasks run
// one after another on the calling thread: the same results, no oversubscription and no
// nested waiting.
//
// Thread count: one process-wide setting (as OpenBLAS's), taken from OMP_NUM_THREADS at
// start-up (its first entry when it is a list) or else from the CPUs this process may run on
// (its affinity mask, capped by a cgroup CPU quota),
// and changed by set_max_threads() (pynn.set_num_threads, threadpoolctl). Workers are started
// when a region first needs them and are kept; a region of nt tasks wakes at most
// min(nt, max_threads()) - 1, so tasks used as work items never start more threads.
#pragma once
#include <cstdint>
#include <type_traits>

#include "common/fpenv.h"

namespace pynn::parallel {

// The thread count kernels may use (>= 1).
int max_threads();
void set_max_threads(int n);
// True while this thread runs a task of a region (kernels called from there stay serial).
bool in_task();
// What a kernel may use now: max_threads(), or 1 inside a task.
inline int available_threads() { return in_task() ? 1 : max_threads(); }

using TaskFn = void (*)(void* ctx, int t);
// Runs fn(ctx, t) for t in [0, nt); an exception thrown by a task is rethrown here (the
// first one, after every task has finished).
void run_tasks(int nt, TaskFn fn, void* ctx);

template <class F>
void run(int nt, F&& f) {
  if (nt <= 1) {
    fp::FlushDenormals ftz;  // as a region on the pool would compute
    f(0);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  run_tasks(nt, [](void* c, int t) { (*static_cast<Fn*>(c))(t); }, static_cast<void*>(&f));
}

// OpenMP's schedule(static) without a chunk size: iterations [0, n) cut into nt contiguous
// blocks, the first n % nt of them one longer; block t is [lo, hi).
inline void static_block(int64_t n, int nt, int t, int64_t& lo, int64_t& hi) {
  const int64_t q = n / nt, r = n % nt;
  lo = int64_t(t) * q + (t < r ? t : r);
  hi = lo + q + (t < r ? 1 : 0);
}

// body(lo, hi) over the static blocks of [0, n) on nt tasks (fewer when n < nt).
template <class F>
void parallel_for(int64_t n, int nt, F&& body) {
  if (n <= 0) return;
  if (int64_t(nt) > n) nt = int(n);
  if (nt <= 1) {
    fp::FlushDenormals ftz;
    body(int64_t(0), n);
    return;
  }
  run(nt, [&](int t) {
    int64_t lo, hi;
    static_block(n, nt, t, lo, hi);
    if (lo < hi) body(lo, hi);
  });
}

// Counters for tests and diagnostics.
struct PoolStats {
  int64_t pid = 0;           // process the current pool was made in (0: none made yet)
  int workers = 0;           // worker threads started in this process
  int64_t regions = 0;       // regions run on the pool
  int64_t inline_regions = 0;  // regions run on the caller alone (pool busy or in a task)
  int64_t worker_tasks = 0;  // tasks that a worker (not the caller) ran
  int64_t forks = 0;         // forked children this process's state descends from
};
PoolStats stats();

}  // namespace pynn::parallel
