// CoordinatorMetrics: sweepd's Prometheus metrics (docs/OBSERVABILITY.md).
//
//   sweepd_tasks{sweep,sweep_name,state}            gauge, from the scheduler's
//   mirror at scrape sweepd_sweeps{state}                            gauge,
//   sweeps by state sweepd_workers{state}                           gauge,
//   workers live | draining | lost sweepd_leases_active gauge
//   sweepd_lease_latency_seconds                    histogram of LeaseTasks
//   calls sweepd_ledger_commit_seconds                    histogram of ledger
//   group commits sweepd_ledger_commit_operations_total           counter
//   grpc_server_handled_total{grpc_service,grpc_method,grpc_code}   counter
//   grpc_server_handling_seconds{grpc_service,grpc_method}          histogram
//   sweepd_snapshot_age_seconds                     gauge, since the last
//   snapshot written
//                                                   (absent until one is)
//
// The RPC metrics come from a gRPC server interceptor (AddToBuilder), so every
// method and status code is counted the same way, the service code untouched.
//
// Ownership: owns its collectables (shared with the MetricsEndpoint or HTTP
// server that serves them); borrows the Clock and, between AttachScheduler
// and DetachScheduler, the LeaseScheduler. Thread-safety: every method is
// thread-safe; scrapes may run on any thread.
#ifndef SWEEPD_COORDINATOR_COORDINATOR_METRICS_H_
#define SWEEPD_COORDINATOR_COORDINATOR_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "coordinator/scheduler.h"
#include "grpcpp/grpcpp.h"

namespace prometheus {
class Collectable;
}  // namespace prometheus

namespace sweepd {

class CoordinatorMetrics {
 public:
  // `clock` is borrowed (snapshot age, worker liveness); a worker not heard
  // from for `worker_timeout_ms` counts as lost.
  static std::unique_ptr<CoordinatorMetrics> Create(Clock* clock,
                                                    int64_t worker_timeout_ms);
  virtual ~CoordinatorMetrics() = default;

  // What to serve (MetricsEndpoint, the dashboard's /metrics): the registry of
  // counters and histograms, and the scrape-time gauges.
  virtual std::vector<std::shared_ptr<prometheus::Collectable>>
  collectables() = 0;

  // Scrape-time gauges read `scheduler` from now until DetachScheduler(),
  // which the owner calls before destroying it.
  virtual void AttachScheduler(LeaseScheduler* scheduler) = 0;
  virtual void DetachScheduler() = 0;

  // Installs the RPC-counting interceptor on `builder`.
  virtual void AddToBuilder(grpc::ServerBuilder* builder) = 0;

  // One RPC finished (the interceptor calls it; tests may too). `method` is
  // the full gRPC path "/package.Service/Method".
  virtual void ObserveRpc(const std::string& method, grpc::StatusCode code,
                          double seconds) = 0;
  // One ledger transaction committed `operations` writes in `seconds`
  // (LedgerOptions::commit_observer).
  virtual void ObserveCommit(double seconds, int64_t operations) = 0;
  // A snapshot was written at `unix_ms` (Coordinator::Tick).
  virtual void RecordSnapshot(int64_t unix_ms) = 0;
};

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_COORDINATOR_METRICS_H_
