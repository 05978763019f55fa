// ServerImpl: the CoordinatorServer (service.h, whose comment holds the
// contract). Private to the service; which file holds what:
//   service.cc             the server: construction, shutdown, the background
//                          loop (lease expiry, stage derivation, watch polls)
//   service_sweeps.cc      the Coordinator service's handlers: sweeps, their
//                          results, the worker list; artifact RPCs forwarded
//                          to ArtifactService (artifact_service.h)
//   service_workers.cc     the WorkerGateway service's handlers: registration,
//                          leases, heartbeats, results, releases
//   service_watch.{h,cc}   the WatchSweep stream
//   service_validation.{h,cc}  helpers the handlers share
//
// Ownership: borrows the Ledger, the LeaseScheduler and the Clock; owns the
// two gRPC services, the executor and the background thread. Thread-safe: the
// watcher registry is guarded by watch_mu_, the rest is immutable or atomic.
#ifndef SWEEPD_COORDINATOR_SERVICE_IMPL_H_
#define SWEEPD_COORDINATOR_SERVICE_IMPL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/status.h"
#include "coordinator/artifact_service.h"
#include "coordinator/authorizer.h"
#include "coordinator/ledger.h"
#include "coordinator/scheduler.h"
#include "coordinator/service.h"
#include "coordinator/service_validation.h"
#include "coordinator/service_watch.h"
#include "coordinator/thread_pool.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/service_type.h"

namespace sweepd::service_internal {

class ServerImpl;

// The Coordinator service (service_sweeps.cc) and the WorkerGateway service
// (service_workers.cc) over `server` (borrowed).
std::unique_ptr<grpc::Service> MakeCoordinatorHandlers(ServerImpl* server);
std::unique_ptr<grpc::Service> MakeGatewayHandlers(ServerImpl* server);

class ServerImpl : public CoordinatorServer {
 public:
  ServerImpl(Ledger* ledger, LeaseScheduler* scheduler,
             const ServiceOptions& options);
  ~ServerImpl() override;

  grpc::Service* coordinator_service() override { return coordinator_.get(); }
  grpc::Service* worker_gateway_service() override { return gateway_.get(); }
  void ConfigureBuilder(grpc::ServerBuilder* builder) override;
  void BeginShutdown() override { shutting_down_ = true; }
  void Stop() override;

  // Shared plumbing for the handlers.
  bool Draining() const { return shutting_down_.load(); }

  // The first step of every handler: the caller if the authorizer lets the
  // call through (or authorisation is off); else nullopt, and `reactor` has
  // been finished with the denial.
  template <typename Reactor>
  std::optional<Caller> Admit(const grpc::CallbackServerContext& ctx, Rpc rpc,
                              Reactor* reactor) {
    Caller caller;
    if (options_.authorizer != nullptr) {
      absl::StatusOr<Caller> checked = options_.authorizer->Check(ctx, rpc);
      if (!checked.ok()) {
        FinishDenied(reactor, ToGrpc(checked.status()));
        return std::nullopt;
      }
      caller = std::move(*checked);
    }
    handler_calls_.fetch_add(1);
    return caller;
  }
  // Admit for handlers that finish their own reactor: OK, the denial, or
  // UNAVAILABLE while shutting down.
  absl::Status AdmitStatus(const grpc::CallbackServerContext& ctx, Rpc rpc) {
    if (options_.authorizer != nullptr) {
      RETURN_IF_ERROR(options_.authorizer->Check(ctx, rpc).status());
    }
    handler_calls_.fetch_add(1);
    if (Draining()) return absl::UnavailableError("sweepd is shutting down");
    return absl::OkStatus();
  }
  int64_t handler_calls() const override { return handler_calls_.load(); }
  ThreadPool& executor() { return executor_; }
  ArtifactService& artifacts() { return artifacts_; }
  Ledger* ledger() { return ledger_; }
  LeaseScheduler* scheduler() { return scheduler_; }
  const ServiceOptions& options() const { return options_; }

  // Marks `w` ready and registers it; false (and not registered) if it was
  // cancelled.
  bool AddWatcherIfNotCancelled(WatchReactor* w) {
    absl::MutexLock lock(&watch_mu_);
    absl::MutexLock wlock(&w->mu_);
    if (w->cancelled_) return false;
    w->ready_ = true;
    watchers_.insert(w);
    return true;
  }
  void RemoveWatcher(WatchReactor* w) {
    absl::MutexLock lock(&watch_mu_);
    watchers_.erase(w);
  }

 private:
  void BackgroundLoop();
  // Plans a derived stage from the sweep's results (docs/STAGES.md). A stage
  // the results cannot support becomes one FAILED task that says why, so the
  // sweep ends FAILED with the reason in its results; transient errors (ledger
  // reads) leave the stage for the next pass.
  void DeriveStage(const StageWork& work);
  // A task that records why a derived stage could not be planned: inserted
  // FAILED (its error is the reason), so results and reports show it.
  static PlannedTask StageFailureTask(const v1::SweepSpec& spec,
                                      const StageWork& work,
                                      const absl::Status& why);
  void PollWatchers(bool shutting_down);

  Ledger* const ledger_;
  LeaseScheduler* const scheduler_;
  const ServiceOptions options_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<int64_t> handler_calls_{0};
  ThreadPool executor_;
  ArtifactService artifacts_;
  std::unique_ptr<grpc::Service> coordinator_;
  std::unique_ptr<grpc::Service> gateway_;
  absl::Mutex watch_mu_;
  std::set<WatchReactor*> watchers_ ABSL_GUARDED_BY(watch_mu_);
  absl::Notification stop_;
  std::thread background_;
};

}  // namespace sweepd::service_internal

#endif  // SWEEPD_COORDINATOR_SERVICE_IMPL_H_
