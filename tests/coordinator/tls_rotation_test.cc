// Certificate rotation without a restart: sweepd serves the certificate and
// key of a directory reached through a symlink; the symlink is switched to a
// directory holding a certificate from another CA while a WatchSweep stream
// and a worker (the real WorkerAgent, synthetic executor, TLS + token) are
// live. Both carry on, and new connections see the new certificate.
//
// gRPC's FileWatcherCertificateProvider re-reads the files on its own timer
// (1 s here, its minimum), so this test waits in real time for the switch: it
// polls a condition with a generous deadline (the only real wait; typically
// 1-2 s).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "coordinator/coordinator.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/tls_config.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "tests/coordinator/coordinator_test_util.h"
#include "tests/testing/test_certs.h"
#include "worker/agent/agent.h"
#include "worker/jobs/synthetic_executor.h"

namespace sweepd {
namespace {

using ::sweepd::testing::PemPair;
using ::sweepd::testing::StartTestCoordinator;
using ::sweepd::testing::TempPath;
using ::sweepd::testing::TestCa;

constexpr char kAdminToken[] = "rotation-admin-token";
constexpr char kWorkerToken[] = "rotation-worker-token";

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 10) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(seconds));
  return ctx;
}

// Polls `pred` every 20 ms of real time until it holds or `deadline_s` pass.
bool PollUntil(const std::function<bool()>& pred, double deadline_s = 30) {
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(int64_t(deadline_s * 1000));
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

class TlsRotationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempPath("rotation");
    ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);
    TestCa ca1("rotation-ca-1");
    TestCa ca2("rotation-ca-2");
    const PemPair s1 = ca1.IssueServer("sweepd-v1");
    const PemPair s2 = ca2.IssueServer("sweepd-v2");
    Write(dir_ + "/ca1.pem", ca1.ca().cert);
    Write(dir_ + "/ca2.pem", ca2.ca().cert);
    Write(dir_ + "/both.pem", ca1.ca().cert + ca2.ca().cert);
    for (auto [name, pair] :
         {std::pair<const char*, const PemPair*>{"v1", &s1}, {"v2", &s2}}) {
      const std::string d = dir_ + "/" + name;
      ASSERT_EQ(mkdir(d.c_str(), 0700), 0);
      Write(d + "/cert.pem", pair->cert);
      Write(d + "/key.pem", pair->key);
    }
    ASSERT_EQ(symlink("v1", (dir_ + "/live").c_str()), 0);
    Write(dir_ + "/tokens",
          absl::StrCat("root admin ", Sha256Hex(kAdminToken), "\n",
                       "w1 worker ", Sha256Hex(kWorkerToken), "\n"));

    CoordinatorOptions options;
    options.service.watch_interval_ms = 20;
    options.security.tls.cert_file = dir_ + "/live/cert.pem";
    options.security.tls.key_file = dir_ + "/live/key.pem";
    options.security.tls.refresh_interval_s = 1;
    options.security.token_file = dir_ + "/tokens";
    auto c = StartTestCoordinator(options);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(c).value();
  }
  void TearDown() override {
    if (agent_ != nullptr) agent_->Stop();
    if (agent_thread_.joinable()) agent_thread_.join();
    agent_.reset();
    if (coordinator_) coordinator_->Shutdown(absl::Seconds(2)).IgnoreError();
  }

  std::shared_ptr<grpc::Channel> Channel(const std::string& ca_file,
                                         const std::string& token) {
    ClientTlsOptions tls;
    tls.ca_file = ca_file;
    tls.token = token;
    auto creds = MakeChannelCredentials(tls);
    EXPECT_TRUE(creds.ok()) << creds.status();
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(coordinator_->address(), *creds, args);
  }
  // A call on a fresh connection trusting only `ca_file`.
  grpc::Status FreshCall(const std::string& ca_file) {
    auto stub = v1::Coordinator::NewStub(Channel(ca_file, kAdminToken));
    v1::ListSweepsRequest req;
    v1::ListSweepsResponse resp;
    return stub->ListSweeps(Ctx(5).get(), req, &resp);
  }
  // `max_ms` tells the sweeps' tasks apart (equal tasks are copied in DONE).
  std::string Submit(v1::Coordinator::Stub& stub, const std::string& name,
                     int tasks, int max_ms, int tensor_parallel = 0) {
    v1::SubmitSweepRequest req;
    req.mutable_spec()->set_name(name);
    req.mutable_spec()->mutable_synthetic()->set_tasks(tasks);
    req.mutable_spec()->mutable_synthetic()->set_max_ms(max_ms);
    req.mutable_spec()->mutable_policy()->set_tensor_parallel(tensor_parallel);
    v1::SubmitSweepResponse resp;
    const grpc::Status st = stub.SubmitSweep(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.sweep_id();
  }
  bool Done(v1::Coordinator::Stub& stub, const std::string& id) {
    v1::GetSweepRequest req;
    req.set_sweep_id(id);
    v1::SweepStatus status;
    return stub.GetSweep(Ctx().get(), req, &status).ok() &&
           status.state() == v1::SWEEP_STATE_DONE;
  }

  std::string dir_;
  std::unique_ptr<Coordinator> coordinator_;
  ExecutorRegistry registry_;
  std::unique_ptr<WorkerAgent> agent_;
  std::thread agent_thread_;
};

TEST_F(TlsRotationTest, LiveStreamAndWorkerCarryOnAndNewConnectionsSeeNewCert) {
  // A worker trusting both CAs, connected with TLS and its token.
  auto exec = SyntheticExecutor::Create(SyntheticExecutorOptions{});
  ASSERT_TRUE(exec.ok());
  ASSERT_TRUE(registry_.Register(std::move(*exec)).ok());
  WorkerAgentOptions wo;
  wo.coordinator = coordinator_->address();
  wo.name = "rotation-worker";
  wo.registry = &registry_;
  wo.rpc_deadline_ms = 5'000;
  wo.idle_poll_ms = 50;
  ClientTlsOptions worker_tls;
  worker_tls.ca_file = dir_ + "/both.pem";
  worker_tls.token = kWorkerToken;
  auto worker_creds = MakeChannelCredentials(worker_tls);
  ASSERT_TRUE(worker_creds.ok()) << worker_creds.status();
  wo.credentials = *worker_creds;
  auto agent = WorkerAgent::Create(wo);
  ASSERT_TRUE(agent.ok()) << agent.status();
  agent_ = std::move(*agent);
  agent_thread_ = std::thread([this] { agent_->Run().IgnoreError(); });

  auto admin =
      v1::Coordinator::NewStub(Channel(dir_ + "/both.pem", kAdminToken));
  const std::string before = Submit(*admin, "before-rotation", 3, 1);
  ASSERT_TRUE(PollUntil([&] { return Done(*admin, before); }))
      << "the worker did not finish a sweep before the rotation";

  // A sweep no worker can run (tensor parallel 2) keeps its watch stream open.
  const std::string waiting = Submit(*admin, "watched", 2, 3, 2);
  auto watch_channel = Channel(dir_ + "/both.pem", kAdminToken);
  auto watcher = v1::Coordinator::NewStub(watch_channel);
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
  v1::WatchSweepRequest watch_req;
  watch_req.set_sweep_id(waiting);
  auto stream = watcher->WatchSweep(&watch_ctx, watch_req);
  v1::SweepEvent event;
  ASSERT_TRUE(stream->Read(&event));
  EXPECT_EQ(event.status().state(), v1::SWEEP_STATE_RUNNING);

  // Before: CA 1's certificate is served.
  EXPECT_TRUE(FreshCall(dir_ + "/ca1.pem").ok());
  EXPECT_EQ(FreshCall(dir_ + "/ca2.pem").error_code(), grpc::UNAVAILABLE);

  // Rotate: key and certificate switch together through the directory symlink
  // (rename over the old link is atomic).
  ASSERT_EQ(symlink("v2", (dir_ + "/live.next").c_str()), 0);
  ASSERT_EQ(
      std::rename((dir_ + "/live.next").c_str(), (dir_ + "/live").c_str()), 0);
  const auto rotated_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(PollUntil([&] { return FreshCall(dir_ + "/ca2.pem").ok(); }))
      << "new connections never saw the new certificate";
  std::printf("new certificate served %.2f s after the switch\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                            rotated_at)
                  .count());
  EXPECT_EQ(FreshCall(dir_ + "/ca1.pem").error_code(), grpc::UNAVAILABLE);

  // The worker carries on.
  const std::string after = Submit(*admin, "after-rotation", 3, 2);
  EXPECT_TRUE(PollUntil([&] { return Done(*admin, after); }))
      << "the worker stopped after the rotation";
  // The ledger commits before the worker reads the acknowledgement and counts
  // it: wait for the count too (under TSan the gap was long enough to see 5).
  PollUntil([&] { return agent_->stats().committed >= 6; });
  EXPECT_GE(agent_->stats().committed, 6);

  // The watch stream carries on: it sees the cancellation and ends OK.
  v1::CancelSweepRequest cancel;
  cancel.set_sweep_id(waiting);
  v1::CancelSweepResponse cancelled;
  ASSERT_TRUE(admin->CancelSweep(Ctx().get(), cancel, &cancelled).ok());
  bool saw_cancelled = false;
  while (stream->Read(&event)) {
    if (event.status().state() == v1::SWEEP_STATE_CANCELLED) {
      saw_cancelled = true;
    }
  }
  EXPECT_TRUE(saw_cancelled);
  const grpc::Status end = stream->Finish();
  EXPECT_TRUE(end.ok()) << end.error_message();
}

}  // namespace
}  // namespace sweepd
