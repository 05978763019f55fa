#include "worker/agent/agent.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/error_reason.h"
#include "common/logging.h"
#include "common/version.h"
#include "proto/grpc_status.h"
#include "sweepd/v1/worker.grpc.pb.h"
#include "worker/agent/conversion.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

constexpr int64_t kDefaultHeartbeatIntervalMs = 5'000;

// Codes after which the same call may simply be sent again. The agent never
// cancels its own calls, so CANCELLED is the coordinator's server giving up on
// the call (it shuts down): no verdict on the call, which the next coordinator
// must hear again (a finished result is kept and resent, never dropped).
bool IsRetryableRpc(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kResourceExhausted ||
         s.code() == absl::StatusCode::kCancelled;
}

// The coordinator no longer knows this worker id (it restarted on a ledger
// without the registration, or expired the worker): register again. Read from
// the error's reason, never from its wording.
bool IsUnknownWorker(const absl::Status& s) {
  return ErrorReasonOf(s) == kReasonUnknownWorker;
}

enum class LeaseState { kQueued, kRunning, kReporting, kReleased };

struct LeaseEntry {
  v1::TaskAssignment assignment;
  LeaseState state = LeaseState::kQueued;
  // The coordinator listed the task in HeartbeatResponse.cancelled_task_keys.
  bool cancel_requested = false;
};

class WorkerAgentImpl;

// The TaskContext of one running group. Cancellation state lives in the agent's
// lease table (per task) and in `group_cancelled_` (drain grace expired or
// Stop()).
class GroupContext : public TaskContext {
 public:
  GroupContext(WorkerAgentImpl* agent, std::vector<std::string> keys)
      : agent_(agent), keys_(std::move(keys)) {}

  bool cancelled() const override;
  bool task_cancelled(size_t index) const override;
  void SetProgress(double fraction) override {
    progress_.store(std::clamp(fraction, 0.0, 1.0), std::memory_order_relaxed);
  }

  void CancelGroup() { group_cancelled_.store(true); }
  bool group_cancelled() const { return group_cancelled_.load(); }
  // Progress of task `index`: the share of the group's progress that falls on
  // it.
  double TaskProgress(size_t index) const {
    double p = progress_.load(std::memory_order_relaxed) * keys_.size() - index;
    return std::clamp(p, 0.0, 1.0);
  }
  const std::vector<std::string>& keys() const { return keys_; }

 private:
  WorkerAgentImpl* const agent_;
  const std::vector<std::string> keys_;
  std::atomic<double> progress_{0.0};
  std::atomic<bool> group_cancelled_{false};
};

class WorkerAgentImpl : public WorkerAgent {
 public:
  WorkerAgentImpl(const WorkerAgentOptions& options,
                  std::shared_ptr<grpc::Channel> channel, uint64_t seed)
      : options_(options),
        clock_(options.clock != nullptr ? options.clock : Clock::Real()),
        channel_(std::move(channel)),
        stub_(v1::WorkerGateway::NewStub(channel_)),
        rng_(seed) {}

  ~WorkerAgentImpl() override {
    Stop();
    if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  }

  absl::Status Run() override;
  void Drain() override;
  void Stop() override;
  WorkerAgentStats stats() const override {
    absl::MutexLock lock(&mu_);
    return stats_;
  }
  std::string worker_id() const override {
    absl::MutexLock lock(&mu_);
    return worker_id_;
  }

  bool IsTaskCancelled(const std::string& key) const {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(key);
    return it == leases_.end() || it->second.cancel_requested ||
           it->second.state == LeaseState::kReleased;
  }
  bool AreAllTasksCancelled(const std::vector<std::string>& keys) const {
    absl::MutexLock lock(&mu_);
    for (const std::string& key : keys) {
      auto it = leases_.find(key);
      if (it != leases_.end() && !it->second.cancel_requested &&
          it->second.state != LeaseState::kReleased) {
        return false;
      }
    }
    return true;
  }

 private:
  template <typename Req, typename Resp>
  absl::Status Call(grpc::Status (v1::WorkerGateway::Stub::*method)(
                        grpc::ClientContext*, const Req&, Resp*),
                    const Req& request, Resp* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(options_.rpc_deadline_ms));
    return FromGrpcStatus((stub_.get()->*method)(&ctx, request, response));
  }

  // Waits (mu_ held) until `wake()` is true or the clock reaches `deadline_ms`.
  // Returns whether `wake()` became true.
  bool WaitUntilLocked(int64_t deadline_ms, const std::function<bool()>& wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (true) {
      if (wake()) return true;
      int64_t now = clock_->NowMs();
      if (now >= deadline_ms) return false;
      cv_.WaitWithTimeout(
          &mu_, absl::Milliseconds(std::min<int64_t>(deadline_ms - now,
                                                     options_.wait_slice_ms)));
    }
  }
  // Sleeps `delay_ms` on the clock unless stopped (or, with `wake_on_drain`,
  // draining).
  void Pause(int64_t delay_ms, bool wake_on_drain) {
    absl::MutexLock lock(&mu_);
    WaitUntilLocked(clock_->NowMs() + delay_ms,
                    [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
                      return stopping_ || (wake_on_drain && draining_);
                    });
  }
  // Waits `delay_ms` on the clock before a failed call is sent again, unless
  // stopped (or, with `wake_on_drain`, draining). Returns true when the
  // channel reconnected meanwhile (seen not READY, then READY): a restarted
  // coordinator serves again, so the caller retries at once and starts its
  // backoff over instead of sleeping out a backoff grown while it was away.
  bool PauseBeforeRetry(int64_t delay_ms, bool wake_on_drain) {
    bool saw_down =
        channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY;
    const int64_t deadline = clock_->NowMs() + delay_ms;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_ || (wake_on_drain && draining_)) return false;
        const int64_t now = clock_->NowMs();
        if (now >= deadline) return false;
        cv_.WaitWithTimeout(&mu_, absl::Milliseconds(std::min<int64_t>(
                                      deadline - now, options_.wait_slice_ms)));
      }
      // try_to_connect: an IDLE channel (its connection closed with the old
      // coordinator) starts connecting, so the reconnect is seen.
      if (channel_->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_READY) {
        saw_down = true;
      } else if (saw_down) {
        return true;
      }
    }
  }
  int64_t BackoffMs(int failures) {
    int64_t base = options_.backoff_initial_ms;
    for (int i = 0; i < failures && base < options_.backoff_max_ms; ++i)
      base *= 2;
    base = std::min(base, options_.backoff_max_ms);
    absl::MutexLock lock(&mu_);
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    return std::max<int64_t>(1, static_cast<int64_t>(base * jitter(rng_)));
  }
  bool FaultDropsReply() {
    if (options_.fault_drop_report_reply <= 0.0) return false;
    absl::MutexLock lock(&mu_);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    return u(rng_) < options_.fault_drop_report_reply;
  }

  v1::WorkerCapabilities CapabilitiesProto() const;
  // Registers, retrying with backoff. Returns false if it gave up (stopped, or
  // `give_up_on_drain` and draining).
  bool RegisterWithRetry(bool give_up_on_drain);
  // Registers again unless another thread already replaced `stale_id`.
  void Reregister(const std::string& stale_id);

  void HeartbeatLoop();
  void LeaseLoop();
  void RunGroup(const std::vector<std::string>& keys);
  void HandleOutcome(const std::string& key,
                     absl::StatusOr<TaskOutput> outcome);
  void ReportWithRetry(v1::ReportResultRequest request);
  // Marks the leases released (their outcomes are no longer reported) and tells
  // the coordinator. Keys that are not held, or whose result is being reported,
  // are skipped.
  void Release(const std::vector<std::string>& keys, const std::string& reason);

  const WorkerAgentOptions options_;
  Clock* const clock_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerGateway::Stub> stub_;
  std::thread heartbeat_thread_;
  // Serialises re-registration between the lease, heartbeat and executor
  // threads.
  absl::Mutex register_mu_;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  int64_t heartbeat_interval_ms_ ABSL_GUARDED_BY(mu_) =
      kDefaultHeartbeatIntervalMs;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int64_t drain_deadline_ms_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool heartbeat_stop_ ABSL_GUARDED_BY(mu_) = false;
  bool group_finished_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, LeaseEntry> leases_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<GroupContext> current_group_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  WorkerAgentStats stats_ ABSL_GUARDED_BY(mu_);
};

bool GroupContext::cancelled() const {
  return group_cancelled() || agent_->AreAllTasksCancelled(keys_);
}

bool GroupContext::task_cancelled(size_t index) const {
  if (group_cancelled()) return true;
  if (index >= keys_.size()) return true;
  return agent_->IsTaskCancelled(keys_[index]);
}

v1::WorkerCapabilities WorkerAgentImpl::CapabilitiesProto() const {
  v1::WorkerCapabilities caps;
  caps.set_device_kind(options_.capabilities.device_kind);
  caps.set_gpu_count(options_.capabilities.gpu_count);
  caps.set_gpu_memory_bytes(options_.capabilities.gpu_memory_bytes);
  caps.set_tensor_parallel(options_.capabilities.tensor_parallel);
  caps.set_model_fingerprint(options_.capabilities.model_fingerprint);
  for (const std::string& kind : options_.registry->kinds()) {
    auto job_kind = JobKindFromName(kind);
    if (job_kind.ok()) caps.add_job_kinds(*job_kind);
  }
  return caps;
}

bool WorkerAgentImpl::RegisterWithRetry(bool give_up_on_drain) {
  v1::RegisterWorkerRequest request;
  request.set_name(options_.name);
  *request.mutable_capabilities() = CapabilitiesProto();
  for (int failures = 0;; ++failures) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ || (give_up_on_drain && draining_)) return false;
    }
    v1::RegisterWorkerResponse response;
    absl::Status s =
        Call(&v1::WorkerGateway::Stub::RegisterWorker, request, &response);
    if (s.ok() && !response.worker_id().empty()) {
      absl::MutexLock lock(&mu_);
      worker_id_ = response.worker_id();
      if (options_.heartbeat_interval_ms > 0) {
        heartbeat_interval_ms_ = options_.heartbeat_interval_ms;
      } else if (response.heartbeat_interval_ms() > 0) {
        heartbeat_interval_ms_ = response.heartbeat_interval_ms();
      }
      ++stats_.registrations;
      SWEEPD_LOG(INFO) << "registered with " << options_.coordinator << " as "
                       << worker_id_ << " (heartbeat every "
                       << heartbeat_interval_ms_ << " ms)";
      return true;
    }
    if (s.ok())
      s = absl::InternalError("RegisterWorker returned an empty worker_id");
    {
      absl::MutexLock lock(&mu_);
      ++stats_.rpc_failures;
    }
    int64_t delay = BackoffMs(failures);
    SWEEPD_LOG(WARNING) << "RegisterWorker with " << options_.coordinator
                        << " failed: " << s.ToString() << "; retrying in "
                        << delay << " ms";
    if (PauseBeforeRetry(delay, give_up_on_drain)) failures = -1;
  }
}

void WorkerAgentImpl::Reregister(const std::string& stale_id) {
  absl::MutexLock reg(&register_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (worker_id_ != stale_id) return;
  }
  SWEEPD_LOG(WARNING) << "the coordinator no longer knows worker " << stale_id
                      << "; registering again";
  RegisterWithRetry(/*give_up_on_drain=*/false);
}

absl::Status WorkerAgentImpl::Run() {
  if (!RegisterWithRetry(/*give_up_on_drain=*/true)) {
    absl::MutexLock lock(&mu_);
    return stopping_
               ? absl::CancelledError("worker agent stopped before registering")
               : absl::OkStatus();
  }
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  LeaseLoop();
  bool stopped;
  std::vector<std::string> remaining;
  {
    absl::MutexLock lock(&mu_);
    stopped = stopping_;
    for (const auto& [key, entry] : leases_) {
      if (entry.state != LeaseState::kReporting) remaining.push_back(key);
    }
  }
  if (!stopped && !remaining.empty()) Release(remaining, "worker draining");
  {
    absl::MutexLock lock(&mu_);
    heartbeat_stop_ = true;
    cv_.SignalAll();
  }
  heartbeat_thread_.join();
  WorkerAgentStats s = stats();
  SWEEPD_LOG(INFO) << "worker agent " << (stopped ? "stopped" : "drained")
                   << ": leased " << s.leased << ", committed " << s.committed
                   << ", duplicates " << s.duplicates << ", released "
                   << s.released << ", cancelled " << s.cancelled
                   << ", lost leases " << s.lost_leases;
  if (stopped) return absl::CancelledError("worker agent stopped");
  return absl::OkStatus();
}

void WorkerAgentImpl::Drain() {
  absl::MutexLock lock(&mu_);
  if (draining_) return;
  draining_ = true;
  if (options_.metrics != nullptr) options_.metrics->RecordDrain();
  drain_deadline_ms_ = clock_->NowMs() + options_.drain_grace_ms;
  SWEEPD_LOG(INFO) << "draining: no more leases; running tasks get "
                   << options_.drain_grace_ms << " ms to finish";
  cv_.SignalAll();
}

void WorkerAgentImpl::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (current_group_ != nullptr) current_group_->CancelGroup();
  cv_.SignalAll();
}

void WorkerAgentImpl::HeartbeatLoop() {
  int64_t next_ms;
  {
    absl::MutexLock lock(&mu_);
    next_ms = clock_->NowMs() + heartbeat_interval_ms_;
  }
  while (true) {
    v1::HeartbeatRequest request;
    std::string sent_id;
    {
      absl::MutexLock lock(&mu_);
      WaitUntilLocked(next_ms, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return heartbeat_stop_ || stopping_;
      });
      if (heartbeat_stop_ || stopping_) return;
      next_ms = clock_->NowMs() + heartbeat_interval_ms_;
      sent_id = worker_id_;
      request.set_worker_id(worker_id_);
      request.set_draining(draining_);
      std::map<std::string, double> progress;
      if (current_group_ != nullptr) {
        const auto& keys = current_group_->keys();
        for (size_t i = 0; i < keys.size(); ++i) {
          progress[keys[i]] = current_group_->TaskProgress(i);
        }
      }
      for (const auto& [key, entry] : leases_) {
        if (entry.state == LeaseState::kReleased) continue;
        v1::LeaseProgress* p = request.add_leases();
        p->set_task_key(key);
        p->set_fencing_token(entry.assignment.fencing_token());
        auto it = progress.find(key);
        p->set_fraction_done(it == progress.end() ? 0.0 : it->second);
      }
    }
    v1::HeartbeatResponse response;
    absl::Status s =
        Call(&v1::WorkerGateway::Stub::Heartbeat, request, &response);
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      ++stats_.heartbeats;
      for (const std::string& key : response.cancelled_task_keys()) {
        auto it = leases_.find(key);
        if (it == leases_.end() || it->second.cancel_requested) continue;
        SWEEPD_LOG(INFO) << "coordinator cancelled task " << key;
        it->second.cancel_requested = true;
        ++stats_.cancelled;
        if (it->second.state == LeaseState::kQueued) leases_.erase(it);
      }
      cv_.SignalAll();
    } else if (IsUnknownWorker(s)) {
      Reregister(sent_id);
    } else {
      absl::MutexLock lock(&mu_);
      ++stats_.rpc_failures;
      SWEEPD_LOG(WARNING) << "Heartbeat failed: " << s.ToString();
    }
  }
}

void WorkerAgentImpl::LeaseLoop() {
  int failures = 0;
  while (true) {
    v1::LeaseTasksRequest request;
    {
      absl::MutexLock lock(&mu_);
      if (draining_ || stopping_) return;
      request.set_worker_id(worker_id_);
    }
    request.set_max_tasks(options_.max_tasks);
    *request.mutable_capabilities() = CapabilitiesProto();
    v1::LeaseTasksResponse response;
    absl::Status s =
        Call(&v1::WorkerGateway::Stub::LeaseTasks, request, &response);
    if (!s.ok()) {
      if (IsUnknownWorker(s)) {
        Reregister(request.worker_id());
        continue;
      }
      {
        absl::MutexLock lock(&mu_);
        ++stats_.rpc_failures;
      }
      int64_t delay = BackoffMs(failures++);
      SWEEPD_LOG(WARNING) << "LeaseTasks failed: " << s.ToString()
                          << "; retrying in " << delay << " ms";
      if (PauseBeforeRetry(delay, /*wake_on_drain=*/true)) failures = 0;
      continue;
    }
    failures = 0;
    if (response.tasks_size() == 0) {
      Pause(response.retry_after_ms() > 0 ? response.retry_after_ms()
                                          : options_.idle_poll_ms,
            /*wake_on_drain=*/true);
      continue;
    }
    // Group by group_key, in the order the coordinator sent them.
    std::vector<std::vector<std::string>> groups;
    std::map<std::string, size_t> group_index;
    {
      absl::MutexLock lock(&mu_);
      for (const v1::TaskAssignment& a : response.tasks()) {
        ++stats_.leased;
        LeaseEntry& entry = leases_[a.task_key()];
        entry.assignment = a;
        entry.state = LeaseState::kQueued;
        entry.cancel_requested = false;
        auto [it, inserted] = group_index.emplace(a.group_key(), groups.size());
        if (inserted) groups.emplace_back();
        groups[it->second].push_back(a.task_key());
      }
    }
    for (const auto& group : groups) {
      {
        absl::MutexLock lock(&mu_);
        if (draining_ || stopping_) break;
      }
      RunGroup(group);
    }
  }
}

void WorkerAgentImpl::RunGroup(const std::vector<std::string>& group_keys) {
  std::vector<std::string> keys;
  std::vector<TaskInput> inputs;
  Executor* executor = nullptr;
  std::vector<std::pair<std::string, absl::Status>> rejected;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& key : group_keys) {
      auto it = leases_.find(key);
      if (it == leases_.end()) continue;  // cancelled while queued
      if (it->second.cancel_requested) {
        leases_.erase(it);
        continue;
      }
      auto input = ToTaskInput(it->second.assignment);
      if (!input.ok()) {
        rejected.emplace_back(key, input.status());
        continue;
      }
      Executor* e = options_.registry->Find(input->kind);
      if (e == nullptr) {
        rejected.emplace_back(key, absl::UnimplementedError(absl::StrCat(
                                       "worker '", options_.name,
                                       "' has no executor for job kind '",
                                       input->kind, "' of task ", key)));
        continue;
      }
      if (executor != nullptr && e != executor) {
        rejected.emplace_back(
            key, absl::InvalidArgumentError(absl::StrCat(
                     "task ", key, " of kind '", input->kind, "' is in group ",
                     input->group_key, " whose first task has kind '",
                     executor->kind(), "'")));
        continue;
      }
      executor = e;
      keys.push_back(key);
      inputs.push_back(std::move(*input));
    }
  }
  for (auto& [key, status] : rejected) HandleOutcome(key, status);
  if (inputs.empty()) return;

  auto ctx = std::make_shared<GroupContext>(this, keys);
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& key : keys)
      leases_[key].state = LeaseState::kRunning;
    current_group_ = ctx;
    group_finished_ = false;
    if (stopping_) ctx->CancelGroup();
  }
  std::thread executor_thread([&] {
    executor->RunGroup(
        inputs, *ctx, [&](size_t index, absl::StatusOr<TaskOutput> outcome) {
          if (index >= keys.size()) {
            SWEEPD_LOG(ERROR)
                << "executor '" << executor->kind() << "' reported task index "
                << index << " of a group of " << keys.size();
            return;
          }
          HandleOutcome(keys[index], std::move(outcome));
        });
    absl::MutexLock lock(&mu_);
    group_finished_ = true;
    cv_.SignalAll();
  });

  bool released = false;
  bool queued_released = false;
  while (true) {
    std::vector<std::string> to_release;
    const char* reason = "";
    {
      absl::MutexLock lock(&mu_);
      int64_t deadline = (draining_ && !released)
                             ? drain_deadline_ms_
                             : clock_->NowMs() + options_.wait_slice_ms;
      WaitUntilLocked(deadline, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return group_finished_ || stopping_ ||
               (draining_ && !queued_released) ||
               (draining_ && !released &&
                clock_->NowMs() >= drain_deadline_ms_);
      });
      if (group_finished_) break;
      if (stopping_) {
        ctx->CancelGroup();
        cv_.WaitWithTimeout(&mu_, absl::Milliseconds(options_.wait_slice_ms));
        continue;
      }
      if (draining_ && !queued_released) {
        // Leased but not started (later groups of the same lease): hand them
        // back now so other workers can start them while this group uses its
        // grace.
        queued_released = true;
        reason = "worker draining: task not started";
        for (const auto& [key, entry] : leases_) {
          if (entry.state == LeaseState::kQueued) to_release.push_back(key);
        }
      } else if (draining_ && !released &&
                 clock_->NowMs() >= drain_deadline_ms_) {
        SWEEPD_LOG(WARNING) << "drain grace of " << options_.drain_grace_ms
                            << " ms expired; releasing the running group";
        ctx->CancelGroup();
        released = true;
        reason = "worker draining: grace period expired";
        for (const std::string& key : keys) {
          auto it = leases_.find(key);
          if (it != leases_.end() &&
              it->second.state != LeaseState::kReporting) {
            to_release.push_back(key);
          }
        }
      }
    }
    if (!to_release.empty()) Release(to_release, reason);
  }
  executor_thread.join();
  absl::MutexLock lock(&mu_);
  current_group_ = nullptr;
}

void WorkerAgentImpl::HandleOutcome(const std::string& key,
                                    absl::StatusOr<TaskOutput> outcome) {
  v1::ReportResultRequest request;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.state == LeaseState::kReleased)
      return;
    if (!outcome.ok() &&
        outcome.status().code() == absl::StatusCode::kCancelled) {
      // Stopped on request: a coordinator cancellation drops the lease; a drain
      // or stop leaves it for Release (or lease expiry).
      if (it->second.cancel_requested) leases_.erase(it);
      return;
    }
    if (it->second.cancel_requested) {
      // The coordinator already cancelled it; a result would be refused.
      leases_.erase(it);
      return;
    }
    it->second.state = LeaseState::kReporting;
    if (options_.metrics != nullptr) {
      const std::string kind = TaskKindOf(it->second.assignment.spec());
      if (outcome.ok()) {
        options_.metrics->RecordTaskDone(kind, outcome->wall_seconds);
      } else {
        options_.metrics->RecordTaskFailed(
            kind, IsPermanentTaskError(outcome.status()));
      }
    }
    request.set_task_key(key);
    request.set_fencing_token(it->second.assignment.fencing_token());
  }
  if (outcome.ok()) {
    *request.mutable_result() = ToTaskResult(*outcome);
    // The worker's own facts, where the executor had none to add.
    v1::DeterminismRecord* d = request.mutable_result()->mutable_determinism();
    if (d->device_kind().empty()) {
      d->set_device_kind(options_.capabilities.device_kind);
    }
    if (d->code_version().empty()) d->set_code_version(BuildVersion());
  } else {
    SWEEPD_LOG(INFO) << "task " << key
                     << " failed: " << outcome.status().ToString();
    *request.mutable_failure() = ToTaskFailure(outcome.status());
  }
  ReportWithRetry(std::move(request));
  absl::MutexLock lock(&mu_);
  leases_.erase(key);
}

void WorkerAgentImpl::ReportWithRetry(v1::ReportResultRequest request) {
  for (int failures = 0;; ++failures) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (draining_ && failures > 0 &&
          clock_->NowMs() >= drain_deadline_ms_ + options_.rpc_deadline_ms) {
        SWEEPD_LOG(WARNING) << "giving up reporting task " << request.task_key()
                            << ": drain grace expired; its lease will expire";
        return;
      }
      request.set_worker_id(worker_id_);
    }
    v1::ReportResultResponse response;
    absl::Status s =
        Call(&v1::WorkerGateway::Stub::ReportResult, request, &response);
    if (s.ok()) {
      bool drop = FaultDropsReply();
      absl::MutexLock lock(&mu_);
      ++stats_.reports;
      if (!drop) {
        if (response.committed()) {
          ++stats_.committed;
        } else {
          ++stats_.duplicates;
          SWEEPD_LOG(INFO) << "report of task " << request.task_key()
                           << " was a duplicate (already committed)";
        }
        return;
      }
      ++stats_.dropped_replies;
      SWEEPD_LOG(INFO)
          << "fault switch: dropping the ReportResult reply for task "
          << request.task_key() << "; resending";
      s = absl::UnavailableError("fault switch: ReportResult reply dropped");
    }
    if (IsUnknownWorker(s)) {
      Reregister(request.worker_id());
      continue;
    }
    if (IsRetryableRpc(s)) {
      int64_t delay = BackoffMs(failures);
      {
        absl::MutexLock lock(&mu_);
        ++stats_.report_resends;
        if (!absl::StrContains(s.message(), "fault switch"))
          ++stats_.rpc_failures;
      }
      SWEEPD_LOG(DEBUG) << "ReportResult for task " << request.task_key()
                        << " failed: " << s.ToString() << "; resending in "
                        << delay << " ms";
      if (PauseBeforeRetry(delay, /*wake_on_drain=*/false)) failures = -1;
      continue;
    }
    absl::MutexLock lock(&mu_);
    ++stats_.lost_leases;
    SWEEPD_LOG(WARNING) << "ReportResult for task " << request.task_key()
                        << " (fencing token " << request.fencing_token()
                        << ") refused: " << s.ToString();
    return;
  }
}

void WorkerAgentImpl::Release(const std::vector<std::string>& keys,
                              const std::string& reason) {
  v1::ReleaseTasksRequest request;
  request.set_reason(reason);
  {
    absl::MutexLock lock(&mu_);
    request.set_worker_id(worker_id_);
    for (const std::string& key : keys) {
      auto it = leases_.find(key);
      if (it == leases_.end() || it->second.state == LeaseState::kReporting ||
          it->second.state == LeaseState::kReleased) {
        continue;
      }
      it->second.state = LeaseState::kReleased;
      v1::LeaseProgress* p = request.add_leases();
      p->set_task_key(key);
      p->set_fencing_token(it->second.assignment.fencing_token());
    }
  }
  if (request.leases_size() == 0) return;
  constexpr int kMaxAttempts = 3;
  for (int failures = 0; failures < kMaxAttempts; ++failures) {
    v1::ReleaseTasksResponse response;
    absl::Status s =
        Call(&v1::WorkerGateway::Stub::ReleaseTasks, request, &response);
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      stats_.released += request.leases_size();
      if (draining_ && options_.metrics != nullptr) {
        options_.metrics->RecordPreemptedTasks(request.leases_size());
      }
      SWEEPD_LOG(INFO) << "released " << request.leases_size() << " task(s) ("
                       << response.released() << " accepted): " << reason;
      break;
    }
    SWEEPD_LOG(WARNING) << "ReleaseTasks failed: " << s.ToString()
                        << (failures + 1 < kMaxAttempts
                                ? "; retrying"
                                : "; the leases will expire instead");
    if (!IsRetryableRpc(s)) break;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    int64_t delay = BackoffMs(failures);
    Pause(delay, /*wake_on_drain=*/false);
  }
  absl::MutexLock lock(&mu_);
  for (const auto& lease : request.leases()) leases_.erase(lease.task_key());
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerAgent>> WorkerAgent::Create(
    const WorkerAgentOptions& options) {
  if (options.registry == nullptr) {
    return absl::InvalidArgumentError(
        "WorkerAgentOptions.registry is required");
  }
  if (options.registry->kinds().empty()) {
    return absl::InvalidArgumentError(
        "WorkerAgentOptions.registry has no executors");
  }
  if (options.max_tasks < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WorkerAgentOptions.max_tasks must be >= 1, got ", options.max_tasks));
  }
  if (options.heartbeat_interval_ms < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WorkerAgentOptions.heartbeat_interval_ms must be >= 0, got ",
        options.heartbeat_interval_ms));
  }
  if (options.drain_grace_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("WorkerAgentOptions.drain_grace_ms must be >= 0, got ",
                     options.drain_grace_ms));
  }
  if (options.rpc_deadline_ms <= 0 || options.backoff_initial_ms <= 0 ||
      options.backoff_max_ms < options.backoff_initial_ms ||
      options.idle_poll_ms <= 0 || options.wait_slice_ms <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WorkerAgentOptions timings must be positive with backoff_max_ms >= "
        "backoff_initial_ms (rpc_deadline_ms=",
        options.rpc_deadline_ms, ", backoff_initial_ms=",
        options.backoff_initial_ms, ", backoff_max_ms=", options.backoff_max_ms,
        ", idle_poll_ms=", options.idle_poll_ms,
        ", wait_slice_ms=", options.wait_slice_ms, ")"));
  }
  if (options.connect_timeout_ms < 50) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WorkerAgentOptions.connect_timeout_ms must be >= 50, got ",
        options.connect_timeout_ms));
  }
  if (!(options.fault_drop_report_reply >= 0.0 &&
        options.fault_drop_report_reply < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WorkerAgentOptions.fault_drop_report_reply must be in [0, 1), got ",
        options.fault_drop_report_reply));
  }
  std::shared_ptr<grpc::Channel> channel = options.channel;
  if (channel == nullptr) {
    if (options.coordinator.empty()) {
      return absl::InvalidArgumentError(
          "WorkerAgentOptions.coordinator is empty");
    }
    grpc::ChannelArguments args;
    // Reconnect quickly once a restarted coordinator is back (one connection
    // attempt every <= 250 ms while it is away: cheap, and it bounds how late
    // the agent sees it serve again); the agent's own backoff paces the calls
    // and ends when the channel reconnects (PauseBeforeRetry).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    // gRPC's name for the connect timeout: how long one connection attempt
    // (TCP, TLS, HTTP/2 handshake) may take before a new one (from a new
    // source port) starts. After a coordinator is killed its side of every
    // old connection sits in TIME_WAIT; a reconnect that the kernel gives the
    // same source port hits it, is answered with a bare ACK and waits for the
    // SYN retransmission (1 s, then 2 s): seen as ~2 s stalls after restarts.
    // A short attempt timeout moves on to another port instead.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                static_cast<int>(options.connect_timeout_ms));
    args.SetInt(
        GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
        static_cast<int>(std::min<int64_t>(options.backoff_max_ms, 250)));
    channel = grpc::CreateCustomChannel(
        options.coordinator,
        options.credentials != nullptr ? options.credentials
                                       : grpc::InsecureChannelCredentials(),
        args);
  }
  uint64_t seed = options.seed;
  if (seed == 0)
    seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^
           std::random_device{}();
  return std::unique_ptr<WorkerAgent>(
      new WorkerAgentImpl(options, std::move(channel), seed));
}

}  // namespace sweepd
