// The lock of one compiled model (Graph, Network), known to fork().
//
// predict takes it shared (several threads may predict on one model at once); every other
// call takes it exclusively. Rule for every holder: never wait for the GIL while holding it.
//
// fork() copies only the thread that calls it, so a lock held at that moment by another
// thread (a predict or a training step running with the GIL released) would stay held for
// ever in the child, and the model's buffers could be half written. A pthread_atfork prepare
// handler therefore takes every live model's lock exclusively before the fork: it waits for
// the computations in flight (they finish without the GIL, by the rule above), so both
// processes start with consistent models, and both get the locks free again (the child gets
// fresh lock objects, since the thread that took them has another id there). Should a lock
// stay busy for 10 s (PYNN_FORK_WAIT_MS), the fork goes ahead without it and that model
// refuses to run in the child (RuntimeError) instead of hanging or running on torn state.
#pragma once
#include <mutex>
#include <shared_mutex>

namespace pynn::bind {

class ModelLock {
 public:
  ModelLock();
  ~ModelLock();
  ModelLock(const ModelLock&) = delete;
  ModelLock& operator=(const ModelLock&) = delete;

  // Throw RuntimeError (std::runtime_error) in a forked child when the model was busy at the
  // fork (see above).
  std::unique_lock<std::shared_timed_mutex> exclusive();
  std::shared_lock<std::shared_timed_mutex> shared();

 private:
  friend struct ModelLockRegistry;
  void check_usable() const;
  std::shared_timed_mutex mu_;
  bool held_for_fork_ = false;  // taken by the prepare handler
  bool torn_ = false;           // was busy at a fork (set in the child)
  ModelLock* prev_ = nullptr;
  ModelLock* next_ = nullptr;
};

}  // namespace pynn::bind
