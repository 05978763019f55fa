// ThreadSanitizer annotations for Debian's Abseil synchronization library.
// Linked into every executable of a SWEEPD_SANITIZE=thread build only
// (cmake/SweepdSanitizers.cmake).
//
// Why: libabsl_synchronization.so is built without TSan, so absl::Mutex,
// absl::CondVar and absl::Notification are invisible to it (they synchronize
// through futexes and atomics in uninstrumented code, not through the pthread
// calls TSan intercepts). Every ABSL_GUARDED_BY field would then look racy.
// Abseil built with TSan annotates itself (ABSL_TSAN_MUTEX_*); this file adds
// the same happens-before edges from outside: it defines the library's
// exported entry points in the executable, which the dynamic linker then
// prefers for every caller (our code, gRPC's gpr_mu and grpc_core::Mutex,
// Abseil's own cross-file calls), and forwards each to the library's
// definition (dlsym RTLD_NEXT) with __tsan_acquire after every lock and
// __tsan_release before every unlock, on the mutex's address. Waits release
// before and acquire after. That is the happens-before part of TSan's mutex
// model; lock-order (deadlock) reports for absl::Mutex are not produced by TSan
// (Debian's Abseil is built without NDEBUG, so absl's own deadlock detector
// checks lock order). Conditional waits (LockWhen, Await) hand absl a wrapper
// Condition that orders each evaluation, whichever thread runs it (WaitScope).
//
// Thread-safety: the forwarding table is filled once, on first use, under a
// function-local static.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#if !defined(__SANITIZE_THREAD__) && defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define __SANITIZE_THREAD__ 1
#endif
#endif
#ifndef __SANITIZE_THREAD__
#error "absl_tsan_annotations.cc belongs to SWEEPD_SANITIZE=thread builds only"
#endif

namespace {

#define SWEEPD_STR2(x) #x
#define SWEEPD_STR(x) SWEEPD_STR2(x)

// The library's definition of "absl::<inline namespace>::<rest>", given the
// rest of the mangled name after the namespace ("5Mutex4LockEv").
template <typename Fn>
Fn Real(const char* rest, bool is_const = false) {
  const std::string ns = SWEEPD_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = std::string(is_const ? "_ZNK4absl" : "_ZN4absl") +
                           std::to_string(ns.size()) + ns + rest;
  void* sym = dlsym(RTLD_NEXT, name.c_str());
  if (sym == nullptr) {
    std::fprintf(stderr, "absl_tsan_annotations: %s not found: %s\n",
                 name.c_str(), dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(sym);
}

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

using VoidFn = void (*)(Mutex*);
using BoolFn = bool (*)(Mutex*);
using CondFn = void (*)(Mutex*, const Condition&);
using CondDurFn = bool (*)(Mutex*, const Condition&, Duration);
using CondTimeFn = bool (*)(Mutex*, const Condition&, Time);
using CvWaitFn = void (*)(CondVar*, Mutex*);
using CvDurFn = bool (*)(CondVar*, Mutex*, Duration);
using CvTimeFn = bool (*)(CondVar*, Mutex*, Time);
using NoteFn = void (*)(Notification*);
using NoteWaitFn = void (*)(const Notification*);
using NoteDurFn = bool (*)(const Notification*, Duration);
using NoteTimeFn = bool (*)(const Notification*, Time);

struct RealFns {
  VoidFn lock = Real<VoidFn>("5Mutex4LockEv");
  VoidFn reader_lock = Real<VoidFn>("5Mutex10ReaderLockEv");
  VoidFn unlock = Real<VoidFn>("5Mutex6UnlockEv");
  VoidFn reader_unlock = Real<VoidFn>("5Mutex12ReaderUnlockEv");
  BoolFn try_lock = Real<BoolFn>("5Mutex7TryLockEv");
  BoolFn reader_try_lock = Real<BoolFn>("5Mutex13ReaderTryLockEv");
  CondFn lock_when = Real<CondFn>("5Mutex8LockWhenERKNS0_9ConditionE");
  CondFn reader_lock_when =
      Real<CondFn>("5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  CondDurFn lock_when_timeout = Real<CondDurFn>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  CondTimeFn lock_when_deadline = Real<CondTimeFn>(
      "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  CondDurFn reader_lock_when_timeout = Real<CondDurFn>(
      "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  CondTimeFn reader_lock_when_deadline = Real<CondTimeFn>(
      "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  CondFn await = Real<CondFn>("5Mutex5AwaitERKNS0_9ConditionE");
  CondDurFn await_timeout = Real<CondDurFn>(
      "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  CondTimeFn await_deadline =
      Real<CondTimeFn>("5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  CvWaitFn cv_wait = Real<CvWaitFn>("7CondVar4WaitEPNS0_5MutexE");
  CvDurFn cv_wait_timeout =
      Real<CvDurFn>("7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  CvTimeFn cv_wait_deadline =
      Real<CvTimeFn>("7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  NoteFn notify = Real<NoteFn>("12Notification6NotifyEv");
  NoteWaitFn note_wait =
      Real<NoteWaitFn>("12Notification19WaitForNotificationEv", true);
  NoteDurFn note_wait_timeout = Real<NoteDurFn>(
      "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE", true);
  NoteTimeFn note_wait_deadline = Real<NoteTimeFn>(
      "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE", true);
};

const RealFns& Fns() {
  static const RealFns* fns = new RealFns();
  return *fns;
}

void Acquire(const void* addr) { __tsan_acquire(const_cast<void*>(addr)); }
void Release(const void* addr) { __tsan_release(const_cast<void*>(addr)); }

// One conditional wait: `cond` is the wrapper handed to absl in place of the
// caller's Condition. Evaluate() runs in the evaluating thread, which holds
// `mu`: it acquires the mutex's clock (the evaluating waiter's own Acquire
// comes only after absl returns) and the scope's (the waiter's writes before
// the call, e.g. the caller's Condition object), and releases the scope's
// afterwards; the destructor acquires it, so the waiter's later writes (a new
// Condition in the same stack slot) come after every evaluation.
struct WaitScope {
  WaitScope(Mutex* m, const Condition& c)
      : mu(m), user(&c), cond(&WaitScope::Evaluate, this) {
    Release(this);
  }
  ~WaitScope() { Acquire(this); }
  WaitScope(const WaitScope&) = delete;
  WaitScope& operator=(const WaitScope&) = delete;

  static bool Evaluate(WaitScope* w) {
    Acquire(w->mu);
    Acquire(w);
    const bool met = w->user->Eval();
    Release(w);
    Release(w->mu);
    return met;
  }

  Mutex* mu;
  const Condition* user;
  Condition cond;
};

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  Fns().lock(this);
  Acquire(this);
}
void Mutex::ReaderLock() {
  Fns().reader_lock(this);
  Acquire(this);
}
void Mutex::Unlock() {
  Release(this);
  Fns().unlock(this);
}
void Mutex::ReaderUnlock() {
  Release(this);
  Fns().reader_unlock(this);
}
bool Mutex::TryLock() {
  const bool locked = Fns().try_lock(this);
  if (locked) Acquire(this);
  return locked;
}
bool Mutex::ReaderTryLock() {
  const bool locked = Fns().reader_try_lock(this);
  if (locked) Acquire(this);
  return locked;
}
// Conditions: absl evaluates a waiter's Condition in whichever thread holds the
// mutex at the time, the waiter inside LockWhen before it returns, or another
// thread inside its Unlock (after that thread's release above). Each call
// therefore passes absl a wrapper that acquires the mutex's clock before the
// evaluation and orders the evaluation between the waiter's call and its return
// (WaitScope below).
void Mutex::LockWhen(const Condition& cond) {
  WaitScope w(this, cond);
  Fns().lock_when(this, w.cond);
  Acquire(this);
}
void Mutex::ReaderLockWhen(const Condition& cond) {
  WaitScope w(this, cond);
  Fns().reader_lock_when(this, w.cond);
  Acquire(this);
}
// The *With{Timeout,Deadline} forms hold the mutex on return either way.
bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  WaitScope w(this, cond);
  const bool met = Fns().lock_when_timeout(this, w.cond, timeout);
  Acquire(this);
  return met;
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  WaitScope w(this, cond);
  const bool met = Fns().lock_when_deadline(this, w.cond, deadline);
  Acquire(this);
  return met;
}
bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  WaitScope w(this, cond);
  const bool met = Fns().reader_lock_when_timeout(this, w.cond, timeout);
  Acquire(this);
  return met;
}
bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  WaitScope w(this, cond);
  const bool met = Fns().reader_lock_when_deadline(this, w.cond, deadline);
  Acquire(this);
  return met;
}
void Mutex::Await(const Condition& cond) {
  WaitScope w(this, cond);
  Release(this);
  Fns().await(this, w.cond);
  Acquire(this);
}
bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  WaitScope w(this, cond);
  Release(this);
  const bool met = Fns().await_timeout(this, w.cond, timeout);
  Acquire(this);
  return met;
}
bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  WaitScope w(this, cond);
  Release(this);
  const bool met = Fns().await_deadline(this, w.cond, deadline);
  Acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  Release(mu);
  Fns().cv_wait(this, mu);
  Acquire(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  Release(mu);
  const bool timed_out = Fns().cv_wait_timeout(this, mu, timeout);
  Acquire(mu);
  return timed_out;
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  Release(mu);
  const bool timed_out = Fns().cv_wait_deadline(this, mu, deadline);
  Acquire(mu);
  return timed_out;
}

// Notification's fast paths (an already-notified WaitForNotification) read an
// atomic inside the uninstrumented library: order them on the object itself.
void Notification::Notify() {
  Release(this);
  Fns().notify(this);
}
void Notification::WaitForNotification() const {
  Fns().note_wait(this);
  Acquire(this);
}
bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  const bool notified = Fns().note_wait_timeout(this, timeout);
  if (notified) Acquire(this);
  return notified;
}
bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  const bool notified = Fns().note_wait_deadline(this, deadline);
  if (notified) Acquire(this);
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
