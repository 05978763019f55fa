#include "coordinator/service.h"

#include <thread>

#include "common/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "sweepd/v1/worker.grpc.pb.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::StartTestCoordinator;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
  return ctx;
}

v1::SweepSpec SyntheticSpec(const std::string& name, int tasks) {
  v1::SweepSpec spec;
  spec.set_name(name);
  spec.mutable_synthetic()->set_tasks(tasks);
  spec.mutable_synthetic()->set_min_ms(0);
  spec.mutable_synthetic()->set_max_ms(0);
  return spec;
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions options;
    options.clock = clock_;
    options.policy = policy_defaults_;
    options.service.watch_interval_ms = 20;
    options.service.expiry_interval_ms = expiry_interval_ms_;
    auto c = StartTestCoordinator(options);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_process_ = std::move(c).value();
    service_ = coordinator_process_->service();
    server_ = coordinator_process_->server();
    auto channel = grpc::CreateChannel(coordinator_process_->address(),
                                       grpc::InsecureChannelCredentials());
    coordinator_ = v1::Coordinator::NewStub(channel);
    gateway_ = v1::WorkerGateway::NewStub(channel);
  }
  void TearDown() override {
    if (coordinator_process_) {
      ASSERT_TRUE(coordinator_process_->Shutdown(absl::Seconds(2)).ok());
    }
  }

  v1::SubmitSweepResponse Submit(const v1::SweepSpec& spec) {
    v1::SubmitSweepRequest req;
    *req.mutable_spec() = spec;
    v1::SubmitSweepResponse resp;
    grpc::Status st = coordinator_->SubmitSweep(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }
  std::string Register() {
    v1::RegisterWorkerRequest req;
    req.set_name("test-worker");
    req.mutable_capabilities()->set_device_kind("cpu");
    req.mutable_capabilities()->set_tensor_parallel(1);
    v1::RegisterWorkerResponse resp;
    grpc::Status st = gateway_->RegisterWorker(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_GT(resp.heartbeat_interval_ms(), 0);
    return resp.worker_id();
  }
  v1::LeaseTasksResponse Lease(const std::string& worker, int n) {
    v1::LeaseTasksRequest req;
    req.set_worker_id(worker);
    req.set_max_tasks(n);
    v1::LeaseTasksResponse resp;
    grpc::Status st = gateway_->LeaseTasks(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }
  bool Report(const std::string& worker, const v1::TaskAssignment& a,
              double value) {
    v1::ReportResultRequest req;
    req.set_worker_id(worker);
    req.set_task_key(a.task_key());
    req.set_fencing_token(a.fencing_token());
    auto* m = req.mutable_result()->add_metrics();
    m->set_name("value");
    m->set_value(value);
    v1::ReportResultResponse resp;
    grpc::Status st = gateway_->ReportResult(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.committed();
  }

  // Policy defaults of this coordinator (sweepd's --lease-seconds).
  SweepPolicyDefaults policy_defaults_;
  // The one clock of the ledger, scheduler and services.
  Clock* clock_ = Clock::Real();
  int64_t expiry_interval_ms_ = 1'000;
  // Built as sweepd builds it; owns ledger, scheduler, services and server.
  std::unique_ptr<Coordinator> coordinator_process_;
  CoordinatorServer* service_ = nullptr;
  grpc::Server* server_ = nullptr;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
  std::unique_ptr<v1::WorkerGateway::Stub> gateway_;
};

TEST_F(ServiceTest, RegisterLeaseReportThroughRealStubs) {
  v1::SubmitSweepResponse sub = Submit(SyntheticSpec("svc", 3));
  EXPECT_EQ(sub.total_tasks(), 3);
  EXPECT_FALSE(sub.already_existed());
  EXPECT_THAT(sub.sweep_id(), ::testing::StartsWith("sw-"));
  v1::SubmitSweepResponse again = Submit(SyntheticSpec("svc", 3));
  EXPECT_TRUE(again.already_existed());
  EXPECT_EQ(again.sweep_id(), sub.sweep_id());

  // Watch the sweep while it runs: the stream ends by itself when it is done.
  std::vector<v1::SweepEvent> events;
  grpc::Status watch_status;
  std::thread watcher([&] {
    v1::WatchSweepRequest req;
    req.set_sweep_id(sub.sweep_id());
    auto ctx = Ctx();
    auto reader = coordinator_->WatchSweep(ctx.get(), req);
    v1::SweepEvent ev;
    while (reader->Read(&ev)) events.push_back(ev);
    watch_status = reader->Finish();
  });

  const std::string w = Register();
  v1::LeaseTasksResponse lease = Lease(w, 10);
  ASSERT_THAT(lease.tasks(), SizeIs(3));
  for (const auto& t : lease.tasks()) {
    EXPECT_EQ(t.sweep_id(), sub.sweep_id());
    EXPECT_EQ(t.attempt(), 1);
    EXPECT_GT(t.fencing_token(), 0);
    EXPECT_EQ(t.spec().kind(), v1::JOB_KIND_SYNTHETIC);
  }
  v1::HeartbeatRequest hb;
  hb.set_worker_id(w);
  auto* p = hb.add_leases();
  p->set_task_key(lease.tasks(0).task_key());
  p->set_fencing_token(lease.tasks(0).fencing_token());
  v1::HeartbeatResponse hb_resp;
  ASSERT_TRUE(gateway_->Heartbeat(Ctx().get(), hb, &hb_resp).ok());
  EXPECT_THAT(hb_resp.cancelled_task_keys(), IsEmpty());
  EXPECT_GT(hb_resp.lease_expires_unix_ms(), 0);

  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Report(w, lease.tasks(i), i + 0.5));
  EXPECT_FALSE(Report(w, lease.tasks(0), 99));  // duplicate
  watcher.join();
  EXPECT_TRUE(watch_status.ok()) << watch_status.error_message();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().status().state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(events.back().status().counts().done(), 3);

  v1::GetSweepRequest get;
  get.set_sweep_id(sub.sweep_id());
  v1::SweepStatus status;
  ASSERT_TRUE(coordinator_->GetSweep(Ctx().get(), get, &status).ok());
  EXPECT_EQ(status.state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(status.counts().total(), 3);
  EXPECT_EQ(status.spec().synthetic().tasks(), 3);

  v1::ListResultsRequest lr;
  lr.set_sweep_id(sub.sweep_id());
  lr.set_page_size(2);
  lr.add_states(v1::TASK_STATE_DONE);
  v1::ListResultsResponse page1;
  ASSERT_TRUE(coordinator_->ListResults(Ctx().get(), lr, &page1).ok());
  ASSERT_THAT(page1.tasks(), SizeIs(2));
  ASSERT_FALSE(page1.next_page_token().empty());
  EXPECT_EQ(page1.tasks(0).result().metrics(0).value(), 0.5);
  lr.set_page_token(page1.next_page_token());
  v1::ListResultsResponse page2;
  ASSERT_TRUE(coordinator_->ListResults(Ctx().get(), lr, &page2).ok());
  ASSERT_THAT(page2.tasks(), SizeIs(1));
  EXPECT_TRUE(page2.next_page_token().empty());
  EXPECT_EQ(page2.tasks(0).result().metrics(0).value(), 2.5);

  v1::ListWorkersResponse workers;
  ASSERT_TRUE(
      coordinator_->ListWorkers(Ctx().get(), v1::ListWorkersRequest(), &workers)
          .ok());
  ASSERT_THAT(workers.workers(), SizeIs(1));
  EXPECT_EQ(workers.workers(0).worker_id(), w);
  EXPECT_EQ(workers.workers(0).tasks_done(), 3);

  v1::ListSweepsResponse sweeps;
  ASSERT_TRUE(
      coordinator_->ListSweeps(Ctx().get(), v1::ListSweepsRequest(), &sweeps)
          .ok());
  ASSERT_THAT(sweeps.sweeps(), SizeIs(1));
  EXPECT_EQ(sweeps.sweeps(0).name(), "svc");
}

TEST_F(ServiceTest, CancelReachesTheWorkerThroughHeartbeat) {
  v1::SubmitSweepResponse sub = Submit(SyntheticSpec("cancel-me", 2));
  const std::string w = Register();
  v1::LeaseTasksResponse lease = Lease(w, 1);
  ASSERT_THAT(lease.tasks(), SizeIs(1));
  v1::CancelSweepRequest cancel;
  cancel.set_sweep_id(sub.sweep_id());
  v1::CancelSweepResponse cancelled;
  ASSERT_TRUE(coordinator_->CancelSweep(Ctx().get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.cancelled_tasks(), 2);
  v1::HeartbeatRequest hb;
  hb.set_worker_id(w);
  auto* p = hb.add_leases();
  p->set_task_key(lease.tasks(0).task_key());
  p->set_fencing_token(lease.tasks(0).fencing_token());
  v1::HeartbeatResponse resp;
  ASSERT_TRUE(gateway_->Heartbeat(Ctx().get(), hb, &resp).ok());
  EXPECT_THAT(resp.cancelled_task_keys(),
              ElementsAre(lease.tasks(0).task_key()));
}

TEST_F(ServiceTest, ReleaseHandsTasksBack) {
  Submit(SyntheticSpec("release", 1));
  const std::string w = Register();
  v1::LeaseTasksResponse lease = Lease(w, 1);
  ASSERT_THAT(lease.tasks(), SizeIs(1));
  v1::ReleaseTasksRequest rel;
  rel.set_worker_id(w);
  rel.set_reason("draining");
  auto* p = rel.add_leases();
  p->set_task_key(lease.tasks(0).task_key());
  p->set_fencing_token(lease.tasks(0).fencing_token());
  v1::ReleaseTasksResponse rel_resp;
  ASSERT_TRUE(gateway_->ReleaseTasks(Ctx().get(), rel, &rel_resp).ok());
  EXPECT_EQ(rel_resp.released(), 1);
  const std::string w2 = Register();
  v1::LeaseTasksResponse again = Lease(w2, 1);
  ASSERT_THAT(again.tasks(), SizeIs(1));
  EXPECT_EQ(again.tasks(0).attempt(), 1);
}

TEST_F(ServiceTest, InvalidRequestsNameTheField) {
  v1::LeaseTasksRequest lease;
  v1::LeaseTasksResponse lease_resp;
  grpc::Status st = gateway_->LeaseTasks(Ctx().get(), lease, &lease_resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("worker_id"));

  lease.set_worker_id("w-unknown");
  st = gateway_->LeaseTasks(Ctx().get(), lease, &lease_resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(st.error_message(), HasSubstr("w-unknown"));

  v1::ReportResultRequest rep;
  rep.set_worker_id("w");
  rep.set_task_key("k");
  rep.set_fencing_token(5);
  v1::ReportResultResponse rep_resp;
  st = gateway_->ReportResult(Ctx().get(), rep, &rep_resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("outcome"));
  rep.mutable_result();
  st = gateway_->ReportResult(Ctx().get(), rep, &rep_resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(st.error_message(), HasSubstr("fencing_token 5"));

  v1::HeartbeatRequest hb;
  hb.set_worker_id("w");
  hb.add_leases()->set_task_key("k");
  v1::HeartbeatResponse hb_resp;
  st = gateway_->Heartbeat(Ctx().get(), hb, &hb_resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("leases[0].fencing_token"));

  v1::GetSweepRequest get;
  get.set_sweep_id("sw-missing");
  v1::SweepStatus status;
  st = coordinator_->GetSweep(Ctx().get(), get, &status);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(st.error_message(), HasSubstr("sw-missing"));

  v1::ListResultsRequest lr;
  lr.set_sweep_id("sw-missing");
  lr.set_page_size(6000);
  v1::ListResultsResponse lr_resp;
  st = coordinator_->ListResults(Ctx().get(), lr, &lr_resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("page_size"));

  v1::SubmitSweepRequest submit;
  v1::SubmitSweepResponse submit_resp;
  st = coordinator_->SubmitSweep(Ctx().get(), submit, &submit_resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("spec"));

  v1::WatchSweepRequest watch;
  watch.set_sweep_id("sw-missing");
  auto ctx = Ctx();
  auto reader = coordinator_->WatchSweep(ctx.get(), watch);
  v1::SweepEvent ev;
  EXPECT_FALSE(reader->Read(&ev));
  st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, DrainingServerAnswersUnavailable) {
  service_->BeginShutdown();
  v1::RegisterWorkerRequest req;
  v1::RegisterWorkerResponse resp;
  grpc::Status st = gateway_->RegisterWorker(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(st.error_message(), HasSubstr("shutting down"));
}

TEST_F(ServiceTest, HealthServiceIsServed) {
  ASSERT_NE(server_->GetHealthCheckService(), nullptr);
}

TEST(LoopbackTest, RecognisesLoopbackHosts) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:7070"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:1"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7070"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:7070"));
  EXPECT_FALSE(IsLoopbackAddress("10.1.2.3:7070"));
}

std::string RegisterKinds(v1::WorkerGateway::Stub* gateway,
                          const std::string& name,
                          std::vector<v1::JobKind> kinds) {
  v1::RegisterWorkerRequest req;
  req.set_name(name);
  req.mutable_capabilities()->set_device_kind("cpu");
  req.mutable_capabilities()->set_tensor_parallel(1);
  for (v1::JobKind k : kinds) req.mutable_capabilities()->add_job_kinds(k);
  v1::RegisterWorkerResponse resp;
  grpc::Status st = gateway->RegisterWorker(Ctx().get(), req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp.worker_id();
}

// Defect: a sweep whose job kind no registered worker runs stayed PENDING
// without a word. GetSweep, ListSweeps and WatchSweep now say why.
TEST_F(ServiceTest, SweepNoLiveWorkerRunsSaysWhyEverywhere) {
  v1::SubmitSweepResponse sub = Submit(SyntheticSpec("stuck", 2));
  RegisterKinds(gateway_.get(), "eval-box", {v1::JOB_KIND_EVAL});

  v1::GetSweepRequest get;
  get.set_sweep_id(sub.sweep_id());
  v1::SweepStatus status;
  ASSERT_TRUE(coordinator_->GetSweep(Ctx().get(), get, &status).ok());
  EXPECT_EQ(status.state(), v1::SWEEP_STATE_RUNNING);
  ASSERT_THAT(status.waiting(), SizeIs(1));
  EXPECT_EQ(status.waiting(0).kind(), v1::JOB_KIND_SYNTHETIC);
  EXPECT_EQ(status.waiting(0).pending(), 2);
  EXPECT_TRUE(status.waiting(0).no_capable_worker());
  EXPECT_THAT(status.blocked_reason(), AllOf(HasSubstr("2 pending synthetic"),
                                             HasSubstr("eval-box runs eval")));
  ASSERT_THAT(status.live_workers(), SizeIs(1));
  EXPECT_EQ(status.live_workers(0).name(), "eval-box");

  v1::ListSweepsResponse all;
  ASSERT_TRUE(
      coordinator_->ListSweeps(Ctx().get(), v1::ListSweepsRequest(), &all)
          .ok());
  ASSERT_THAT(all.sweeps(), SizeIs(1));
  EXPECT_EQ(all.sweeps(0).blocked_reason(), status.blocked_reason());

  // The watch stream says it, and says again when a capable worker registers
  // although no count changed.
  v1::WatchSweepRequest watch;
  watch.set_sweep_id(sub.sweep_id());
  auto ctx = Ctx();
  auto reader = coordinator_->WatchSweep(ctx.get(), watch);
  v1::SweepEvent ev;
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.status().blocked_reason(), status.blocked_reason());
  RegisterKinds(gateway_.get(), "synthetic-box", {v1::JOB_KIND_SYNTHETIC});
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.status().blocked_reason(), "");
  EXPECT_THAT(ev.status().live_workers(), IsEmpty());
  EXPECT_EQ(ev.status().counts().pending(), 2);
  ctx->TryCancel();
  reader->Finish();
}

// A coordinator configured with a lease default (sweepd --lease-seconds 17).
class ServiceLeaseDefaultTest : public ServiceTest {
 protected:
  ServiceLeaseDefaultTest() { policy_defaults_.lease_seconds = 17; }

  v1::SweepStatus Get(const std::string& sweep_id) {
    v1::GetSweepRequest req;
    req.set_sweep_id(sweep_id);
    v1::SweepStatus status;
    grpc::Status st = coordinator_->GetSweep(Ctx().get(), req, &status);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return status;
  }
};

TEST_F(ServiceLeaseDefaultTest, SweepWithoutLeaseSecondsGetsTheConfigured) {
  v1::SubmitSweepResponse sub = Submit(SyntheticSpec("lease-default", 1));
  EXPECT_EQ(Get(sub.sweep_id()).spec().policy().lease_seconds(), 17);
  const std::string worker = Register();
  const int64_t before = Clock::Real()->NowMs();
  v1::LeaseTasksResponse leased = Lease(worker, 1);
  const int64_t after = Clock::Real()->NowMs();
  ASSERT_THAT(leased.tasks(), SizeIs(1));
  EXPECT_GE(leased.tasks(0).lease_expires_unix_ms(), before + 17'000);
  EXPECT_LE(leased.tasks(0).lease_expires_unix_ms(), after + 17'000);
}

TEST_F(ServiceLeaseDefaultTest, SpecLeaseSecondsWinsOverTheConfigured) {
  v1::SweepSpec spec = SyntheticSpec("lease-spec", 1);
  spec.mutable_policy()->set_lease_seconds(5);
  v1::SubmitSweepResponse sub = Submit(spec);
  EXPECT_EQ(Get(sub.sweep_id()).spec().policy().lease_seconds(), 5);
  const std::string worker = Register();
  const int64_t before = Clock::Real()->NowMs();
  v1::LeaseTasksResponse leased = Lease(worker, 1);
  const int64_t after = Clock::Real()->NowMs();
  ASSERT_THAT(leased.tasks(), SizeIs(1));
  EXPECT_GE(leased.tasks(0).lease_expires_unix_ms(), before + 5'000);
  EXPECT_LE(leased.tasks(0).lease_expires_unix_ms(), after + 5'000);
}

// The services read time only from their injected Clock: with a FakeClock,
// leases expire when the test moves time, not after a real wait, and watch
// events carry the fake time.
class ServiceFakeClockTest : public ServiceTest {
 protected:
  ServiceFakeClockTest() {
    clock_ = &fake_clock_;
    // Expiry passes are due by the fake clock: one a (fake) minute.
    expiry_interval_ms_ = 60'000;
  }
  FakeClock fake_clock_;
};

TEST_F(ServiceFakeClockTest, LeaseExpiresWhenTheFakeClockPassesIt) {
  v1::SweepSpec spec = SyntheticSpec("fake-clock", 1);
  spec.mutable_policy()->set_lease_seconds(10);
  v1::SubmitSweepResponse sub = Submit(spec);
  const std::string worker = Register();
  v1::LeaseTasksResponse leased = Lease(worker, 1);
  ASSERT_THAT(leased.tasks(), SizeIs(1));
  EXPECT_EQ(leased.tasks(0).lease_expires_unix_ms(),
            fake_clock_.NowMs() + 10'000);

  v1::GetSweepRequest get;
  get.set_sweep_id(sub.sweep_id());
  auto counts = [&] {
    v1::SweepStatus status;
    EXPECT_TRUE(coordinator_->GetSweep(Ctx().get(), get, &status).ok());
    return status.counts();
  };
  EXPECT_EQ(counts().leased(), 1);

  // The watch stream stamps events with the fake time.
  v1::WatchSweepRequest watch;
  watch.set_sweep_id(sub.sweep_id());
  auto ctx = Ctx();
  auto reader = coordinator_->WatchSweep(ctx.get(), watch);
  v1::SweepEvent ev;
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.unix_ms(), fake_clock_.NowMs());

  // Past the lease and past the next expiry pass, both on the fake clock: the
  // pass returns the task to PENDING within a loop wake-up (bounded wait).
  fake_clock_.AdvanceMs(60'001);
  for (int i = 0; i < 400 && counts().pending() != 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(counts().pending(), 1);
  EXPECT_EQ(counts().leased(), 0);
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.unix_ms(), fake_clock_.NowMs());
  ctx->TryCancel();
  reader->Finish();
}

}  // namespace
}  // namespace sweepd
