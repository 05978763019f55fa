// WorkerAgent: the gRPC loop of a sweep-worker. It registers with the
// coordinator's WorkerGateway, leases tasks, groups them by prefix-share group
// key, runs each group through the ExecutorRegistry's executor on an executor
// thread, heartbeats on its own thread (renewing leases, carrying progress,
// receiving cancellations) and reports every outcome with the lease's fencing
// token, resending on UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED (the
// coordinator drops duplicates; a result is kept until a coordinator gave a
// verdict on it, across coordinator restarts). Drain() (SIGTERM) stops leasing,
// lets the running group finish within the drain grace or releases what is
// unfinished, releases leased-but-not-started tasks and makes Run() return OK.
// When the coordinator is away the agent retries with capped, jittered
// exponential backoff, cut short (and started over) as soon as its channel
// reconnects, and re-registers if the coordinator no longer knows it. Every RPC
// has a deadline.
//
// Ownership: the agent borrows the ExecutorRegistry and the Clock (both must
// outlive it) and owns its channel, threads and leases. Thread-safety: Run() is
// called once, from one thread; Drain(), Stop(), stats() and worker_id() may be
// called from any thread at any time.
#ifndef SWEEPD_WORKER_AGENT_AGENT_H_
#define SWEEPD_WORKER_AGENT_AGENT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/worker_metrics.h"

namespace grpc {
class Channel;
class ChannelCredentials;
}  // namespace grpc

namespace sweepd {

// What the worker tells the coordinator about itself (WorkerCapabilities on the
// wire; the job kinds come from the registry).
struct WorkerCapabilityInfo {
  std::string device_kind = "cpu";
  int32_t gpu_count = 0;
  int64_t gpu_memory_bytes = 0;  // per GPU
  int32_t tensor_parallel = 1;
  std::string model_fingerprint;  // empty: no model loaded
};

struct WorkerAgentOptions {
  // HOST:PORT of the coordinator. Ignored when `channel` is set.
  std::string coordinator = "127.0.0.1:7070";
  // Optional pre-made channel (tests).
  std::shared_ptr<grpc::Channel> channel;
  // Credentials of the channel made to `coordinator` (TLS and the bearer
  // token, proto/tls_config.h); null = plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Human-readable worker name sent on registration.
  std::string name;
  WorkerCapabilityInfo capabilities;
  // LeaseTasks.max_tasks: the largest group the worker takes at a time (>= 1).
  int32_t max_tasks = 8;
  // Heartbeat period; 0 = the interval the coordinator returns on registration
  // (5000 ms when it returns none).
  int64_t heartbeat_interval_ms = 0;
  // How long a draining worker lets its running group finish before releasing
  // it.
  int64_t drain_grace_ms = 30'000;
  // Deadline of every RPC.
  int64_t rpc_deadline_ms = 10'000;
  // How long one connection attempt to the coordinator (TCP + TLS + HTTP/2
  // handshakes) may take before the next one starts. Short, so a reconnect
  // stuck on the killed coordinator's TIME_WAIT sockets moves on quickly;
  // raise it above the handshake time of slow (cross-region) links.
  int64_t connect_timeout_ms = 500;
  // Reconnect / resend backoff: initial * 2^n, capped at max, times a jitter in
  // [0.8, 1.2).
  int64_t backoff_initial_ms = 100;
  int64_t backoff_max_ms = 5'000;
  // Wait before leasing again when the coordinator had no task and gave no
  // retry_after_ms.
  int64_t idle_poll_ms = 1'000;
  // Fault switch (tests): with this probability a ReportResult that succeeded
  // is treated as if its reply was lost (UNAVAILABLE) and resent.
  double fault_drop_report_reply = 0.0;
  // Seed of the jitter and fault-switch random source; 0 = seeded from the OS.
  uint64_t seed = 0;
  // Borrowed; required.
  const ExecutorRegistry* registry = nullptr;
  // Borrowed; null = no metrics. Task outcomes by kind, drains and tasks
  // released while draining are recorded here.
  WorkerMetrics* metrics = nullptr;
  // Borrowed; Clock::Real() when null. Timers (heartbeats, backoff, drain
  // grace) run on it.
  Clock* clock = nullptr;
  // Longest real-time wait between two looks at the clock and the agent's
  // state.
  int64_t wait_slice_ms = 20;
};

// Counters for tests, logs and the exit summary.
struct WorkerAgentStats {
  int64_t registrations = 0;  // successful RegisterWorker calls
  int64_t leased = 0;         // task assignments received
  int64_t reports =
      0;  // ReportResult calls answered OK (incl. dropped replies)
  int64_t committed = 0;   // reports the coordinator said committed
  int64_t duplicates = 0;  // reports answered committed=false
  int64_t report_resends =
      0;  // ReportResult calls repeated after a (real or faked) loss
  int64_t dropped_replies = 0;  // replies discarded by the fault switch
  int64_t lost_leases =
      0;  // reports rejected because the lease was no longer ours
  int64_t released = 0;      // tasks handed back with ReleaseTasks
  int64_t cancelled = 0;     // tasks stopped on the coordinator's request
  int64_t heartbeats = 0;    // heartbeats answered OK
  int64_t rpc_failures = 0;  // RPCs that failed with a retryable code
};

class WorkerAgent {
 public:
  static absl::StatusOr<std::unique_ptr<WorkerAgent>> Create(
      const WorkerAgentOptions& options);
  virtual ~WorkerAgent() = default;

  // Registers and serves until drained (returns OK) or stopped (returns
  // CANCELLED). Call once.
  virtual absl::Status Run() = 0;
  // Begins a drain (idempotent): no more leasing; finish or release current
  // tasks.
  virtual void Drain() = 0;
  // Stops at once without releasing anything (leases expire on the
  // coordinator). Idempotent.
  virtual void Stop() = 0;
  virtual WorkerAgentStats stats() const = 0;
  // Current worker id; empty until registered.
  virtual std::string worker_id() const = 0;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_AGENT_AGENT_H_
