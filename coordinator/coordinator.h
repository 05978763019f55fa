// Coordinator: the composition root of sweepd. It owns the ledger, the lease
// scheduler, the gRPC services and server, the snapshotter and the health
// check, and builds them in one order from one options struct, so sweepd's
// main and the tests assemble the coordinator the same way.
//
// Lifecycle: Create() takes the ledger's exclusive lock (a second coordinator
// on the same ledger fails with FAILED_PRECONDITION naming the holder),
// restores the newest snapshot onto a missing ledger (with a snapshot
// directory), opens the ledger, loads the scheduler, creates the services and
// starts serving on `listen`. Tick() is the maintenance pass the owner runs
// periodically (sweepd: every second): it checks the ledger's health and writes
// a snapshot when one is due on the injected Clock, or when a sweep reached a
// final state or a derived stage was planned (its previous stage finished)
// since the last pass (such snapshots at most every 10 s). Shutdown() stops new
// calls, drains the server, stops the services, writes a last snapshot when the
// ledger changed since the previous one (sweepd: on SIGTERM) and closes the
// ledger; the destructor calls it when the owner did not.
//
// Thread-safety: Create, Tick and Shutdown are called from one owning thread;
// the accessors are safe from any thread while the Coordinator lives. The
// Clock is borrowed and must outlive the Coordinator.
#ifndef SWEEPD_COORDINATOR_COORDINATOR_H_
#define SWEEPD_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "common/metrics_endpoint.h"
#include "coordinator/authorizer.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/ledger.h"
#include "coordinator/ledger_lock.h"
#include "coordinator/scheduler.h"
#include "coordinator/server_security.h"
#include "coordinator/service.h"
#include "coordinator/sweep_policy.h"
#include "grpcpp/grpcpp.h"

namespace sweepd {

struct CoordinatorOptions {
  // SQLite ledger path (created if missing). Required.
  std::string ledger_path;
  // HOST:PORT to serve on; port 0 picks a free port (see Coordinator::port).
  std::string listen = "127.0.0.1:0";
  // Model and dataset paths of specs must resolve inside these.
  std::string model_root;
  std::string data_root;
  // TLS, token file and the plaintext override (server_security.h); Create
  // refuses a listener the rules there do not allow.
  SecurityOptions security;
  // Test hook, called on the ServerBuilder before the server starts (e.g. to
  // add interceptors); may be empty.
  std::function<void(grpc::ServerBuilder&)> configure_server;
  // What sweep policy fields left at 0 become (sweepd --lease-seconds). Given
  // to the planner and the ledger alike.
  SweepPolicyDefaults policy;
  // A worker not heard from for this long loses its groups' pins and no longer
  // counts as live; 0 = the default lease length.
  int64_t worker_timeout_ms = 0;
  // Durable snapshot directory; empty = no snapshots.
  std::string snapshot_dir;
  int64_t snapshot_interval_ms = 300'000;
  int snapshot_keep = 3;
  // The artifact store's directory (sweepd --artifact-root; the same
  // directory, or the same bucket, the workers' --artifact-root names);
  // empty = none (docs/ARTIFACTS.md). Opened (created if missing) by Create.
  std::string artifact_root;
  // Check reported artifacts by hashing them, not only by size
  // (--artifact-verify sha256).
  bool rehash_reported_artifacts = false;
  // HOST:PORT of the Prometheus /metrics endpoint (sweepd --metrics-listen);
  // empty = none. Port 0 picks a free port (metrics_endpoint()->port()).
  std::string metrics_listen;
  // Borrowed; the one time source of the ledger, scheduler, services and
  // snapshot schedule.
  Clock* clock = Clock::Real();
  // Component knobs (tests tune them; their clock, policy and planner roots
  // are set from the fields above).
  LedgerOptions ledger;
  SchedulerOptions scheduler;
  ServiceOptions service;
};

class Coordinator {
 public:
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(
      const CoordinatorOptions& options);
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The port the server listens on (the chosen one for port 0).
  int port() const { return port_; }
  // "HOST:PORT" with the chosen port.
  std::string address() const;

  Ledger* ledger() { return ledger_.get(); }
  LeaseScheduler* scheduler() { return scheduler_.get(); }
  CoordinatorServer* service() { return service_.get(); }
  // Null when there is no token file.
  Authorizer* authorizer() { return authorizer_.get(); }
  grpc::Server* server() { return server_.get(); }
  // Always present (the RPC interceptor and ledger observer feed it).
  CoordinatorMetrics* metrics() { return metrics_.get(); }
  // Null without options.artifact_root.
  ArtifactStore* artifact_store() { return artifact_store_.get(); }
  // Null without options.metrics_listen.
  const MetricsEndpoint* metrics_endpoint() const {
    return metrics_endpoint_.get();
  }

  // One maintenance pass: the ledger's health (its error when the writer
  // broke, and grpc.health.v1 then answers NOT_SERVING: the process should
  // exit so a supervisor restarts it), then a snapshot when one is due. A
  // failed snapshot is logged, not returned.
  absl::Status Tick();
  // The last snapshot Tick or Shutdown wrote; empty if none.
  const std::string& last_snapshot() const { return last_snapshot_; }

  // Stops new calls (UNAVAILABLE), shuts the server down (in-flight calls get
  // `grace`), stops the services and closes the ledger. Idempotent; returns
  // the ledger's close status.
  absl::Status Shutdown(absl::Duration grace = absl::Seconds(5));

 private:
  explicit Coordinator(const CoordinatorOptions& options);
  absl::Status Start();
  // True when a sweep reached a final state or gained tasks (a derived stage
  // was planned) since the last call.
  bool SweepMilestoneReached();
  // Writes a snapshot now (failures are logged) and restarts the interval.
  void Snapshot(const char* why);

  const CoordinatorOptions options_;
  Clock* const clock_;
  // Declared first: destroyed after the server and ledger that feed it.
  std::unique_ptr<CoordinatorMetrics> metrics_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  // Held from before the restore until the ledger is closed: one coordinator
  // per ledger.
  std::unique_ptr<LedgerLock> lock_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<LeaseScheduler> scheduler_;
  std::unique_ptr<Authorizer> authorizer_;
  std::shared_ptr<ArtifactStore> artifact_store_;
  std::unique_ptr<CoordinatorServer> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  int64_t next_snapshot_ms_ = 0;
  std::string last_snapshot_;
  // Milestone snapshots come at most this often (or every interval, if
  // shorter).
  static constexpr int64_t kMilestoneSnapshotGapMs = 10'000;
  int64_t last_snapshot_ms_ = -1;
  bool milestone_pending_ = false;
  // Ledger transactions committed when the last snapshot was written.
  int64_t snapshot_transactions_ = -1;
  // Per sweep: whether it was final, and its task count, at the last Tick.
  std::map<std::string, std::pair<bool, int64_t>> sweep_marks_;
  bool shut_down_ = false;
  absl::Status close_status_;
};

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_COORDINATOR_H_
