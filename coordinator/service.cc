// CoordinatorServer::Create and the ServerImpl itself: construction,
// shutdown and the background loop (lease expiry passes, derived-stage
// planning, watch polls); service_impl.h says which file holds the handlers.
#include "coordinator/service.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "common/logging.h"
#include "coordinator/service_impl.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace sweepd {
namespace service_internal {

ServerImpl::ServerImpl(Ledger* ledger, LeaseScheduler* scheduler,
                       const ServiceOptions& options)
    : ledger_(ledger),
      scheduler_(scheduler),
      options_(options),
      executor_(options.executor_threads),
      artifacts_(ledger, &executor_, options.artifacts,
                 options.rehash_reported_artifacts),
      coordinator_(MakeCoordinatorHandlers(this)),
      gateway_(MakeGatewayHandlers(this)) {
  background_ = std::thread([this] { BackgroundLoop(); });
}

ServerImpl::~ServerImpl() { Stop(); }

void ServerImpl::ConfigureBuilder(grpc::ServerBuilder* builder) {
  builder->RegisterService(coordinator_.get());
  builder->RegisterService(gateway_.get());
  builder->SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder->SetMaxSendMessageSize(options_.max_message_bytes);
}

void ServerImpl::Stop() {
  BeginShutdown();
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (background_.joinable()) background_.join();
  executor_.Stop();
}

void ServerImpl::BackgroundLoop() {
  int64_t next_expiry = 0;
  while (!stop_.HasBeenNotified()) {
    const int64_t now = options_.clock->NowMs();
    if (now >= next_expiry) {
      next_expiry = now + options_.expiry_interval_ms;
      scheduler_->ExpireLeases([](absl::StatusOr<int> r) {
        if (!r.ok())
          SWEEPD_LOG(WARNING) << "lease expiry pass failed: " << r.status();
      });
    }
    if (!Draining()) {
      for (StageWork& work : scheduler_->TakeSweepsReadyForStage()) {
        executor_.Schedule([this, work] { DeriveStage(work); });
      }
    }
    PollWatchers(Draining());
    stop_.WaitForNotificationWithTimeout(
        absl::Milliseconds(options_.watch_interval_ms));
  }
  // Final pass: end every open watch stream.
  PollWatchers(/*shutting_down=*/true);
}

void ServerImpl::DeriveStage(const StageWork& work) {
  auto abandon = [&](const absl::Status& status) {
    SWEEPD_LOG(WARNING) << "sweep " << work.sweep_id << ": deriving stage "
                        << work.stage_index
                        << " failed, will retry: " << status;
    scheduler_->AbandonStage(work.sweep_id);
  };
  auto sweep = ledger_->GetSweep(work.sweep_id);
  if (!sweep.ok()) return abandon(sweep.status());
  std::vector<v1::TaskRecord> records;
  int64_t after = -1;
  while (true) {
    auto page = ledger_->ListTasks(work.sweep_id, {}, after, 5000);
    if (!page.ok()) return abandon(page.status());
    for (auto& t : page->tasks) records.push_back(std::move(t));
    if (!page->more) break;
    after = page->last_idx;
  }
  auto planned = PlanDerivedStage(sweep->spec, work.stage_index, records,
                                  work.first_index, options_.planner);
  std::vector<PlannedTask> tasks;
  if (planned.ok()) {
    tasks = std::move(*planned);
  } else if (absl::IsFailedPrecondition(planned.status()) ||
             absl::IsInvalidArgument(planned.status())) {
    tasks.push_back(StageFailureTask(sweep->spec, work, planned.status()));
  } else {
    return abandon(planned.status());
  }
  const size_t n = tasks.size();
  scheduler_->AppendStage(work.sweep_id, work.stage_index, std::move(tasks),
                          [work, n](absl::StatusOr<int64_t> r) {
                            if (!r.ok()) {
                              SWEEPD_LOG(WARNING)
                                  << "sweep " << work.sweep_id << ": stage "
                                  << work.stage_index
                                  << " not recorded: " << r.status();
                            } else {
                              SWEEPD_LOG(INFO)
                                  << "sweep " << work.sweep_id << ": stage "
                                  << work.stage_index << " planned " << *r
                                  << " of " << n << " tasks";
                            }
                          });
}

PlannedTask ServerImpl::StageFailureTask(const v1::SweepSpec& spec,
                                         const StageWork& work,
                                         const absl::Status& why) {
  const v1::Stage& stage = spec.stages(work.stage_index);
  PlannedTask t;
  t.spec.set_kind(v1::JOB_KIND_EVAL);
  t.spec.set_stage(stage.name());
  t.spec.set_index(work.first_index);
  t.task_key = Sha256Hex(
      absl::StrCat("stage-failure:", work.sweep_id, ":", stage.name()));
  t.group_key = t.task_key;
  t.failure = std::string(why.message());
  return t;
}

void ServerImpl::PollWatchers(bool shutting_down) {
  std::vector<std::pair<WatchReactor*, WatchReactor::Action>> actions;
  {
    absl::MutexLock lock(&watch_mu_);
    for (WatchReactor* w : watchers_) {
      auto a = w->Decide(scheduler_, options_.clock, shutting_down);
      if (a != WatchReactor::Action::kNothing) actions.emplace_back(w, a);
    }
  }
  for (auto& [w, a] : actions) w->Act(a);
}

}  // namespace service_internal

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Create(
    Ledger* ledger, LeaseScheduler* scheduler, const ServiceOptions& options) {
  if (ledger == nullptr || scheduler == nullptr) {
    return absl::InvalidArgumentError(
        "CoordinatorServer needs a ledger and a scheduler");
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("ServiceOptions.clock is null");
  }
  if (options.executor_threads < 1) {
    return absl::InvalidArgumentError(
        "ServiceOptions.executor_threads must be >= 1");
  }
  return std::unique_ptr<CoordinatorServer>(
      new service_internal::ServerImpl(ledger, scheduler, options));
}

bool IsLoopbackAddress(const std::string& host_port) {
  std::string host = host_port;
  const size_t colon = host.rfind(':');
  if (colon != std::string::npos && host.find(']') != std::string::npos) {
    host = host.substr(0, host.find(']') + 1);
  } else if (colon != std::string::npos && host.find(':') == colon) {
    host = host.substr(0, colon);
  }
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  return absl::StartsWith(host, "127.");
}

void InitGrpcServerPlugins() {
  static const bool once = [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    return true;
  }();
  (void)once;
}

}  // namespace sweepd
