// WorkerAgent against a fake in-process WorkerGateway on a loopback port. Time
// runs on a FakeClock that the test advances; the test waits for the gateway to
// observe events.
#include "worker/agent/agent.h"

#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/error_reason.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/grpc_status.h"
#include "sweepd/v1/worker.grpc.pb.h"
#include "worker/jobs/synthetic_executor.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr int64_t kHeartbeatMs = 1000;

v1::TaskAssignment SyntheticAssignment(const std::string& key,
                                       const std::string& group, int64_t index,
                                       int min_ms = 0, int max_ms = 0) {
  v1::TaskAssignment a;
  a.set_task_key(key);
  a.set_sweep_id("sw-test");
  a.set_group_key(group);
  a.set_attempt(1);
  a.mutable_spec()->set_kind(v1::JOB_KIND_SYNTHETIC);
  a.mutable_spec()->set_index(index);
  a.mutable_spec()->mutable_synthetic()->set_min_ms(min_ms);
  a.mutable_spec()->mutable_synthetic()->set_max_ms(max_ms);
  return a;
}

// A WorkerGateway that hands out queued assignments and records every call.
class FakeGateway final : public v1::WorkerGateway::Service {
 public:
  grpc::Status RegisterWorker(grpc::ServerContext*,
                              const v1::RegisterWorkerRequest* req,
                              v1::RegisterWorkerResponse* resp) override {
    absl::MutexLock lock(&mu_);
    std::string id = absl::StrCat("w-", ++registrations_);
    known_workers_.insert(id);
    last_registration_ = *req;
    resp->set_worker_id(id);
    resp->set_heartbeat_interval_ms(kHeartbeatMs);
    return grpc::Status::OK;
  }
  grpc::Status LeaseTasks(grpc::ServerContext*,
                          const v1::LeaseTasksRequest* req,
                          v1::LeaseTasksResponse* resp) override {
    absl::MutexLock lock(&mu_);
    ++lease_calls_;
    if (!known_workers_.count(req->worker_id())) {
      return UnknownWorker(req->worker_id());
    }
    if (unavailable_leases_ > 0) {
      --unavailable_leases_;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator busy");
    }
    for (int i = 0; i < req->max_tasks() && !queue_.empty(); ++i) {
      v1::TaskAssignment a = queue_.front();
      queue_.pop_front();
      a.set_fencing_token(++next_token_);
      tokens_[a.task_key()] = a.fencing_token();
      *resp->add_tasks() = a;
    }
    if (resp->tasks_size() == 0) resp->set_retry_after_ms(500);
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override {
    absl::MutexLock lock(&mu_);
    if (!known_workers_.count(req->worker_id())) {
      return UnknownWorker(req->worker_id());
    }
    heartbeats_.push_back(*req);
    for (const std::string& key : cancel_) resp->add_cancelled_task_keys(key);
    return grpc::Status::OK;
  }
  grpc::Status ReportResult(grpc::ServerContext*,
                            const v1::ReportResultRequest* req,
                            v1::ReportResultResponse* resp) override {
    absl::MutexLock lock(&mu_);
    if (!known_workers_.count(req->worker_id())) {
      return UnknownWorker(req->worker_id());
    }
    if (cancelled_reports_ > 0) {
      // What a shutting-down server answers a call it gives up on.
      --cancelled_reports_;
      ++reports_cancelled_;
      return grpc::Status(grpc::StatusCode::CANCELLED, "");
    }
    reports_.push_back(*req);
    bool fresh = committed_.insert(req->task_key()).second;
    resp->set_committed(fresh);
    return grpc::Status::OK;
  }
  grpc::Status ReleaseTasks(grpc::ServerContext*,
                            const v1::ReleaseTasksRequest* req,
                            v1::ReleaseTasksResponse* resp) override {
    absl::MutexLock lock(&mu_);
    for (const auto& l : req->leases())
      released_[l.task_key()] = l.fencing_token();
    release_reason_ = req->reason();
    resp->set_released(req->leases_size());
    return grpc::Status::OK;
  }

  void Enqueue(v1::TaskAssignment a) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(a));
  }
  // Forgets every registration. With `with_reason` false, the answers to the
  // forgotten ids still say "unknown worker" but carry no error reason, as an
  // unrelated NOT_FOUND might.
  void ForgetWorkers(bool with_reason = true) {
    absl::MutexLock lock(&mu_);
    known_workers_.clear();
    unknown_worker_reason_ = with_reason;
  }
  grpc::Status UnknownWorker(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::Status s = absl::NotFoundError(absl::StrCat("unknown worker ", id));
    if (unknown_worker_reason_) s = WithErrorReason(s, kReasonUnknownWorker);
    return ToGrpcStatus(s);
  }
  // Waits (real time, generous) until `pred` holds under the gateway's lock.
  bool WaitFor(const std::function<bool()>& pred,
               absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&pred), timeout);
  }

  absl::Mutex mu_;
  int registrations_ ABSL_GUARDED_BY(mu_) = 0;
  int lease_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int unavailable_leases_ ABSL_GUARDED_BY(mu_) = 0;
  int cancelled_reports_ ABSL_GUARDED_BY(mu_) = 0;
  int reports_cancelled_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_token_ ABSL_GUARDED_BY(mu_) = 100;
  std::set<std::string> known_workers_ ABSL_GUARDED_BY(mu_);
  bool unknown_worker_reason_ ABSL_GUARDED_BY(mu_) = true;
  v1::RegisterWorkerRequest last_registration_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::TaskAssignment> queue_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::HeartbeatRequest> heartbeats_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> cancel_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ReportResultRequest> reports_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> committed_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> released_ ABSL_GUARDED_BY(mu_);
  std::string release_reason_ ABSL_GUARDED_BY(mu_);
};

// An executor whose tasks block until the test lets them go or the agent
// cancels them.
class BlockingExecutor : public Executor {
 public:
  std::string kind() const override { return "synthetic"; }
  void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                const TaskSink& sink) override {
    {
      absl::MutexLock lock(&mu_);
      groups_.push_back({});
      for (const TaskInput& t : tasks) groups_.back().push_back(t.task_key);
    }
    for (size_t i = 0; i < tasks.size(); ++i) {
      ctx.SetProgress(0.5 / tasks.size() +
                      static_cast<double>(i) / tasks.size());
      while (!ctx.task_cancelled(i) && !release_.HasBeenNotified()) {
        release_.WaitForNotificationWithTimeout(absl::Milliseconds(2));
      }
      if (ctx.task_cancelled(i)) {
        sink(i, absl::CancelledError("stopped"));
        continue;
      }
      TaskOutput out;
      out.metrics.push_back(MetricRow{"value", 1.0 + i, {}});
      sink(i, out);
    }
  }
  std::vector<std::vector<std::string>> groups() {
    absl::MutexLock lock(&mu_);
    return groups_;
  }
  absl::Notification release_;

 private:
  absl::Mutex mu_;
  std::vector<std::vector<std::string>> groups_ ABSL_GUARDED_BY(mu_);
};

int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

class AgentTest : public ::testing::Test {
 protected:
  void StartServer(int port = 0) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                             grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&gateway_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  void UseSyntheticExecutor() {
    auto exec =
        SyntheticExecutor::Create(SyntheticExecutorOptions{&clock_, 50});
    ASSERT_TRUE(exec.ok());
    ASSERT_TRUE(registry_.Register(std::move(*exec)).ok());
  }
  BlockingExecutor* UseBlockingExecutor() {
    auto exec = std::make_unique<BlockingExecutor>();
    BlockingExecutor* raw = exec.get();
    EXPECT_TRUE(registry_.Register(std::move(exec)).ok());
    return raw;
  }

  WorkerAgentOptions Options() {
    WorkerAgentOptions o;
    o.coordinator = absl::StrCat("127.0.0.1:", port_);
    o.name = "test-worker";
    o.capabilities.device_kind = "cpu";
    o.capabilities.model_fingerprint = "fp-123";
    o.max_tasks = 4;
    o.drain_grace_ms = 5'000;
    o.rpc_deadline_ms = 5'000;
    o.backoff_initial_ms = 100;
    o.backoff_max_ms = 1'000;
    o.registry = &registry_;
    o.clock = &clock_;
    o.seed = 42;
    o.wait_slice_ms = 2;
    return o;
  }

  void StartAgent(const WorkerAgentOptions& options) {
    auto agent = WorkerAgent::Create(options);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
    run_thread_ = std::thread([this] { run_status_ = agent_->Run(); });
  }

  // Advances the fake clock in `step_ms` steps until `pred` holds at the
  // gateway.
  bool AdvanceUntil(const std::function<bool()>& pred, int64_t step_ms = 100) {
    for (int i = 0; i < 2000; ++i) {
      if (gateway_.WaitFor(pred, absl::Milliseconds(5))) return true;
      clock_.AdvanceMs(step_ms);
    }
    return false;
  }

  absl::Status FinishRun() {
    run_thread_.join();
    return run_status_;
  }

  void TearDown() override {
    if (agent_ != nullptr) agent_->Stop();
    if (run_thread_.joinable()) run_thread_.join();
    agent_.reset();
    if (server_ != nullptr) server_->Shutdown();
  }

  FakeGateway gateway_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  FakeClock clock_;
  ExecutorRegistry registry_;
  std::unique_ptr<WorkerAgent> agent_;
  std::thread run_thread_;
  absl::Status run_status_;
};

TEST_F(AgentTest, RegistersWithCapabilitiesLeasesGroupsAndReports) {
  StartServer();
  auto* blocking = UseBlockingExecutor();
  blocking->release_.Notify();
  gateway_.Enqueue(SyntheticAssignment("t1", "gA", 0));
  gateway_.Enqueue(SyntheticAssignment("t2", "gB", 1));
  gateway_.Enqueue(SyntheticAssignment("t3", "gA", 2));
  gateway_.Enqueue(SyntheticAssignment("t4", "gB", 3));
  gateway_.Enqueue(SyntheticAssignment("t5", "gC", 4));
  StartAgent(Options());

  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.committed_.size() == 5;
  }));
  agent_->Drain();
  ASSERT_TRUE(FinishRun().ok());

  absl::MutexLock lock(&gateway_.mu_);
  EXPECT_EQ(gateway_.registrations_, 1);
  const v1::WorkerCapabilities& caps =
      gateway_.last_registration_.capabilities();
  EXPECT_EQ(gateway_.last_registration_.name(), "test-worker");
  EXPECT_EQ(caps.device_kind(), "cpu");
  EXPECT_EQ(caps.model_fingerprint(), "fp-123");
  EXPECT_THAT(caps.job_kinds(), ElementsAre(v1::JOB_KIND_SYNTHETIC));
  // max_tasks = 4: the first lease returns t1..t4, run as the groups gA and gB.
  EXPECT_THAT(blocking->groups(),
              ElementsAre(ElementsAre("t1", "t3"), ElementsAre("t2", "t4"),
                          ElementsAre("t5")));
  ASSERT_EQ(gateway_.reports_.size(), 5u);
  for (const auto& r : gateway_.reports_) {
    EXPECT_EQ(r.worker_id(), "w-1");
    EXPECT_EQ(r.fencing_token(), gateway_.tokens_.at(r.task_key()))
        << r.task_key();
    ASSERT_TRUE(r.has_result()) << r.task_key();
    ASSERT_EQ(r.result().metrics_size(), 1);
  }
  EXPECT_TRUE(gateway_.released_.empty());
  WorkerAgentStats stats = agent_->stats();
  EXPECT_EQ(stats.leased, 5);
  EXPECT_EQ(stats.committed, 5);
  EXPECT_EQ(stats.duplicates, 0);
}

TEST_F(AgentTest, SyntheticFailuresAreReportedWithRetryability) {
  StartServer();
  UseSyntheticExecutor();
  v1::TaskAssignment bad = SyntheticAssignment("bad", "g1", 0);
  bad.mutable_spec()->mutable_synthetic()->set_permanent_failure_rate(1.0);
  v1::TaskAssignment flaky = SyntheticAssignment("flaky", "g2", 1);
  flaky.mutable_spec()->mutable_synthetic()->set_failure_rate(1.0);
  gateway_.Enqueue(bad);
  gateway_.Enqueue(flaky);
  StartAgent(Options());
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.reports_.size() == 2;
  }));
  agent_->Drain();
  ASSERT_TRUE(FinishRun().ok());
  absl::MutexLock lock(&gateway_.mu_);
  std::map<std::string, v1::ReportResultRequest> by_key;
  for (const auto& r : gateway_.reports_) by_key[r.task_key()] = r;
  ASSERT_TRUE(by_key["bad"].has_failure());
  EXPECT_FALSE(by_key["bad"].failure().retryable());
  EXPECT_THAT(by_key["bad"].failure().message(),
              ::testing::HasSubstr("permanent"));
  ASSERT_TRUE(by_key["flaky"].has_failure());
  EXPECT_TRUE(by_key["flaky"].failure().retryable());
}

TEST_F(AgentTest, HeartbeatsCarryProgressAndDeliverCancellation) {
  StartServer();
  auto* blocking = UseBlockingExecutor();
  gateway_.Enqueue(SyntheticAssignment("long", "g1", 0));
  StartAgent(Options());
  // Progress 0.5 of the running task reaches the gateway with its fencing
  // token.
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (const auto& hb : gateway_.heartbeats_) {
      for (const auto& l : hb.leases()) {
        if (l.task_key() == "long" && l.fraction_done() == 0.5 &&
            l.fencing_token() == gateway_.tokens_.at("long")) {
          return true;
        }
      }
    }
    return false;
  }));
  {
    absl::MutexLock lock(&gateway_.mu_);
    gateway_.cancel_.insert("long");
  }
  // The next heartbeat carries the cancellation; the executor stops; nothing is
  // reported and the lease is no longer heartbeated.
  ASSERT_TRUE(AdvanceUntil([&] { return agent_->stats().cancelled == 1; }));
  size_t seen;
  {
    absl::MutexLock lock(&gateway_.mu_);
    seen = gateway_.heartbeats_.size();
  }
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.heartbeats_.size() >= seen + 2 &&
           gateway_.heartbeats_.back().leases_size() == 0;
  }));
  agent_->Drain();
  ASSERT_TRUE(FinishRun().ok());
  absl::MutexLock lock(&gateway_.mu_);
  EXPECT_TRUE(gateway_.reports_.empty());
  EXPECT_TRUE(gateway_.released_.empty());
  EXPECT_THAT(blocking->groups(), ElementsAre(ElementsAre("long")));
}

TEST_F(AgentTest, DrainReleasesQueuedTasksAtOnceAndTheRunningOneAfterGrace) {
  StartServer();
  auto* blocking = UseBlockingExecutor();
  gateway_.Enqueue(SyntheticAssignment("running", "g1", 0));
  gateway_.Enqueue(SyntheticAssignment("queued", "g2", 1));
  StartAgent(Options());
  ASSERT_TRUE(AdvanceUntil([&] { return blocking->groups().size() == 1; }));
  agent_->Drain();
  // The queued group is released at once; the running one keeps its grace, and
  // heartbeats say "draining".
  ASSERT_TRUE(AdvanceUntil(
      [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return gateway_.released_.count("queued") == 1 &&
               !gateway_.heartbeats_.empty() &&
               gateway_.heartbeats_.back().draining();
      },
      /*step_ms=*/500));
  {
    absl::MutexLock lock(&gateway_.mu_);
    EXPECT_EQ(gateway_.released_.count("running"), 0u);
  }
  // After the 5 s grace the running task is released too.
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.released_.size() == 2;
  }));
  ASSERT_TRUE(FinishRun().ok());
  absl::MutexLock lock(&gateway_.mu_);
  EXPECT_EQ(gateway_.released_.at("running"), gateway_.tokens_.at("running"));
  EXPECT_EQ(gateway_.released_.at("queued"), gateway_.tokens_.at("queued"));
  EXPECT_THAT(gateway_.release_reason_, ::testing::HasSubstr("draining"));
  EXPECT_TRUE(gateway_.reports_.empty());
  // The queued group never started.
  EXPECT_THAT(blocking->groups(), ElementsAre(ElementsAre("running")));
  EXPECT_EQ(agent_->stats().released, 2);
}

TEST_F(AgentTest, DrainLetsTheRunningTaskFinishWithinGrace) {
  StartServer();
  auto* blocking = UseBlockingExecutor();
  gateway_.Enqueue(SyntheticAssignment("running", "g1", 0));
  StartAgent(Options());
  ASSERT_TRUE(AdvanceUntil([&] { return blocking->groups().size() == 1; }));
  agent_->Drain();
  blocking->release_.Notify();
  ASSERT_TRUE(FinishRun().ok());
  absl::MutexLock lock(&gateway_.mu_);
  ASSERT_EQ(gateway_.reports_.size(), 1u);
  EXPECT_EQ(gateway_.reports_[0].task_key(), "running");
  EXPECT_TRUE(gateway_.released_.empty());
  EXPECT_EQ(gateway_.lease_calls_, 1);  // no leasing after the drain began
}

TEST_F(AgentTest, ReRegistersWhenTheCoordinatorForgetsTheWorker) {
  StartServer();
  UseSyntheticExecutor();
  StartAgent(Options());
  ASSERT_TRUE(gateway_.WaitFor([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.lease_calls_ >= 1;
  }));
  gateway_.ForgetWorkers();
  gateway_.Enqueue(SyntheticAssignment("after", "g1", 0));
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.committed_.count("after") == 1;
  }));
  agent_->Drain();
  ASSERT_TRUE(FinishRun().ok());
  absl::MutexLock lock(&gateway_.mu_);
  EXPECT_GE(gateway_.registrations_, 2);
  EXPECT_EQ(gateway_.reports_.back().worker_id(),
            absl::StrCat("w-", gateway_.registrations_));
}

TEST_F(AgentTest, UnknownWorkerIsReadFromTheErrorReasonNotItsWording) {
  StartServer();
  UseSyntheticExecutor();
  StartAgent(Options());
  ASSERT_TRUE(gateway_.WaitFor([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.lease_calls_ >= 1;
  }));
  gateway_.ForgetWorkers(/*with_reason=*/false);
  int calls = 0;
  {
    absl::MutexLock lock(&gateway_.mu_);
    calls = gateway_.lease_calls_;
  }
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.lease_calls_ >= calls + 3;
  }));
  agent_->Drain();
  ASSERT_TRUE(FinishRun().ok());
  absl::MutexLock lock(&gateway_.mu_);
  EXPECT_EQ(gateway_.registrations_, 1);
}

TEST_F(AgentTest, ReconnectsWithBackoffWhenTheCoordinatorComesUpLate) {
  const int port = PickFreePort();
  port_ = port;
  UseSyntheticExecutor();
  StartAgent(Options());
  // Nothing listens: registration fails and backs off on the fake clock.
  ASSERT_TRUE(AdvanceUntil([&] { return agent_->stats().rpc_failures >= 3; }));
  EXPECT_EQ(agent_->worker_id(), "");
  StartServer(port);
  gateway_.Enqueue(SyntheticAssignment("late", "g1", 0));
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.committed_.count("late") == 1;
  }));
  EXPECT_EQ(agent_->worker_id(), "w-1");
  agent_->Drain();
  ASSERT_TRUE(FinishRun().ok());
}

TEST_F(AgentTest, UnavailableLeaseIsRetried) {
  StartServer();
  UseSyntheticExecutor();
  {
    absl::MutexLock lock(&gateway_.mu_);
    gateway_.unavailable_leases_ = 3;
  }
  gateway_.Enqueue(SyntheticAssignment("t", "g", 0));
  StartAgent(Options());
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.committed_.size() == 1;
  }));
  agent_->Drain();
  ASSERT_TRUE(FinishRun().ok());
  absl::MutexLock lock(&gateway_.mu_);
  EXPECT_GE(gateway_.lease_calls_, 4);
  EXPECT_EQ(gateway_.registrations_, 1);
}

TEST_F(AgentTest, FaultSwitchResendsReportsAndGatewayDropsDuplicates) {
  StartServer();
  UseSyntheticExecutor();
  const int n = 40;
  for (int i = 0; i < n; ++i) {
    gateway_.Enqueue(
        SyntheticAssignment(absl::StrCat("t", i), absl::StrCat("g", i), i));
  }
  WorkerAgentOptions options = Options();
  options.fault_drop_report_reply = 0.3;
  StartAgent(options);
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.committed_.size() == static_cast<size_t>(n);
  }));
  agent_->Drain();
  ASSERT_TRUE(FinishRun().ok());
  WorkerAgentStats stats = agent_->stats();
  absl::MutexLock lock(&gateway_.mu_);
  EXPECT_GT(stats.dropped_replies, 0);
  // Every dropped reply caused exactly one resend; the gateway saw each resend
  // as a duplicate.
  EXPECT_EQ(static_cast<int64_t>(gateway_.reports_.size()),
            n + stats.dropped_replies);
  EXPECT_EQ(stats.report_resends, stats.dropped_replies);
  EXPECT_EQ(stats.committed + stats.duplicates + stats.dropped_replies,
            static_cast<int64_t>(gateway_.reports_.size()));
  // A task whose first reply was dropped was committed by that first send; its
  // resend is answered committed=false.
  EXPECT_EQ(stats.committed + stats.duplicates, n);
  EXPECT_GT(stats.duplicates, 0);
}

// Defect: a ReportResult answered CANCELLED while sweepd shut down was
// dropped ("lost leases") and the work redone after lease expiry. The result is
// kept and resent to the next coordinator.
TEST_F(AgentTest, ResultAnsweredCancelledIsKeptAndResentToTheNextCoordinator) {
  StartServer();
  const int port = port_;
  UseSyntheticExecutor();
  {
    absl::MutexLock lock(&gateway_.mu_);
    gateway_.cancelled_reports_ = 1'000'000;
  }
  gateway_.Enqueue(SyntheticAssignment("kept", "g", 0));
  StartAgent(Options());
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.reports_cancelled_ >= 1;
  }));
  // The coordinator goes away and a new one serves on the same address (the
  // fake gateway's state plays the ledger).
  server_->Shutdown();
  server_.reset();
  {
    absl::MutexLock lock(&gateway_.mu_);
    gateway_.cancelled_reports_ = 0;
  }
  StartServer(port);
  ASSERT_TRUE(AdvanceUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.committed_.count("kept") == 1;
  }));
  agent_->Drain();
  ASSERT_TRUE(FinishRun().ok());
  WorkerAgentStats stats = agent_->stats();
  EXPECT_EQ(stats.lost_leases, 0);
  EXPECT_EQ(stats.committed, 1);
  absl::MutexLock lock(&gateway_.mu_);
  ASSERT_EQ(gateway_.reports_.size(), 1u);
  EXPECT_TRUE(gateway_.reports_[0].has_result());
}

// Defect: after a coordinator restart the report retry slept out a backoff
// grown while the coordinator was away (up to backoff_max_ms). It resends as
// soon as the channel reconnects: here the fake clock stands still after the
// restart, so only the reconnect can end the pause.
TEST_F(AgentTest, PendingReportIsResentAsSoonAsTheCoordinatorIsBack) {
  StartServer();
  const int port = port_;
  auto* blocking = UseBlockingExecutor();
  gateway_.Enqueue(SyntheticAssignment("late-report", "g", 0));
  WorkerAgentOptions options = Options();
  options.backoff_max_ms = 600'000;
  options.heartbeat_interval_ms = 3'600'000;
  StartAgent(options);
  ASSERT_TRUE(gateway_.WaitFor([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return gateway_.lease_calls_ >= 1 && gateway_.queue_.empty();
  }));
  server_->Shutdown();
  server_.reset();
  blocking->release_.Notify();
  // Reports fail while nothing listens; the backoff grows to 100 ms * 2^6.
  const int64_t failures_before = agent_->stats().rpc_failures;
  for (int i = 0;
       i < 4000 && agent_->stats().rpc_failures < failures_before + 8; ++i) {
    clock_.AdvanceMs(50);
    absl::SleepFor(absl::Milliseconds(2));  // lets the agent's threads run
  }
  ASSERT_GE(agent_->stats().rpc_failures, failures_before + 8);
  StartServer(port);
  EXPECT_TRUE(gateway_.WaitFor(
      [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return gateway_.committed_.count("late-report") == 1;
      },
      absl::Seconds(20)));
}

TEST_F(AgentTest, CreateValidatesOptions) {
  WorkerAgentOptions o;
  auto agent = WorkerAgent::Create(o);
  EXPECT_EQ(agent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(agent.status().message()),
              ::testing::HasSubstr("registry"));
  UseSyntheticExecutor();
  o = Options();
  o.max_tasks = 0;
  agent = WorkerAgent::Create(o);
  EXPECT_THAT(std::string(agent.status().message()),
              ::testing::HasSubstr("max_tasks"));
  o = Options();
  o.fault_drop_report_reply = 1.5;
  agent = WorkerAgent::Create(o);
  EXPECT_THAT(std::string(agent.status().message()),
              ::testing::HasSubstr("fault_drop_report_reply"));
}

}  // namespace
}  // namespace sweepd
