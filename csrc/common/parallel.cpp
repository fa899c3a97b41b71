// The worker pool behind parallel.h.
//
// One region at a time owns the pool (`busy_`). The owner publishes its Job, bumps `seq_`
// and wakes sleeping workers; then it runs its own tasks (0, P, 2P, ...). A worker that sees
// `seq_` move registers in `inside_`, reads the current Job and runs its tasks (i, i + P, ...).
// Each task is claimed once (`taken`). The owner waits for every task to finish (`left`),
// unpublishes the Job and waits for `inside_` to drain before its Job (on its stack) goes
// away; only then does it release the pool.
//
// Waiting: an idle worker spins for kSpin (a training step runs many short regions back to
// back, and waking a sleeping thread costs tens of microseconds), then sleeps on a condition
// variable. Tasks are fixed (results depend only on nt), but who runs one is not: an owner
// done with its own tasks takes over at once every task nobody has started (from the end),
// and a worker done with its own does the same, so a thread the machine holds up (no free
// CPU, a slow wake-up) delays the region by at most the task it is in. For tasks under way
// the owner spins about as long as its own share took, then sleeps: a worker that is still
// not done has lost its CPU, and an idle CPU here lets the scheduler move it over (spinning
// would hold it off for a time slice, milliseconds, per region). A worker that runs on its
// owner's CPU neither spins afterwards nor is waited for by spinning: on a busy machine the
// two then take turns on that CPU at about the serial speed.
//
// fork(): the child handler drops the pool pointer, so the child's first region makes a new
// pool with new workers. The old pool object is never touched again in the child (its
// mutex may be held and its threads do not exist there); it is kept reachable, not freed.
#include "common/parallel.h"

#include "common/fpenv.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PYNN_CPU_RELAX() _mm_pause()
#else
#define PYNN_CPU_RELAX() std::this_thread::yield()
#endif

namespace pynn::parallel {
namespace {

// A positive integer from the environment variable `name`, or 0. For OMP_NUM_THREADS the
// first entry of a comma-separated list counts (its later entries are for nested levels).
long env_positive(const char* name) {
  const char* s = std::getenv(name);
  if (s == nullptr) return 0;
  while (*s == ' ' || *s == '\t') ++s;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || v < 1) return 0;
  while (*end == ' ' || *end == '\t') ++end;
  if (*end != '\0' && *end != ',') return 0;
  return v;
}

#if defined(__linux__)
// The CPUs a cgroup CPU quota allows this process (quota / period rounded up), or 0 when there
// is no quota. cgroup v2 keeps "max 100000" or "200000 100000" in cpu.max; v1 keeps the two
// numbers in cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us. A container limited to 2 CPUs
// on a 64-core host sees 64 CPUs in its affinity mask: 64 threads would be descheduled in turn
// at every parallel region. The quota may sit on this process's own cgroup or on any of its
// ancestors (a systemd slice, a pod): the tightest one along the path counts. The path comes
// from /proc/self/cgroup ("0::/a/b" for v2, "N:cpu,cpuacct:/a/b" for v1's cpu controller);
// inside a container whose cgroup is mounted as the root, the walk ends at that root.
bool read_quota(const std::string& path, const std::string& path2, double& quota,
                double& period) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return false;
  char buf[64] = {};
  const bool ok = std::fgets(buf, sizeof(buf), f) != nullptr;
  std::fclose(f);
  if (!ok) return false;
  if (std::strncmp(buf, "max", 3) == 0) {
    quota = -1;
    return true;
  }
  char* end = nullptr;
  quota = std::strtod(buf, &end);
  if (end == buf) return false;
  if (path2.empty()) {
    period = std::strtod(end, nullptr);
    return true;
  }
  std::FILE* g = std::fopen(path2.c_str(), "r");
  if (g == nullptr) return false;
  const bool ok2 = std::fscanf(g, "%lf", &period) == 1;
  std::fclose(g);
  return ok2;
}

long cgroup_cpu_limit() {
  std::string v2, v1;  // this process's cgroup paths ("" : none)
  if (std::FILE* f = std::fopen("/proc/self/cgroup", "r")) {
    char line[1024];
    while (std::fgets(line, sizeof(line), f) != nullptr) {
      std::string l(line);
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
      const size_t a = l.find(':'), b = a == std::string::npos ? a : l.find(':', a + 1);
      if (b == std::string::npos) continue;
      const std::string ctrl = l.substr(a + 1, b - a - 1), path = l.substr(b + 1);
      if (ctrl.empty()) v2 = path;
      else if (("," + ctrl + ",").find(",cpu,") != std::string::npos) v1 = path;
    }
    std::fclose(f);
  }
  double cpus = 0;  // the tightest quota / period found
  auto walk = [&](std::string dir, const std::string& mount, const char* file,
                  const char* file2) {
    if (dir.empty() || dir[0] != '/') dir = "/";
    for (;;) {
      const std::string at = mount + (dir == "/" ? "" : dir) + "/";
      double quota = -1, period = 0;
      if (read_quota(at + file, file2 ? at + file2 : std::string(), quota, period) &&
          quota > 0 && period > 0 && (cpus == 0 || quota / period < cpus))
        cpus = quota / period;
      if (dir == "/") break;
      const size_t cut = dir.find_last_of('/');
      dir = cut == 0 ? "/" : dir.substr(0, cut);
    }
  };
  walk(v2, "/sys/fs/cgroup", "cpu.max", nullptr);
  for (const char* mount : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"})
    walk(v1, mount, "cpu.cfs_quota_us", "cpu.cfs_period_us");
  return cpus > 0 ? std::max<long>(1, long(std::ceil(cpus))) : 0;
}
#endif

// OMP_NUM_THREADS, else the CPUs in the affinity mask, capped by a cgroup CPU quota.
int default_threads() {
  const long env = env_positive("OMP_NUM_THREADS");
  if (env > 0) return int(std::min<long>(env, 1024));
  unsigned hc = std::thread::hardware_concurrency();
  int n = hc > 0 ? int(hc) : 1;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) n = CPU_COUNT(&set);
  const long quota = cgroup_cpu_limit();
  if (quota > 0 && quota < n) n = int(quota);
#endif
  return n;
}

std::atomic<int> g_max_threads{default_threads()};

// How long an idle thread spins before it sleeps. PYNN_SPIN_US overrides (0: sleep at once).
const std::chrono::nanoseconds kSpin = [] {
  const char* s = std::getenv("PYNN_SPIN_US");
  if (s != nullptr && *s != '\0') {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (*end == '\0' && v >= 0 && v <= 1000000) return std::chrono::nanoseconds(v * 1000);
  }
  return std::chrono::nanoseconds(2000 * 1000);
}();

thread_local bool tl_in_task = false;

struct TaskFlag {  // marks this thread as running tasks for the life of the object
  bool saved;
  TaskFlag() : saved(tl_in_task) { tl_in_task = true; }
  ~TaskFlag() { tl_in_task = saved; }
};

// How long the owner of a region sleeps waiting for a worker that has not taken up its share
// (asleep, or no CPU) before doing that share itself: 0, at once (measured on a busy 2-core
// machine: waiting only ever added to the region's time). PYNN_STEAL_US sets a wait (tests).
const std::chrono::nanoseconds kSteal = [] {
  const char* s = std::getenv("PYNN_STEAL_US");
  if (s != nullptr && *s != '\0') {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (*end == '\0' && v >= 0 && v <= 1000000) return std::chrono::nanoseconds(v * 1000);
  }
  return std::chrono::nanoseconds(0);
}();

// Below this, putting a thread to sleep and waking it costs more than the work it waits for.
constexpr std::chrono::nanoseconds kMinSleep = std::chrono::microseconds(20);

// Spins until pred() holds or `budget` is spent; returns pred().
template <class P>
bool spin_until(const P& pred, std::chrono::nanoseconds budget = kSpin) {
  if (pred()) return true;
  if (budget.count() == 0) return false;
  const auto until = std::chrono::steady_clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      PYNN_CPU_RELAX();
      if (pred()) return true;
    }
    if (std::chrono::steady_clock::now() >= until) return pred();
  }
}

int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

struct Job {
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  int nt = 0;
  int parts = 1;                     // participants: the owner (0) and workers 1..parts-1
  std::atomic<char>* taken = nullptr;  // per task: claimed by someone
  std::atomic<int> left{0};          // tasks not finished
  std::atomic<bool> waiting{false};  // the owner sleeps on done_cv_
  int owner_cpu = -1;                  // the CPU the owner was on when it published
  std::atomic<bool> shares_cpu{false};  // a worker ran a task on that same CPU
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // written once, by the task that set `failed`
};

std::atomic<int64_t> g_forks{0};

class Pool {
 public:
  Pool() : pid_(int64_t(::getpid())) {}

  // Runs the job on the pool; false when the pool is taken (the caller runs it alone).
  bool try_run(int nt, TaskFn fn, void* ctx);

  PoolStats stats() {
    PoolStats s;
    s.pid = pid_;
    {
      std::lock_guard<std::mutex> lk(mu_);
      s.workers = int(threads_.size());
    }
    s.regions = regions_.load();
    s.worker_tasks = worker_tasks_.load();
    return s;
  }

 private:
  bool ensure_workers(int n);
  void worker_main(int index, uint64_t seen);
  // Runs task t of j unless someone claimed it first.
  void run_task(Job& j, int t, bool worker);

  const int64_t pid_;
  std::mutex mu_;  // threads_, and the sleeps on the two condition variables
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::thread> threads_;
  std::unique_ptr<std::atomic<char>[]> taken_;  // the owning region's claim flags
  int taken_cap_ = 0;
  std::atomic<bool> busy_{false};
  std::atomic<Job*> job_{nullptr};
  std::atomic<uint64_t> seq_{0};
  std::atomic<int> inside_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int> nworkers_{0};  // threads_.size(), readable without mu_
  std::atomic<int64_t> regions_{0}, worker_tasks_{0};
};

bool Pool::ensure_workers(int n) {
  if (nworkers_.load(std::memory_order_acquire) >= n) return true;  // no lock per region
  std::lock_guard<std::mutex> lk(mu_);
  try {
    while (int(threads_.size()) < n) {
      // A new worker must not miss the job about to be published: it starts from the
      // sequence number before the publication.
      const uint64_t seen = seq_.load();
      const int index = int(threads_.size()) + 1;
      threads_.emplace_back([this, index, seen] { worker_main(index, seen); });
      nworkers_.store(int(threads_.size()), std::memory_order_release);
    }
  } catch (...) {
    // No more threads can be made: the ones that exist (or the caller alone) do the work.
  }
  return !threads_.empty();
}

void Pool::run_task(Job& j, int t, bool worker) {
  // (the plain load first: sweeps over claimed tasks then cost no cache-line ownership)
  if (j.taken[t].load(std::memory_order_relaxed) != 0 || j.taken[t].exchange(1) != 0) return;
  if (worker && j.owner_cpu >= 0 && current_cpu() == j.owner_cpu) j.shares_cpu.store(true);
  try {
    j.fn(j.ctx, t);
  } catch (...) {
    if (!j.failed.exchange(true)) j.error = std::current_exception();
  }
  if (worker) worker_tasks_.fetch_add(1, std::memory_order_relaxed);
  if (j.left.fetch_sub(1) == 1 && worker && j.waiting.load()) {
    // The last task, and the owner went to sleep: wake it. (The owner does not return
    // while this worker is counted in inside_, so j is still alive here.)
    std::lock_guard<std::mutex> lk(mu_);
    done_cv_.notify_all();
  }
}

void Pool::worker_main(int index, uint64_t seen) {
  tl_in_task = true;  // a worker only ever runs tasks
  fp::flush_denormals_forever();  // common/fpenv.h: the owner computes so for the region too
  bool shared = false;  // the last job ran on its owner's CPU: do not spin there
  for (;;) {
    if (shared || !spin_until([&] { return seq_.load() != seen; })) {
      std::unique_lock<std::mutex> lk(mu_);
      sleepers_.fetch_add(1);
      work_cv_.wait(lk, [&] { return seq_.load() != seen; });
      sleepers_.fetch_sub(1);
    }
    seen = seq_.load();
    inside_.fetch_add(1);
    shared = false;
    if (Job* j = job_.load()) {
      if (index < j->parts) {
        for (int t = index; t < j->nt; t += j->parts) run_task(*j, t, true);
        // Then the tasks nobody has started (their thread is held up), from the end: the
        // owner goes through its own from the start.
        for (int t = j->nt - 1; t >= 0 && j->left.load() > 0; --t) run_task(*j, t, true);
      }
      // Sharing the owner's CPU (we run, so it does not): spinning there would keep it off.
      shared = j->shares_cpu.load() || (j->owner_cpu >= 0 && current_cpu() == j->owner_cpu);
    }
    inside_.fetch_sub(1);
  }
}

bool Pool::try_run(int nt, TaskFn fn, void* ctx) {
  // Tasks may outnumber the threads (a caller handing out work items as tasks, or asking for
  // more threads than the setting): never start or wake more workers than the setting allows.
  // Which participant runs a task does not change its result.
  const int want = std::min(nt, max_threads());
  if (want <= 1) return false;
  if (busy_.exchange(true)) return false;
  if (!ensure_workers(want - 1)) {
    busy_.store(false);
    return false;
  }
  regions_.fetch_add(1, std::memory_order_relaxed);
  if (taken_cap_ < nt) {
    taken_.reset(new std::atomic<char>[size_t(nt)]);
    taken_cap_ = nt;
  }
  Job j;
  j.fn = fn;
  j.ctx = ctx;
  j.nt = nt;
  j.parts = std::min(want, nworkers_.load(std::memory_order_acquire) + 1);
  j.taken = taken_.get();
  for (int t = 0; t < nt; ++t) j.taken[t].store(0, std::memory_order_relaxed);
  j.left.store(nt);
  j.owner_cpu = current_cpu();
  job_.store(&j);
  seq_.fetch_add(1);
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    work_cv_.notify_all();
  }
  auto done = [&] { return j.left.load() == 0; };
  auto sleep_until_done = [&](std::chrono::nanoseconds limit) {
    j.waiting.store(true);
    std::unique_lock<std::mutex> lk(mu_);
    return done_cv_.wait_for(lk, limit, done);
  };
  std::chrono::nanoseconds own{0};
  {
    TaskFlag flag;
    fp::FlushDenormals ftz;  // as the workers compute
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < nt; t += j.parts) run_task(j, t, false);
    own = std::chrono::steady_clock::now() - t0;
    bool unclaimed = false;
    for (int t = 0; t < nt && !unclaimed; ++t) unclaimed = j.taken[t].load() == 0;
    if (unclaimed) {
      // A worker has not taken its share by the time this thread did all of its own: it is
      // waking up, or it has no CPU. Take the share over now (by default; PYNN_STEAL_US
      // sets a wait, slept, at most about twice this thread's own time).
      const auto limit = std::min<std::chrono::nanoseconds>(kSteal, 2 * own);
      if (limit >= kMinSleep) sleep_until_done(limit);
      // Whatever nobody has started yet is done here, from the end (a worker that turns up
      // late takes its share from the start): the same results, whoever runs a task.
      for (int t = nt - 1; t >= 0; --t) run_task(j, t, false);
    }
  }
  // Tasks are under way on workers. They should end about when this thread's own share did;
  // spin that long (at least kMinSleep, at most kSpin), then sleep: a worker still running
  // then has lost its CPU, and an idle CPU here lets the scheduler move it over. Sleep at once
  // when one of them runs on this very CPU (spinning would only keep it off).
  if (!done()) {
    const auto budget = std::min(kSpin, std::max<std::chrono::nanoseconds>(own, kMinSleep));
    spin_until([&] { return done() || j.shares_cpu.load(); }, budget);
    if (!done()) {
      j.waiting.store(true);
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, done);
    }
  }
  job_.store(nullptr);
  // Workers that read &j before it was unpublished find nothing left to claim and leave at
  // once, unless descheduled in between: then yield, and soon sleep (an idle CPU lets the
  // scheduler bring the worker over) rather than spin for its time slice.
  for (int i = 0; inside_.load() != 0; ++i) {
    if (i == 0) spin_until([&] { return inside_.load() == 0; }, kMinSleep);
    else if (i < 8) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  busy_.store(false);
  if (j.failed.load()) std::rethrow_exception(j.error);
  return true;
}

std::atomic<Pool*> g_pool{nullptr};
std::atomic<int64_t> g_inline_regions{0};
// Pools abandoned by fork(): kept reachable so that leak checkers stay quiet.
std::vector<Pool*>* g_abandoned = nullptr;

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  Pool* made = new Pool();
  if (g_pool.compare_exchange_strong(p, made)) return *made;
  delete made;  // another thread made one first
  return *p;
}

void after_fork_in_child() {
  // Only this thread exists now. Forget the parent's pool without touching it.
  Pool* old = g_pool.exchange(nullptr);
  if (old != nullptr) {
    if (g_abandoned == nullptr) g_abandoned = new std::vector<Pool*>();
    g_abandoned->push_back(old);
  }
  tl_in_task = false;
  g_inline_regions.store(0);
  g_forks.fetch_add(1);
}

const bool g_atfork_registered = [] {
  return ::pthread_atfork(nullptr, nullptr, &after_fork_in_child) == 0;
}();

}  // namespace

int max_threads() { return g_max_threads.load(std::memory_order_relaxed); }

void set_max_threads(int n) { g_max_threads.store(std::max(1, n), std::memory_order_relaxed); }

bool in_task() { return tl_in_task; }

void run_tasks(int nt, TaskFn fn, void* ctx) {
  if (nt <= 0) return;
  if (nt > 1 && !tl_in_task && pool().try_run(nt, fn, ctx)) return;
  // Alone: in order, on this thread.
  if (nt > 1) g_inline_regions.fetch_add(1, std::memory_order_relaxed);
  TaskFlag flag;
  fp::FlushDenormals ftz;
  for (int t = 0; t < nt; ++t) fn(ctx, t);
}

PoolStats stats() {
  PoolStats s;
  if (Pool* p = g_pool.load()) s = p->stats();
  s.inline_regions = g_inline_regions.load();
  s.forks = g_forks.load();
  (void)g_atfork_registered;
  return s;
}

}  // namespace pynn::parallel
