// CoordinatorMetrics. See coordinator_metrics.h.
#include "coordinator/coordinator_metrics.h"

#include <chrono>
#include <map>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/task_states.h"
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace sweepd {
namespace {

using Clk = std::chrono::steady_clock;

const char* GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "Canceled";
    case grpc::StatusCode::UNKNOWN:
      return "Unknown";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "InvalidArgument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DeadlineExceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "NotFound";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "AlreadyExists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PermissionDenied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "ResourceExhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FailedPrecondition";
    case grpc::StatusCode::ABORTED:
      return "Aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OutOfRange";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "Unimplemented";
    case grpc::StatusCode::INTERNAL:
      return "Internal";
    case grpc::StatusCode::UNAVAILABLE:
      return "Unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "DataLoss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "Unauthenticated";
    default:
      return "Unknown";
  }
}

// "/sweepd.v1.Coordinator/SubmitSweep" -> {"sweepd.v1.Coordinator",
// "SubmitSweep"}.
std::pair<std::string, std::string> SplitMethod(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  const size_t start = (!path.empty() && path[0] == '/') ? 1 : 0;
  return {path.substr(start, slash - start), path.substr(slash + 1)};
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,  0.5,    1,     2.5,  5,     10};
}

prometheus::ClientMetric Gauge(double value,
                               std::vector<prometheus::ClientMetric::Label> l) {
  prometheus::ClientMetric m;
  m.label = std::move(l);
  m.gauge.value = value;
  return m;
}

prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = prometheus::MetricType::Gauge;
  return f;
}

const char* SweepStateName(v1::SweepState s) {
  switch (s) {
    case v1::SWEEP_STATE_RUNNING:
      return "running";
    case v1::SWEEP_STATE_DONE:
      return "done";
    case v1::SWEEP_STATE_FAILED:
      return "failed";
    case v1::SWEEP_STATE_CANCELLED:
      return "cancelled";
    default:
      return "unspecified";
  }
}

// Reads the status of gRPC's batch object. gRPC allocates it on one thread and
// runs the interceptors on another, ordered by its own synchronization, which
// ThreadSanitizer cannot see in Debian's uninstrumented gRPC; the suppression
// file (tests/sanitizers/tsan.supp) names this function, so it stays separate
// (never inlined) and only reads. (Proceed() is not wrapped: the handler runs
// inside it.)
ABSL_ATTRIBUTE_NOINLINE bool GrpcBatchSendStatus(
    grpc::experimental::InterceptorBatchMethods* methods,
    grpc::StatusCode* code) {
  if (!methods->QueryInterceptionHookPoint(
          grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
    return false;
  }
  *code = methods->GetSendStatus().error_code();
  return true;
}

// Counts one RPC: created when the call starts, observed when its status is
// sent.
class RpcInterceptor : public grpc::experimental::Interceptor {
 public:
  RpcInterceptor(CoordinatorMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(Clk::now()) {}
  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    grpc::StatusCode code = grpc::StatusCode::OK;
    if (GrpcBatchSendStatus(methods, &code)) {
      const double seconds =
          std::chrono::duration<double>(Clk::now() - start_).count();
      metrics_->ObserveRpc(method_, code, seconds);
    }
    methods->Proceed();
  }

 private:
  CoordinatorMetrics* const metrics_;
  const std::string method_;
  const Clk::time_point start_;
};

class RpcInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcInterceptorFactory(CoordinatorMetrics* metrics)
      : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcInterceptor(metrics_, info->method());
  }

 private:
  CoordinatorMetrics* const metrics_;
};

// The gauges read from the scheduler at scrape time.
class StateCollector : public prometheus::Collectable {
 public:
  StateCollector(Clock* clock, int64_t worker_timeout_ms)
      : clock_(clock), worker_timeout_ms_(worker_timeout_ms) {}

  void Attach(LeaseScheduler* scheduler) {
    absl::MutexLock lock(&mu_);
    scheduler_ = scheduler;
  }
  void RecordSnapshot(int64_t unix_ms) {
    absl::MutexLock lock(&mu_);
    last_snapshot_ms_ = unix_ms;
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::MutexLock lock(&mu_);
    std::vector<prometheus::MetricFamily> out;
    const int64_t now = clock_->NowMs();
    if (last_snapshot_ms_ > 0) {
      auto age =
          GaugeFamily("sweepd_snapshot_age_seconds",
                      "Seconds since the last ledger snapshot was written.");
      age.metric.push_back(Gauge((now - last_snapshot_ms_) / 1000.0, {}));
      out.push_back(std::move(age));
    }
    if (scheduler_ == nullptr) return out;

    auto tasks = GaugeFamily("sweepd_tasks", "Tasks by sweep and state.");
    auto sweeps = GaugeFamily("sweepd_sweeps", "Sweeps by state.");
    std::map<std::string, int64_t> sweep_states = {
        {"running", 0}, {"done", 0}, {"failed", 0}, {"cancelled", 0}};
    for (const SweepSummary& s : scheduler_->ListSweeps()) {
      ++sweep_states[SweepStateName(s.state)];
      const std::pair<const char*, int64_t> counts[] = {
          {"pending", s.counts.pending()},
          {"leased", s.counts.leased()},
          {"done", s.counts.done()},
          {"failed", s.counts.failed()},
          {"cancelled", s.counts.cancelled()}};
      for (const auto& [state, n] : counts) {
        tasks.metric.push_back(Gauge(
            static_cast<double>(n),
            {{"sweep", s.sweep_id}, {"sweep_name", s.name}, {"state", state}}));
      }
    }
    for (const auto& [state, n] : sweep_states) {
      sweeps.metric.push_back(
          Gauge(static_cast<double>(n), {{"state", state}}));
    }

    auto workers = GaugeFamily(
        "sweepd_workers",
        "Registered workers by state: live (heard from within the worker "
        "timeout), draining, lost.");
    auto leases =
        GaugeFamily("sweepd_leases_active", "Tasks leased to workers now.");
    std::map<std::string, int64_t> worker_states = {
        {"live", 0}, {"draining", 0}, {"lost", 0}};
    int64_t active = 0;
    for (const v1::WorkerInfo& w : scheduler_->ListWorkers()) {
      active += w.active_leases();
      if (now - w.last_seen_unix_ms() > worker_timeout_ms_) {
        ++worker_states["lost"];
      } else if (w.draining()) {
        ++worker_states["draining"];
      } else {
        ++worker_states["live"];
      }
    }
    for (const auto& [state, n] : worker_states) {
      workers.metric.push_back(
          Gauge(static_cast<double>(n), {{"state", state}}));
    }
    leases.metric.push_back(Gauge(static_cast<double>(active), {}));
    out.push_back(std::move(tasks));
    out.push_back(std::move(sweeps));
    out.push_back(std::move(workers));
    out.push_back(std::move(leases));
    return out;
  }

 private:
  Clock* const clock_;
  const int64_t worker_timeout_ms_;
  mutable absl::Mutex mu_;
  LeaseScheduler* scheduler_ ABSL_GUARDED_BY(mu_) = nullptr;
  int64_t last_snapshot_ms_ ABSL_GUARDED_BY(mu_) = 0;
};

class CoordinatorMetricsImpl : public CoordinatorMetrics {
 public:
  CoordinatorMetricsImpl(Clock* clock, int64_t worker_timeout_ms)
      : registry_(std::make_shared<prometheus::Registry>()),
        state_(std::make_shared<StateCollector>(clock, worker_timeout_ms)),
        rpc_handled_(prometheus::BuildCounter()
                         .Name("grpc_server_handled_total")
                         .Help("RPCs completed on the server, by method and "
                               "status code.")
                         .Register(*registry_)),
        rpc_seconds_(prometheus::BuildHistogram()
                         .Name("grpc_server_handling_seconds")
                         .Help("Time from the start of an RPC to its status, "
                               "seconds.")
                         .Register(*registry_)),
        lease_seconds_(
            prometheus::BuildHistogram()
                .Name("sweepd_lease_latency_seconds")
                .Help("Time to answer a worker's LeaseTasks call, seconds.")
                .Register(*registry_)
                .Add({}, LatencyBuckets())),
        commit_seconds_(
            prometheus::BuildHistogram()
                .Name("sweepd_ledger_commit_seconds")
                .Help("Time of one ledger group commit (BEGIN to COMMIT "
                      "durable), seconds.")
                .Register(*registry_)
                .Add({}, LatencyBuckets())),
        commit_ops_(prometheus::BuildCounter()
                        .Name("sweepd_ledger_commit_operations_total")
                        .Help("Write operations committed to the ledger.")
                        .Register(*registry_)
                        .Add({})) {}

  std::vector<std::shared_ptr<prometheus::Collectable>> collectables()
      override {
    return {registry_, state_};
  }

  void AttachScheduler(LeaseScheduler* scheduler) override {
    state_->Attach(scheduler);
  }
  void DetachScheduler() override { state_->Attach(nullptr); }

  void AddToBuilder(grpc::ServerBuilder* builder) override {
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        factories;
    factories.push_back(std::make_unique<RpcInterceptorFactory>(this));
    builder->experimental().SetInterceptorCreators(std::move(factories));
  }

  void ObserveRpc(const std::string& method, grpc::StatusCode code,
                  double seconds) override {
    auto [service, name] = SplitMethod(method);
    rpc_handled_
        .Add({{"grpc_service", service},
              {"grpc_method", name},
              {"grpc_code", GrpcCodeName(code)}})
        .Increment();
    rpc_seconds_
        .Add({{"grpc_service", service}, {"grpc_method", name}},
             LatencyBuckets())
        .Observe(seconds);
    if (name == "LeaseTasks") lease_seconds_.Observe(seconds);
  }

  void ObserveCommit(double seconds, int64_t operations) override {
    commit_seconds_.Observe(seconds);
    commit_ops_.Increment(static_cast<double>(operations));
  }

  void RecordSnapshot(int64_t unix_ms) override {
    state_->RecordSnapshot(unix_ms);
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<StateCollector> state_;
  prometheus::Family<prometheus::Counter>& rpc_handled_;
  prometheus::Family<prometheus::Histogram>& rpc_seconds_;
  prometheus::Histogram& lease_seconds_;
  prometheus::Histogram& commit_seconds_;
  prometheus::Counter& commit_ops_;
};

}  // namespace

std::unique_ptr<CoordinatorMetrics> CoordinatorMetrics::Create(
    Clock* clock, int64_t worker_timeout_ms) {
  return std::make_unique<CoordinatorMetricsImpl>(clock, worker_timeout_ms);
}

}  // namespace sweepd
