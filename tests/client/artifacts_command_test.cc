// `sweepctl artifacts list|fetch|gc` (client/artifacts_command.h) against a
// real Coordinator with --artifact-root on a temp dir and a FakeClock: the
// listing in table/JSON form, a fetch that verifies the SHA-256 and leaves no
// file when the object is corrupt, gc as a dry run unless --delete (and its
// minimum age), a stalled fetch stream that times out, and usage errors.
// The auth matrix (tests/coordinator/auth_test.cc) covers the roles: gc is
// admin only.
#include "client/artifacts_command.h"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "sweepd/v1/worker.grpc.pb.h"
#include "tests/coordinator/coordinator_test_util.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Await;
using ::sweepd::testing::IsOk;
using ::sweepd::testing::MakePlan;
using ::sweepd::testing::PlanShape;
using ::sweepd::testing::StartTestCoordinator;
using ::sweepd::testing::TempPath;
using ::testing::AllOf;
using ::testing::HasSubstr;

class ArtifactsCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterCtlCommand(ArtifactsCtlCommand());
    root_ = TempPath("ctl-artifacts");
    CoordinatorOptions options;
    options.clock = &clock_;
    options.artifact_root = root_;
    auto c = StartTestCoordinator(options);
    ASSERT_THAT(c, IsOk());
    coordinator_ = std::move(*c);
    auto store = ArtifactStore::Open(root_, &clock_);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);

    // One sweep whose only task committed a result with one artifact.
    PlanShape shape;
    shape.sweep_id = "sw-ctl";
    shape.tasks = 1;
    plan_ = MakePlan(shape);
    ASSERT_THAT(Await<SubmitOutcome>([&](auto done) {
                  coordinator_->scheduler()->SubmitPlan(plan_, done);
                }),
                IsOk());
    auto stored = store_->PutBytes("gram/attn_heads[1]/c4/shard0",
                                   std::string(3000, 'g'));
    ASSERT_THAT(stored, IsOk());
    gram_ = *stored;
    auto gateway = v1::WorkerGateway::NewStub(grpc::CreateChannel(
        coordinator_->address(), grpc::InsecureChannelCredentials()));
    auto ctx = [] {
      auto c = std::make_unique<grpc::ClientContext>();
      c->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(20));
      return c;
    };
    v1::RegisterWorkerRequest reg;
    reg.set_name("w");
    v1::RegisterWorkerResponse registered;
    ASSERT_TRUE(gateway->RegisterWorker(ctx().get(), reg, &registered).ok());
    v1::LeaseTasksRequest lease;
    lease.set_worker_id(registered.worker_id());
    lease.set_max_tasks(1);
    v1::LeaseTasksResponse leased;
    ASSERT_TRUE(gateway->LeaseTasks(ctx().get(), lease, &leased).ok());
    ASSERT_EQ(leased.tasks_size(), 1);
    v1::ReportResultRequest report;
    report.set_worker_id(registered.worker_id());
    report.set_task_key(leased.tasks(0).task_key());
    report.set_fencing_token(leased.tasks(0).fencing_token());
    v1::Artifact* a = report.mutable_result()->add_artifacts();
    a->set_name(gram_.name);
    a->set_path(gram_.path);
    a->set_bytes(gram_.bytes);
    a->set_sha256(gram_.sha256);
    v1::ReportResultResponse reported;
    ASSERT_TRUE(gateway->ReportResult(ctx().get(), report, &reported).ok());
    ASSERT_TRUE(reported.committed());
  }
  void TearDown() override {
    ASSERT_THAT(coordinator_->Shutdown(absl::Seconds(2)), IsOk());
  }

  int Run(const std::vector<std::string>& args) {
    out_.str("");
    err_.str("");
    CtlEnv env;
    env.out = &out_;
    env.err = &err_;
    env.clock = &clock_;
    env.env_coordinator = coordinator_->address();
    return RunSweepctl(args, env);
  }

  FakeClock clock_{Clock::Real()->NowMs()};
  std::string root_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<ArtifactStore> store_;
  Plan plan_;
  ArtifactInfo gram_;
  std::ostringstream out_, err_;
};

TEST_F(ArtifactsCommandTest, ListShowsWhatResultsReference) {
  ASSERT_EQ(Run({"artifacts", "list"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("sweep_id"), HasSubstr("sw-ctl"),
                                HasSubstr("gram/attn_heads[1]/c4/shard0"),
                                HasSubstr(gram_.path), HasSubstr("3000")));
  ASSERT_EQ(Run({"artifacts", "list", "--sweep", "sw-ctl", "--format", "json"}),
            0)
      << err_.str();
  nlohmann::json rows = nlohmann::json::parse(out_.str());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["name"], gram_.name);
  EXPECT_EQ(rows[0]["bytes"], 3000);
  EXPECT_EQ(rows[0]["sha256"], gram_.sha256);
  EXPECT_EQ(rows[0]["task_key"], plan_.tasks[0].task_key);
  EXPECT_EQ(Run({"artifacts", "list", "--sweep", "nope"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND"));
}

TEST_F(ArtifactsCommandTest, FetchVerifiesAndWritesOnlyAGoodCopy) {
  const std::string file = TempPath("fetched") + ".bin";
  ASSERT_EQ(Run({"artifacts", "fetch", gram_.path, "-o", file}), 0)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("sha256 verified"));
  std::ifstream in(file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes, std::string(3000, 'g'));

  // A corrupt object: sweepd ends the stream DATA_LOSS, no file is left.
  std::ofstream(root_ + "/" + gram_.path, std::ios::binary | std::ios::trunc)
      << std::string(2999, 'g') << "h";
  const std::string bad = TempPath("corrupt") + ".bin";
  EXPECT_EQ(Run({"artifacts", "fetch", gram_.path, "--out", bad}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("DATA_LOSS"));
  EXPECT_FALSE(PathExists(bad));
  EXPECT_FALSE(PathExists(bad + ".partial"));

  // A FILE that cannot be written is named, and nothing is fetched.
  const std::string nowhere = TempPath("no-such-dir") + "/x/out.bin";
  EXPECT_EQ(Run({"artifacts", "fetch", gram_.path, "-o", nowhere}), 1);
  EXPECT_THAT(err_.str(), AllOf(HasSubstr("NOT_FOUND"),
                                HasSubstr("cannot write " + nowhere)));
}

TEST_F(ArtifactsCommandTest, GcIsADryRunUnlessToldToDelete) {
  auto garbage = store_->PutBytes("orphan", "no result references this");
  ASSERT_THAT(garbage, IsOk());
  clock_.AdvanceMs(2 * 86'400'000);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"artifacts", "gc"},
        std::vector<std::string>{"artifacts", "gc", "--dry-run"}}) {
    ASSERT_EQ(Run(args), 0) << err_.str();
    EXPECT_THAT(out_.str(),
                AllOf(HasSubstr("dry run: would delete 1 objects (25 bytes)"),
                      HasSubstr("kept 1 objects (3000 bytes)"),
                      HasSubstr("1 paths referenced by the ledger"),
                      HasSubstr("run `sweepctl artifacts gc --delete`")));
    EXPECT_TRUE(PathExists(root_ + "/" + garbage->path));
  }
  ASSERT_EQ(Run({"artifacts", "gc", "--delete"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("deleted 1 objects (25 bytes)"),
                                HasSubstr("kept 1 objects (3000 bytes)")));
  EXPECT_THAT(out_.str(), ::testing::Not(HasSubstr("dry run")));
  EXPECT_FALSE(PathExists(root_ + "/" + garbage->path));
  EXPECT_TRUE(PathExists(root_ + "/" + gram_.path));
}

TEST_F(ArtifactsCommandTest, GcKeepsObjectsYoungerThanTheMinimumAge) {
  auto young = store_->PutBytes("young", "reported soon");
  ASSERT_THAT(young, IsOk());
  clock_.AdvanceMs(120'000);
  // Two minutes old: kept with the default minimum age, collected with
  // --min-age-s 60.
  ASSERT_EQ(Run({"artifacts", "gc", "--delete"}), 0) << err_.str();
  EXPECT_THAT(out_.str(),
              AllOf(HasSubstr("deleted 0 objects"),
                    HasSubstr("1 of them unreferenced but younger")));
  EXPECT_TRUE(PathExists(root_ + "/" + young->path));
  ASSERT_EQ(Run({"artifacts", "gc", "--min-age-s", "60"}), 0) << err_.str();
  EXPECT_THAT(out_.str(),
              HasSubstr("run `sweepctl artifacts gc --delete --min-age-s 60`"));
  ASSERT_EQ(Run({"artifacts", "gc", "--delete", "--min-age-s", "60"}), 0)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("deleted 1 objects (13 bytes)"));
  EXPECT_FALSE(PathExists(root_ + "/" + young->path));
}

// A sweepd whose FetchArtifact sends one chunk and then nothing until the
// client gives up.
class StallingCoordinator final : public v1::Coordinator::Service {
  grpc::Status FetchArtifact(
      grpc::ServerContext* ctx, const v1::FetchArtifactRequest* req,
      grpc::ServerWriter<v1::ArtifactChunk>* writer) override {
    v1::ArtifactChunk chunk;
    chunk.set_data("abc");
    chunk.set_total_bytes(10);
    chunk.set_sha256(req->path().substr(req->path().rfind('/') + 1));
    writer->Write(chunk);
    while (!ctx->IsCancelled()) usleep(5'000);
    return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  }
};

TEST(ArtifactsFetchTest, AStalledStreamEndsAfterTimeoutWithoutAFile) {
  RegisterCtlCommand(ArtifactsCtlCommand());
  StallingCoordinator service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);

  std::ostringstream out, err;
  CtlEnv env;
  env.out = &out;
  env.err = &err;
  env.env_coordinator = absl::StrCat("127.0.0.1:", port);
  const std::string path = "objects/ab/ab" + std::string(62, '0');
  const std::string file = TempPath("stalled") + ".bin";
  EXPECT_EQ(
      RunSweepctl(
          {"--timeout-s", "0.3", "artifacts", "fetch", path, "-o", file}, env),
      1);
  EXPECT_THAT(err.str(), AllOf(HasSubstr("DEADLINE_EXCEEDED"),
                               HasSubstr("no data from sweepd for 300ms"),
                               HasSubstr("after 3 bytes of " + path)));
  EXPECT_FALSE(PathExists(file));
  EXPECT_FALSE(PathExists(file + ".partial"));
  server->Shutdown();
}

TEST_F(ArtifactsCommandTest, UsageErrors) {
  EXPECT_EQ(Run({"artifacts"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("missing subcommand"));
  EXPECT_EQ(Run({"artifacts", "push"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("unknown subcommand 'push'"));
  EXPECT_EQ(Run({"artifacts", "fetch", gram_.path}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("-o FILE is required"));
  EXPECT_EQ(Run({"artifacts", "fetch", "/etc/passwd", "-o", "x"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("not an artifact path"));
  EXPECT_EQ(Run({"artifacts", "gc", "--min-age-s", "soon"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--min-age-s"));
  EXPECT_EQ(Run({"artifacts", "gc", "--dry-run", "--delete"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("exclude each other"));
  EXPECT_EQ(Run({"artifacts", "list", "--format", "xml"}), 2);
}

}  // namespace
}  // namespace sweepd
