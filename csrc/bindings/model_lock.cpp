// The fork()-aware model locks (see model_lock.h).
#include "bindings/model_lock.h"

#include <pthread.h>

#include <chrono>
#include <cstdlib>
#include <new>
#include <stdexcept>

namespace pynn::bind {

namespace {
// How long fork() waits for one model's running call before going ahead without it: 10 s, or
// PYNN_FORK_WAIT_MS (tests shorten it).
const std::chrono::milliseconds kForkWait = [] {
  const char* s = std::getenv("PYNN_FORK_WAIT_MS");
  if (s != nullptr && *s != '\0') {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (*end == '\0' && v >= 0) return std::chrono::milliseconds(v);
  }
  return std::chrono::milliseconds(10000);
}();
}  // namespace

// Every live ModelLock, in a list threaded through the locks themselves.
struct ModelLockRegistry {
  static std::mutex& mu() {
    static std::mutex* m = new std::mutex();  // never destroyed: fork handlers may run late
    return *m;
  }
  static ModelLock*& head() {
    static ModelLock* h = nullptr;
    return h;
  }

  static void prepare() {
    mu().lock();
    // One deadline for all: a fork waits at most kForkWait in total.
    const auto deadline = std::chrono::steady_clock::now() + kForkWait;
    for (ModelLock* l = head(); l != nullptr; l = l->next_)
      l->held_for_fork_ = l->mu_.try_lock_until(deadline);
  }
  static void parent() {
    for (ModelLock* l = head(); l != nullptr; l = l->next_) {
      if (l->held_for_fork_) l->mu_.unlock();
      l->held_for_fork_ = false;
    }
    mu().unlock();
  }
  static void child() {
    // The only thread is the one that forked; it holds what prepare() took.
    for (ModelLock* l = head(); l != nullptr; l = l->next_) {
      if (!l->held_for_fork_) l->torn_ = true;
      l->held_for_fork_ = false;
      new (&l->mu_) std::shared_timed_mutex();
    }
    new (&mu()) std::mutex();
  }

  static bool install() {
    return ::pthread_atfork(&prepare, &parent, &child) == 0;
  }
};

namespace {
const bool g_installed = ModelLockRegistry::install();
}  // namespace

ModelLock::ModelLock() {
  (void)g_installed;
  std::lock_guard<std::mutex> lk(ModelLockRegistry::mu());
  ModelLock*& head = ModelLockRegistry::head();
  next_ = head;
  if (head != nullptr) head->prev_ = this;
  head = this;
}

ModelLock::~ModelLock() {
  std::lock_guard<std::mutex> lk(ModelLockRegistry::mu());
  if (prev_ != nullptr) prev_->next_ = next_;
  else ModelLockRegistry::head() = next_;
  if (next_ != nullptr) next_->prev_ = prev_;
}

void ModelLock::check_usable() const {
  if (torn_)
    throw std::runtime_error(
        "this model was in use by another thread when the process forked, so its state in "
        "this child process is unknown; rebuild or reload it here");
}

std::unique_lock<std::shared_timed_mutex> ModelLock::exclusive() {
  check_usable();
  return std::unique_lock<std::shared_timed_mutex>(mu_);
}

std::shared_lock<std::shared_timed_mutex> ModelLock::shared() {
  check_usable();
  return std::shared_lock<std::shared_timed_mutex>(mu_);
}

}  // namespace pynn::bind
