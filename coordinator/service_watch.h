// WatchReactor: one WatchSweep stream of the CoordinatorServer. The server's
// background loop polls every registered reactor (Decide under the server's
// watcher-registry lock, then Act with no lock held) and the reactor writes a
// SweepEvent whenever the sweep's version or blocked_reason changed, ending
// the stream after a final state, on cancellation, or at shutdown. Internal to
// the service; not for use outside coordinator/.
//
// Ownership: gRPC owns the reactor's lifetime (it deletes itself in OnDone,
// after taking itself out of the server's registry); borrows the ServerImpl.
// Thread-safe: its state is guarded by mu_; at most one write is outstanding.
#ifndef SWEEPD_COORDINATOR_SERVICE_WATCH_H_
#define SWEEPD_COORDINATOR_SERVICE_WATCH_H_

#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "coordinator/scheduler.h"
#include "grpcpp/grpcpp.h"
#include "sweepd/v1/coordinator.pb.h"

namespace sweepd::service_internal {

class ServerImpl;

class WatchReactor : public grpc::ServerWriteReactor<v1::SweepEvent> {
 public:
  WatchReactor(ServerImpl* server, std::string sweep_id)
      : server_(server), sweep_id_(std::move(sweep_id)) {}

  enum class Action { kNothing, kWrite, kFinishUnavailable, kFinishNotFound };
  // Called by the watch loop under its registry lock: decides what to send
  // next.
  Action Decide(LeaseScheduler* scheduler, Clock* clock, bool shutting_down);
  // Then, with no lock held (a gRPC reaction may run inline), performs it. The
  // reactor stays alive: OnDone cannot run before Finish, and Decide made this
  // the only caller of Finish or the owner of the one outstanding write.
  void Act(Action action);
  void SetSpec(v1::SweepSpec spec) {
    absl::MutexLock lock(&mu_);
    spec_ = std::move(spec);
  }
  // Ends the stream with `status` unless already ending.
  void FinishOnce(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  void OnWriteDone(bool ok) override {
    bool finish_ok = false, finish_err = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (finished_) return;
      if (!ok) {
        finished_ = finish_err = true;
      } else if (final_sent_ || cancelled_) {
        finished_ = true;
        finish_ok = final_sent_;
        finish_err = !final_sent_;
      }
    }
    if (finish_ok) Finish(grpc::Status::OK);
    if (finish_err)
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch stream closed"));
  }

  void OnCancel() override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      // Before ready_, the start-up read on the executor owns finishing.
      if (ready_ && !writing_ && !finished_) finish = finished_ = true;
    }
    if (finish)
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }

  void OnDone() override;

 private:
  ServerImpl* const server_;
  const std::string sweep_id_;
  absl::Mutex mu_;
  v1::SweepSpec spec_ ABSL_GUARDED_BY(mu_);
  // Filled by Decide under mu_, then owned by the one outstanding write
  // (writing_) until OnWriteDone.
  v1::SweepEvent event_;
  // The spec was read; polling may start.
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool final_sent_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_version_ ABSL_GUARDED_BY(mu_) =
      std::numeric_limits<uint64_t>::max();
  std::string last_blocked_reason_ ABSL_GUARDED_BY(mu_);
  friend class ServerImpl;
};

// Ends a call that the authorizer denied.
void FinishDenied(grpc::ServerUnaryReactor* reactor, const grpc::Status& s);
void FinishDenied(WatchReactor* reactor, const grpc::Status& s);

}  // namespace sweepd::service_internal

#endif  // SWEEPD_COORDINATOR_SERVICE_WATCH_H_
