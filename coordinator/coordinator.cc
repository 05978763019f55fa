#include "coordinator/coordinator.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/snapshot.h"
#include "coordinator/task_states.h"
#include "grpcpp/health_check_service_interface.h"

namespace sweepd {

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(
    const CoordinatorOptions& options) {
  if (options.ledger_path.empty()) {
    return absl::InvalidArgumentError(
        "CoordinatorOptions.ledger_path is empty");
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("CoordinatorOptions.clock is null");
  }
  if (options.policy.lease_seconds <= 0) {
    return absl::InvalidArgumentError(
        "CoordinatorOptions.policy.lease_seconds must be > 0");
  }
  if (!options.snapshot_dir.empty() && options.snapshot_interval_ms <= 0) {
    return absl::InvalidArgumentError(
        "CoordinatorOptions.snapshot_interval_ms must be > 0");
  }
  auto coordinator = std::unique_ptr<Coordinator>(new Coordinator(options));
  RETURN_IF_ERROR(coordinator->Start());
  return coordinator;
}

Coordinator::Coordinator(const CoordinatorOptions& options)
    : options_(options), clock_(options.clock) {}

Coordinator::~Coordinator() { Shutdown().IgnoreError(); }

absl::Status Coordinator::Start() {
  ASSIGN_OR_RETURN(lock_, LedgerLock::Acquire(options_.ledger_path));
  RETURN_IF_ERROR(CheckListenerSecurity(options_.listen, options_.security,
                                        options_.model_root,
                                        options_.data_root));
  ASSIGN_OR_RETURN(ServerSecurity security,
                   MakeServerSecurity(options_.security, clock_));
  authorizer_ = std::move(security.authorizer);
  if (!options_.snapshot_dir.empty()) {
    absl::StatusOr<std::optional<std::string>> restored =
        RestoreNewestSnapshotIfMissing(options_.ledger_path,
                                       options_.snapshot_dir, clock_->NowMs());
    if (!restored.ok()) {
      return Annotate(restored.status(), "restoring a snapshot");
    }
    if (restored->has_value()) {
      SWEEPD_LOG(INFO) << "restored ledger " << options_.ledger_path
                       << " from snapshot " << **restored;
    }
  }
  const int64_t lease_ms = int64_t{options_.policy.lease_seconds} * 1000;
  const int64_t worker_timeout_ms =
      options_.worker_timeout_ms > 0 ? options_.worker_timeout_ms : lease_ms;
  metrics_ = CoordinatorMetrics::Create(clock_, worker_timeout_ms);

  LedgerOptions ledger_options = options_.ledger;
  ledger_options.commit_observer = [metrics = metrics_.get()](double s,
                                                              int64_t ops) {
    metrics->ObserveCommit(s, ops);
  };
  ledger_options.clock = clock_;
  ledger_options.policy_defaults = options_.policy;
  ASSIGN_OR_RETURN(ledger_, Ledger::Open(options_.ledger_path, ledger_options));

  SchedulerOptions scheduler_options = options_.scheduler;
  scheduler_options.clock = clock_;
  scheduler_options.worker_timeout_ms = worker_timeout_ms;
  // Leases loaded after a restart get their own lease length as grace
  // (restart_grace_ms = 0): the sweep's policy.lease_seconds, else the default.
  ASSIGN_OR_RETURN(scheduler_,
                   LeaseScheduler::Create(ledger_.get(), scheduler_options));
  metrics_->AttachScheduler(scheduler_.get());

  ServiceOptions service_options = options_.service;
  service_options.clock = clock_;
  service_options.planner.model_root = options_.model_root;
  service_options.planner.data_root = options_.data_root;
  service_options.planner.policy_defaults = options_.policy;
  service_options.authorizer = authorizer_.get();
  if (!options_.artifact_root.empty()) {
    absl::StatusOr<std::unique_ptr<ArtifactStore>> store =
        ArtifactStore::Open(options_.artifact_root, clock_);
    if (!store.ok()) return Annotate(store.status(), "--artifact-root");
    artifact_store_ = std::move(*store);
    service_options.artifacts = artifact_store_;
    service_options.rehash_reported_artifacts =
        options_.rehash_reported_artifacts;
  }
  ASSIGN_OR_RETURN(service_,
                   CoordinatorServer::Create(ledger_.get(), scheduler_.get(),
                                             service_options));

  InitGrpcServerPlugins();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, security.credentials, &port_);
  // gRPC sets SO_REUSEPORT by default: a second sweepd on a port in use would
  // bind it too and take half the connections. Binding a used port must fail.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  service_->ConfigureBuilder(&builder);
  metrics_->AddToBuilder(&builder);
  if (options_.configure_server) options_.configure_server(builder);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen,
                     " (is the port in use by another process?)"));
  }
  next_snapshot_ms_ = clock_->NowMs() + options_.snapshot_interval_ms;
  if (!options_.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(metrics_endpoint_,
                     MetricsEndpoint::Create(options_.metrics_listen,
                                             metrics_->collectables()));
  }
  return absl::OkStatus();
}

std::string Coordinator::address() const {
  const std::string& listen = options_.listen;
  return absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port_);
}

absl::Status Coordinator::Tick() {
  const absl::Status health = ledger_->health();
  if (!health.ok()) {
    // grpc.health.v1 answers NOT_SERVING until the process is restarted.
    if (auto* checks = server_->GetHealthCheckService()) {
      checks->SetServingStatus(false);
    }
    return health;
  }
  if (options_.snapshot_dir.empty()) return absl::OkStatus();
  if (SweepMilestoneReached()) milestone_pending_ = true;
  const int64_t now = clock_->NowMs();
  // Finishing sweeps and stages are snapshotted at once, but (when many
  // finish) at most every kMilestoneSnapshotGapMs or interval, whichever is
  // shorter: a snapshot copies the whole ledger.
  const int64_t gap =
      std::min<int64_t>(kMilestoneSnapshotGapMs, options_.snapshot_interval_ms);
  if (milestone_pending_ &&
      (last_snapshot_ms_ < 0 || now - last_snapshot_ms_ >= gap)) {
    Snapshot("a sweep or stage finished");
  } else if (now >= next_snapshot_ms_) {
    Snapshot("interval");
  }
  return absl::OkStatus();
}

bool Coordinator::SweepMilestoneReached() {
  bool reached = false;
  std::map<std::string, std::pair<bool, int64_t>> marks;
  for (const SweepSummary& sweep : scheduler_->ListSweeps()) {
    const bool final_state = IsFinalSweepState(sweep.state);
    const int64_t tasks = sweep.counts.total();
    auto it = sweep_marks_.find(sweep.sweep_id);
    if (it != sweep_marks_.end() &&
        ((final_state && !it->second.first) || tasks > it->second.second)) {
      reached = true;
    }
    marks[sweep.sweep_id] = {final_state, tasks};
  }
  sweep_marks_ = std::move(marks);
  return reached;
}

void Coordinator::Snapshot(const char* why) {
  const int64_t now = clock_->NowMs();
  next_snapshot_ms_ = now + options_.snapshot_interval_ms;
  last_snapshot_ms_ = now;
  milestone_pending_ = false;
  const int64_t transactions = ledger_->stats().transactions;
  SnapshotOptions snap;
  snap.dir = options_.snapshot_dir;
  snap.keep = options_.snapshot_keep;
  absl::StatusOr<std::string> written = WriteSnapshot(*ledger_, snap, now);
  if (written.ok()) {
    SWEEPD_LOG(INFO) << "snapshot written (" << why << "): " << *written;
    last_snapshot_ = *written;
    metrics_->RecordSnapshot(now);
    snapshot_transactions_ = transactions;
  } else {
    SWEEPD_LOG(WARNING) << "snapshot failed (" << why
                        << "): " << written.status();
  }
}

absl::Status Coordinator::Shutdown(absl::Duration grace) {
  if (shut_down_) return close_status_;
  shut_down_ = true;
  if (service_ != nullptr) service_->BeginShutdown();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(grace));
    server_->Wait();
  }
  if (service_ != nullptr) service_->Stop();
  metrics_endpoint_.reset();
  if (metrics_ != nullptr) metrics_->DetachScheduler();
  // The scheduler waits for its lease writes; the ledger then drains and
  // closes.
  scheduler_.reset();
  if (ledger_ != nullptr && !options_.snapshot_dir.empty() &&
      ledger_->health().ok() &&
      ledger_->stats().transactions != snapshot_transactions_) {
    // Everything is drained: the last state of this process, for a box that
    // may not come back.
    Snapshot("shutdown");
  }
  if (ledger_ != nullptr) {
    const LedgerStats stats = ledger_->stats();
    close_status_ = ledger_->Close();
    SWEEPD_LOG(INFO) << "ledger stats: " << FormatLedgerStats(stats);
  }
  lock_.reset();
  return close_status_;
}

}  // namespace sweepd
