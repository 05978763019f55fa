// The artifact side of sweepd (coordinator/artifact_service.h) through real
// stubs on a Coordinator built as sweepd builds it, with --artifact-root on a
// temp dir and a FakeClock: a reported result whose artifact is missing or
// differs in size becomes a retryable failure naming the artifact (and
// commits once the object is there); a reference that is not an object path
// fails permanently; ListArtifacts pages through the referenced artifacts;
// FetchArtifact streams an object in chunks and ends DATA_LOSS on a corrupt
// one; CollectArtifactGarbage keeps what results, specs and checkpoints
// reference and what is young, and removes the rest. Also the reflection walk
// that finds ArtifactRefs in specs (coordinator/artifact_refs.h).
#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/hash.h"
#include "coordinator/artifact_refs.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
  return ctx;
}

// An object path for content that is not stored.
ArtifactInfo Unstored(const std::string& name, const std::string& content) {
  const std::string sha = Sha256Hex(content);
  return ArtifactInfo{name,
                      absl::StrCat("objects/", sha.substr(0, 2), "/", sha),
                      static_cast<int64_t>(content.size()), sha};
}

class ArtifactServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(/*with_store=*/true); }
  void TearDown() override {
    if (coordinator_ != nullptr) {
      ASSERT_THAT(coordinator_->Shutdown(absl::Seconds(2)), IsOk());
    }
  }

  void Start(bool with_store) {
    CoordinatorOptions options;
    options.clock = &clock_;
    if (with_store) {
      root_ = TempPath("artifact-root");
      options.artifact_root = root_;
    }
    auto c = StartTestCoordinator(options);
    ASSERT_THAT(c, IsOk());
    coordinator_ = std::move(*c);
    auto channel = grpc::CreateChannel(coordinator_->address(),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::Coordinator::NewStub(channel);
    gateway_ = v1::WorkerGateway::NewStub(channel);
    if (with_store) {
      // The test's handle on the same directory (as a worker would have).
      auto store = ArtifactStore::Open(root_, &clock_);
      ASSERT_THAT(store, IsOk());
      store_ = std::move(*store);
    }
  }

  void SubmitPlan(const Plan& plan) {
    ASSERT_THAT(Await<SubmitOutcome>([&](auto done) {
                  coordinator_->scheduler()->SubmitPlan(plan, done);
                }),
                IsOk());
  }
  std::string Register() {
    v1::RegisterWorkerRequest req;
    req.set_name("artifact-worker");
    req.mutable_capabilities()->set_device_kind("cpu");
    req.mutable_capabilities()->set_tensor_parallel(1);
    v1::RegisterWorkerResponse resp;
    EXPECT_TRUE(gateway_->RegisterWorker(Ctx().get(), req, &resp).ok());
    return resp.worker_id();
  }
  v1::TaskAssignment LeaseOne(const std::string& worker) {
    v1::LeaseTasksRequest req;
    req.set_worker_id(worker);
    req.set_max_tasks(1);
    v1::LeaseTasksResponse resp;
    grpc::Status st = gateway_->LeaseTasks(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_THAT(resp.tasks(), SizeIs(1));
    return resp.tasks_size() > 0 ? resp.tasks(0) : v1::TaskAssignment();
  }
  // Reports a result referencing `artifacts`; returns `committed`.
  bool Report(const std::string& worker, const v1::TaskAssignment& a,
              const std::vector<ArtifactInfo>& artifacts) {
    v1::ReportResultRequest req;
    req.set_worker_id(worker);
    req.set_task_key(a.task_key());
    req.set_fencing_token(a.fencing_token());
    v1::Metric* m = req.mutable_result()->add_metrics();
    m->set_name("value");
    m->set_value(1);
    for (const ArtifactInfo& info : artifacts) {
      v1::Artifact* out = req.mutable_result()->add_artifacts();
      out->set_name(info.name);
      out->set_path(info.path);
      out->set_bytes(info.bytes);
      out->set_sha256(info.sha256);
    }
    v1::ReportResultResponse resp;
    grpc::Status st = gateway_->ReportResult(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.committed();
  }
  v1::TaskRecord Task(const Plan& plan, int i) {
    auto t =
        coordinator_->ledger()->GetTask(plan.sweep_id, plan.tasks[i].task_key);
    EXPECT_THAT(t, IsOk());
    return t.ok() ? *t : v1::TaskRecord();
  }
  // Runs task by task: lease, report `artifacts`, expect a commit.
  void Complete(const std::string& worker,
                const std::vector<ArtifactInfo>& artifacts) {
    v1::TaskAssignment a = LeaseOne(worker);
    ASSERT_TRUE(Report(worker, a, artifacts));
  }

  grpc::Status Fetch(const std::string& path,
                     std::vector<v1::ArtifactChunk>* chunks) {
    v1::FetchArtifactRequest req;
    req.set_path(path);
    auto ctx = Ctx();
    auto reader = stub_->FetchArtifact(ctx.get(), req);
    v1::ArtifactChunk chunk;
    while (reader->Read(&chunk)) chunks->push_back(chunk);
    return reader->Finish();
  }

  FakeClock clock_{Clock::Real()->NowMs()};
  std::string root_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<ArtifactStore> store_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::unique_ptr<v1::WorkerGateway::Stub> gateway_;
};

TEST_F(ArtifactServiceTest, MissingArtifactIsARetryableFailureUntilStored) {
  PlanShape shape;
  shape.tasks = 1;
  const Plan plan = MakePlan(shape);
  SubmitPlan(plan);
  const std::string worker = Register();
  const ArtifactInfo gram = Unstored("gram/attn_heads[3]/c4/shard0", "xtx");

  v1::TaskAssignment first = LeaseOne(worker);
  EXPECT_TRUE(Report(worker, first, {gram}));  // the failure commits
  v1::TaskRecord t = Task(plan, 0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_PENDING);  // retried
  EXPECT_THAT(
      t.error(),
      AllOf(HasSubstr("gram/attn_heads[3]/c4/shard0"), HasSubstr(gram.path),
            HasSubstr("missing from the store"), HasSubstr("will run again")));
  EXPECT_EQ(t.result().artifacts_size(), 0);

  // The next attempt wrote it: the result commits.
  auto stored = store_->PutBytes(gram.name, "xtx");
  ASSERT_THAT(stored, IsOk());
  ASSERT_EQ(stored->path, gram.path);
  clock_.AdvanceMs(shape.retry_backoff_ms);
  v1::TaskAssignment second = LeaseOne(worker);
  ASSERT_EQ(second.task_key(), first.task_key());
  EXPECT_TRUE(Report(worker, second, {gram}));
  t = Task(plan, 0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_DONE);
  ASSERT_EQ(t.result().artifacts_size(), 1);
  EXPECT_EQ(t.result().artifacts(0).path(), gram.path);
}

TEST_F(ArtifactServiceTest, SizeMismatchRetriesAndBadPathFailsForGood) {
  PlanShape shape;
  shape.tasks = 2;
  const Plan plan = MakePlan(shape);
  SubmitPlan(plan);
  const std::string worker = Register();
  auto stored = store_->PutBytes("raw/resid_out[2]/shard0", "0123456789");
  ASSERT_THAT(stored, IsOk());
  ArtifactInfo torn = *stored;
  torn.bytes = 4096;  // what the worker thought it wrote

  v1::TaskAssignment a = LeaseOne(worker);
  EXPECT_TRUE(Report(worker, a, {*stored, torn}));
  v1::TaskRecord t = Task(plan, a.spec().index());
  EXPECT_EQ(t.state(), v1::TASK_STATE_PENDING);
  EXPECT_THAT(t.error(), AllOf(HasSubstr("raw/resid_out[2]/shard0"),
                               HasSubstr("has 10 bytes, the reference "
                                         "says 4096")));

  v1::TaskAssignment b = LeaseOne(worker);
  ASSERT_NE(b.task_key(), a.task_key());
  ArtifactInfo outside{"weights", "/etc/passwd", 10, ""};
  EXPECT_TRUE(Report(worker, b, {outside}));
  t = Task(plan, b.spec().index());
  EXPECT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_THAT(t.error(),
              AllOf(HasSubstr("\"weights\""), HasSubstr("not an object path"),
                    HasSubstr("not retried")));
}

TEST_F(ArtifactServiceTest, WithoutAStoreReportsAreNotChecked) {
  ASSERT_THAT(coordinator_->Shutdown(absl::Seconds(2)), IsOk());
  Start(/*with_store=*/false);
  PlanShape shape;
  shape.tasks = 1;
  const Plan plan = MakePlan(shape);
  SubmitPlan(plan);
  const std::string worker = Register();
  Complete(worker, {Unstored("elsewhere", "bytes")});
  EXPECT_EQ(Task(plan, 0).state(), v1::TASK_STATE_DONE);

  std::vector<v1::ArtifactChunk> chunks;
  EXPECT_EQ(Fetch(Unstored("x", "y").path, &chunks).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  v1::CollectArtifactGarbageRequest req;
  v1::CollectArtifactGarbageResponse resp;
  grpc::Status st = stub_->CollectArtifactGarbage(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("--artifact-root"));
}

TEST_F(ArtifactServiceTest, ListsReferencedArtifactsPageByPage) {
  PlanShape one;
  one.sweep_id = "sw-one";
  one.tasks = 2;
  PlanShape two;
  two.sweep_id = "sw-two";
  two.tasks = 1;
  const Plan p1 = MakePlan(one);
  const Plan p2 = MakePlan(two);
  SubmitPlan(p1);
  clock_.AdvanceMs(1);  // sw-two is submitted after sw-one
  SubmitPlan(p2);
  const std::string worker = Register();
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) {
    v1::TaskAssignment a = LeaseOne(worker);
    auto x = store_->PutBytes(
        absl::StrCat("x/", a.sweep_id(), "/", a.spec().index()),
        absl::StrCat("x", a.task_key()));
    auto y = store_->PutBytes(
        absl::StrCat("y/", a.sweep_id(), "/", a.spec().index()),
        absl::StrCat("y", a.task_key()));
    ASSERT_THAT(x, IsOk());
    ASSERT_THAT(y, IsOk());
    ASSERT_TRUE(Report(worker, a, {*x, *y}));
  }

  v1::ListArtifactsRequest req;
  v1::ListArtifactsResponse all;
  ASSERT_TRUE(stub_->ListArtifacts(Ctx().get(), req, &all).ok());
  ASSERT_THAT(all.artifacts(), SizeIs(6));
  EXPECT_TRUE(all.next_page_token().empty());
  EXPECT_EQ(all.artifacts(0).sweep_id(), "sw-one");
  EXPECT_EQ(all.artifacts(0).name(), "x/sw-one/0");
  EXPECT_EQ(all.artifacts(1).name(), "y/sw-one/0");
  EXPECT_EQ(all.artifacts(0).task_key(), p1.tasks[0].task_key);
  EXPECT_EQ(all.artifacts(5).name(), "y/sw-two/0");
  EXPECT_EQ(all.artifacts(5).task_index(), 0);
  EXPECT_TRUE(IsArtifactObjectPath(all.artifacts(3).path()));
  EXPECT_EQ(all.artifacts(3).bytes(), 1 + 64);
  EXPECT_EQ(all.artifacts(3).sha256(),
            Sha256Hex(absl::StrCat("y", p1.tasks[1].task_key)));

  // One task per page: three pages across both sweeps.
  req.set_page_size(1);
  std::vector<std::string> paged;
  for (int page = 0; page < 10; ++page) {
    v1::ListArtifactsResponse resp;
    ASSERT_TRUE(stub_->ListArtifacts(Ctx().get(), req, &resp).ok());
    for (const auto& a : resp.artifacts()) paged.push_back(a.name());
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_THAT(paged, ElementsAre("x/sw-one/0", "y/sw-one/0", "x/sw-one/1",
                                 "y/sw-one/1", "x/sw-two/0", "y/sw-two/0"));

  v1::ListArtifactsRequest only;
  only.set_sweep_id("sw-two");
  v1::ListArtifactsResponse two_only;
  ASSERT_TRUE(stub_->ListArtifacts(Ctx().get(), only, &two_only).ok());
  EXPECT_THAT(two_only.artifacts(), SizeIs(2));
  only.set_sweep_id("no-such-sweep");
  EXPECT_EQ(stub_->ListArtifacts(Ctx().get(), only, &two_only).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::ListArtifactsRequest bad;
  bad.set_page_token("garbage");
  EXPECT_EQ(stub_->ListArtifacts(Ctx().get(), bad, &two_only).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ArtifactServiceTest, FetchStreamsChunksAndDetectsCorruption) {
  std::string content;
  for (int i = 0; i < (5 << 19) + 7; ++i) {
    content.push_back(static_cast<char>((i * 131) % 251));
  }
  auto info = store_->PutBytes("big", content);
  ASSERT_THAT(info, IsOk());
  std::vector<v1::ArtifactChunk> chunks;
  ASSERT_TRUE(Fetch(info->path, &chunks).ok());
  ASSERT_THAT(chunks, SizeIs(3));  // 2.5 MiB + 7 bytes in 1 MiB chunks
  EXPECT_EQ(chunks[0].total_bytes(), static_cast<int64_t>(content.size()));
  EXPECT_EQ(chunks[0].sha256(), info->sha256);
  EXPECT_EQ(chunks[1].offset(), 1 << 20);
  EXPECT_EQ(chunks[1].sha256(), "");
  std::string joined;
  for (const auto& c : chunks) joined += c.data();
  EXPECT_EQ(joined, content);

  auto empty = store_->PutBytes("empty", "");
  ASSERT_THAT(empty, IsOk());
  chunks.clear();
  ASSERT_TRUE(Fetch(empty->path, &chunks).ok());
  ASSERT_THAT(chunks, SizeIs(1));
  EXPECT_EQ(chunks[0].total_bytes(), 0);
  EXPECT_EQ(chunks[0].sha256(), Sha256Hex(""));

  // Corrupt in place: every byte is sent, then the stream ends DATA_LOSS.
  std::ofstream(root_ + "/" + info->path, std::ios::binary | std::ios::trunc)
      << content.substr(0, 100) << "X" << content.substr(101);
  chunks.clear();
  grpc::Status st = Fetch(info->path, &chunks);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(st.error_message(), HasSubstr("checksum mismatch"));

  chunks.clear();
  EXPECT_EQ(Fetch(Unstored("m", "missing").path, &chunks).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Fetch("../ledger.db", &chunks).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(chunks, SizeIs(0));
}

TEST_F(ArtifactServiceTest, GarbageCollectionKeepsWhatIsReferenced) {
  auto in_result = store_->PutBytes("result", "referenced by a result");
  auto in_task_spec = store_->PutBytes("weights", "replace_layer weights");
  auto in_sweep_spec = store_->PutBytes("gram", "a heal gram");
  auto in_checkpoint = store_->PutBytes("ckpt", "retrain state");
  auto garbage = store_->PutBytes("garbage", "nobody references this");
  auto young = store_->PutBytes("young", "not reported yet");
  for (auto* s : {&in_result, &in_task_spec, &in_sweep_spec, &in_checkpoint,
                  &garbage, &young}) {
    ASSERT_THAT(*s, IsOk());
  }
  ASSERT_THAT(store_->SetCheckpoint("task/retrain", *in_checkpoint), IsOk());
  auto stray = store_->NewWriter("stray");
  ASSERT_THAT(stray, IsOk());
  ASSERT_THAT((*stray)->Append("torn"), IsOk());

  PlanShape shape;
  shape.tasks = 1;
  Plan plan = MakePlan(shape);
  // A steering vector named in the sweep's grid (the spec keeps its job).
  v1::ArtifactRef* gram = plan.resolved_spec.mutable_grid()
                              ->add_axes()
                              ->mutable_interventions()
                              ->add_items()
                              ->add_interventions()
                              ->mutable_steer()
                              ->mutable_vector_artifact();
  gram->set_path(in_sweep_spec->path);
  v1::ArtifactRef* weights = plan.tasks[0]
                                 .spec.mutable_interventions()
                                 ->add_interventions()
                                 ->mutable_replace_layer()
                                 ->mutable_weights();
  weights->set_path(in_task_spec->path);
  SubmitPlan(plan);
  Complete(Register(), {*in_result});

  // Two days on; "young" was written an hour ago.
  clock_.AdvanceMs(2 * 86'400'000);
  const int64_t young_s = (clock_.NowMs() - 3'600'000) / 1000;
  struct timespec times[2] = {{young_s, 0}, {young_s, 0}};
  ASSERT_EQ(
      ::utimensat(AT_FDCWD, (root_ + "/" + young->path).c_str(), times, 0), 0);

  v1::CollectArtifactGarbageRequest req;
  req.set_dry_run(true);
  v1::CollectArtifactGarbageResponse dry;
  ASSERT_TRUE(stub_->CollectArtifactGarbage(Ctx().get(), req, &dry).ok());
  EXPECT_TRUE(dry.dry_run());
  EXPECT_EQ(dry.objects_deleted(), 1);
  EXPECT_EQ(dry.bytes_deleted(), garbage->bytes);
  EXPECT_EQ(dry.objects_too_young(), 1);
  EXPECT_EQ(dry.objects_kept(), 5);
  EXPECT_EQ(dry.tmp_files_deleted(), 1);
  EXPECT_EQ(dry.referenced(), 3);
  EXPECT_EQ(dry.checkpoints(), 1);
  EXPECT_THAT(*store_->List(), SizeIs(6));

  req.set_dry_run(false);
  v1::CollectArtifactGarbageResponse done;
  ASSERT_TRUE(stub_->CollectArtifactGarbage(Ctx().get(), req, &done).ok());
  EXPECT_EQ(done.objects_deleted(), 1);
  EXPECT_EQ(done.tmp_files_deleted(), 1);
  EXPECT_EQ(done.tmp_bytes_deleted(), 4);
  EXPECT_THAT(store_->Resolve(garbage->path, ""),
              ::sweepd::testing::StatusIs(absl::StatusCode::kNotFound));
  for (auto* s :
       {&in_result, &in_task_spec, &in_sweep_spec, &in_checkpoint, &young}) {
    EXPECT_THAT(store_->Resolve((*s)->path, ""), IsOk()) << (*s)->name;
  }
  // With a smaller min age the young one goes too.
  req.set_min_age_seconds(60);
  ASSERT_TRUE(stub_->CollectArtifactGarbage(Ctx().get(), req, &done).ok());
  EXPECT_EQ(done.objects_deleted(), 1);
  EXPECT_THAT(*store_->List(), SizeIs(4));
  req.set_min_age_seconds(-1);
  EXPECT_EQ(stub_->CollectArtifactGarbage(Ctx().get(), req, &done).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(ArtifactRefsTest, FindsEveryArtifactRefAndArtifact) {
  v1::SweepSpec spec;
  spec.mutable_heal()->add_grams()->set_path("objects/aa/1");
  spec.mutable_heal()->add_heldout_grams()->set_path("objects/bb/2");
  v1::Stage* stage = spec.add_stages();
  stage->mutable_materialize()->add_heals()->mutable_artifact()->set_path(
      "objects/cc/3");
  spec.mutable_heal()->add_grams();  // empty path: skipped
  v1::TaskRecord record;
  record.mutable_spec()
      ->mutable_interventions()
      ->add_interventions()
      ->mutable_steer()
      ->mutable_vector_artifact()
      ->set_path("objects/dd/4");
  record.mutable_result()->add_artifacts()->set_path("objects/ee/5");
  std::set<std::string> paths;
  CollectArtifactPaths(spec, &paths);
  CollectArtifactPaths(record, &paths);
  EXPECT_THAT(paths, ElementsAre("objects/aa/1", "objects/bb/2", "objects/cc/3",
                                 "objects/dd/4", "objects/ee/5"));
}

}  // namespace
}  // namespace sweepd
