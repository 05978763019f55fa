// Tests of the materialize executor (worker/jobs/materialize_executor.h): its
// result rows, out_dir confinement under the model root, heal artifacts read
// from the artifact store (checksums verified) and the errors of a worker
// without --model-root / --artifact-root. The checkpoint editing itself is
// tested in tests/calib/checkpoint_editor_test.cc.
#include "worker/jobs/materialize_executor.h"

#include <unistd.h>

#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/artifact_store.h"
#include "common/fs.h"
#include "common/model_fingerprint.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/jobs/executor_test_env.h"
#include "tests/testing/status_matchers.h"
#include "worker/calib/checkpoint_editor.h"
#include "worker/engine/model_generator.h"

namespace sweepd {
namespace {

using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::HasSubstr;
using json = nlohmann::json;

using jobs_test::SourceDir;

std::string NewTempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/materialize_executor_test_" +
                    std::to_string(getpid()) + "_" + name;
  EXPECT_THAT(RemoveAll(dir), IsOk());
  EXPECT_THAT(MakeDirs(dir), IsOk());
  return dir;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A heal artifact for layer 1 of the tiny model (o_proj [64, 64]) with head 2's
// columns zero, as safetensors bytes.
std::string HealBytes(std::vector<int64_t> shape = {64, 64}) {
  std::vector<float> v(shape[0] * shape[1]);
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.0f, 0.1f);
  for (float& x : v) x = n(rng);
  for (int64_t r = 0; r < shape[0]; ++r) {
    for (int64_t c = 32; c < 48 && c < shape[1]; ++c) v[r * shape[1] + c] = 0;
  }
  SafetensorsWriter w;
  EXPECT_THAT(w.Add("self_attn.o_proj.weight", StDtype::kF32, shape, v.data(),
                    v.size() * 4),
              IsOk());
  const std::string path = NewTempDir("heal_bytes") + "/h.safetensors";
  EXPECT_THAT(w.WriteFile(path), IsOk());
  return ReadFile(path);
}

class MaterializeExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = NewTempDir("root");
    base_ = root_ + "/base";
    ASSERT_THAT(
        engine::MakeRandomModel(
            SourceDir() + "/configs/models/gemma4-tiny.json", 11, base_),
        IsOk());
    auto store = ArtifactStore::Open(NewTempDir("store"));
    ASSERT_THAT(store, IsOk());
    store_ = std::shared_ptr<ArtifactStore>(std::move(*store));
    auto heal = store_->PutBytes("heal/o_proj/layer1", HealBytes());
    ASSERT_THAT(heal, IsOk());
    heal_ = *heal;
  }

  MaterializeExecutorOptions Options() {
    MaterializeExecutorOptions o;
    o.model_dir = base_;
    o.model_roots = {root_};
    o.artifacts = store_;
    return o;
  }

  static TaskInput Task(MaterializeJobSpec job) {
    TaskInput t;
    t.task_key = "t0";
    t.kind = kMaterializeKind;
    t.job = std::move(job);
    return t;
  }

  MaterializeJobSpec Job(const std::string& out_dir) {
    MaterializeJobSpec j;
    j.out_dir = out_dir;
    j.pruned = {{1, {2}}, {3, {0, 1}}};
    j.heals = {{1, heal_.path, heal_.sha256, ""}};
    return j;
  }

  absl::StatusOr<TaskOutput> Run(const MaterializeExecutorOptions& options,
                                 MaterializeJobSpec job) {
    auto e = MaterializeExecutor::Create(options);
    EXPECT_THAT(e, IsOk());
    return jobs_test::RunOne(e->get(), Task(std::move(job)));
  }

  std::string root_, base_;
  std::shared_ptr<ArtifactStore> store_;
  ArtifactInfo heal_;
};

std::map<std::string, const MetricRow*> ByName(const TaskOutput& out) {
  std::map<std::string, const MetricRow*> m;
  for (const MetricRow& r : out.metrics) m[r.name] = &r;
  return m;
}

TEST_F(MaterializeExecutorTest, ReportsTheMaterializedModel) {
  auto out = Run(Options(), Job("pruned/a"));
  ASSERT_THAT(out, IsOk());
  auto m = ByName(*out);
  ASSERT_TRUE(m.count("materialized_model"));
  const std::string dir = root_ + "/pruned/a";
  auto fp = ComputeModelFingerprint(dir);
  ASSERT_THAT(fp, IsOk());
  EXPECT_EQ(m["materialized_model"]->value, 1.0);
  EXPECT_EQ(m["materialized_model"]->labels,
            (std::map<std::string, std::string>{{"path", "pruned/a"},
                                                {"fingerprint", *fp}}));
  EXPECT_NE(*fp, *ComputeModelFingerprint(base_));
  EXPECT_EQ(m["materialized_tensors_changed"]->value, 4);
  uint64_t bytes = 0;
  auto names = ListDir(dir);
  ASSERT_THAT(names, IsOk());
  for (const std::string& n : *names) {
    if (n != calib::kManifestFile) bytes += *FileSize(dir + "/" + n);
  }
  EXPECT_EQ(m["materialized_bytes_written"]->value, static_cast<double>(bytes));
  EXPECT_EQ(m["materialized_reused"]->value, 0);
  EXPECT_TRUE(m.count("materialize_seconds"));
  const json manifest = json::parse(ReadFile(dir + "/" + calib::kManifestFile));
  EXPECT_EQ(manifest["heals"][0]["artifact"]["path"], heal_.path);
  EXPECT_EQ(manifest["heals"][0]["artifact"]["sha256"], heal_.sha256);
  EXPECT_EQ(manifest["base"]["path"], base_);

  // The same task again (a retry after preemption) keeps the result.
  auto again = Run(Options(), Job("pruned/a"));
  ASSERT_THAT(again, IsOk());
  auto m2 = ByName(*again);
  EXPECT_EQ(m2["materialized_reused"]->value, 1);
  EXPECT_EQ(m2["materialized_model"]->labels, m["materialized_model"]->labels);

  // The layer selector (seed 001's salvage) writes layer 1's edits only.
  MaterializeJobSpec salvage = Job("pruned/l1");
  salvage.has_layers = true;
  salvage.layers = {0, 1};
  auto s = Run(Options(), salvage);
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(ByName(*s)["materialized_tensors_changed"]->value, 2);
}

TEST_F(MaterializeExecutorTest, OutDirStaysInsideTheModelRoot) {
  EXPECT_THAT(Run(Options(), Job("../outside")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("materialize.out_dir: '../outside' is "
                                 "outside the worker's model root")));
  EXPECT_THAT(Run(Options(), Job("/tmp/materialize_elsewhere")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("is outside the worker's model root")));
  EXPECT_THAT(Run(Options(), Job(".")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("outside the worker's model root")));
  // A symlinked directory inside the root that leads out of it.
  const std::string outside = NewTempDir("outside");
  ASSERT_EQ(::symlink(outside.c_str(), (root_ + "/link").c_str()), 0);
  EXPECT_THAT(Run(Options(), Job("link/m")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("/link resolves to ")));
  EXPECT_THAT(
      Run(Options(), Job("link")),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is a symlink")));
  EXPECT_TRUE(ListDir(outside)->empty());
  // An absolute out_dir inside the root is accepted.
  auto ok = Run(Options(), Job(root_ + "/abs/m"));
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ByName(*ok)["materialized_model"]->labels.at("path"), "abs/m");
}

TEST_F(MaterializeExecutorTest, HealArtifactsAreVerified) {
  // A reference whose checksum is not the object's.
  MaterializeJobSpec j = Job("pruned/bad_sum");
  j.heals[0].sha256 = std::string(64, '0');
  EXPECT_THAT(Run(Options(), j),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("materialize.heals[0] (layer 1): artifact " +
                                 heal_.path)));
  // An object whose bytes were corrupted in the store.
  {
    std::ofstream f(store_->root() + "/" + heal_.path,
                    std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(100);
    f.put('x');
  }
  EXPECT_THAT(
      Run(Options(), Job("pruned/corrupt")),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum mismatch")));
  // A heal of the wrong shape.
  auto wrong = store_->PutBytes("heal/o_proj/layer1", HealBytes({64, 48}));
  ASSERT_THAT(wrong, IsOk());
  j = Job("pruned/shape");
  j.heals = {{1, wrong->path, wrong->sha256, ""}};
  EXPECT_THAT(Run(Options(), j),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("materialize.heals[0] (layer 1): tensor "
                                 "'self_attn.o_proj.weight' has shape [64, "
                                 "48]")));
  // A head out of range.
  j = Job("pruned/head");
  j.heals.clear();
  j.pruned = {{2, {7}}};
  EXPECT_THAT(Run(Options(), j),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("materialize.pruned[0].heads[0]: head 7 is "
                                 "out of range [0, 4)")));
  EXPECT_FALSE(PathExists(root_ + "/pruned/head"));
}

TEST_F(MaterializeExecutorTest, NeedsTheRoots) {
  MaterializeExecutorOptions no_root = Options();
  no_root.model_roots.clear();
  EXPECT_THAT(Run(no_root, Job("pruned/x")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("--model-root")));
  MaterializeExecutorOptions no_store = Options();
  no_store.artifacts = nullptr;
  EXPECT_THAT(Run(no_store, Job("pruned/x")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("needs --artifact-root on the worker")));
  // Without heals no store is needed.
  MaterializeJobSpec j = Job("pruned/x");
  j.heals.clear();
  EXPECT_THAT(Run(no_store, j), IsOk());
  // A base outside the model roots.
  MaterializeExecutorOptions other_root = Options();
  other_root.model_roots = {NewTempDir("other_root")};
  EXPECT_THAT(
      Run(other_root, Job("x")),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("model.path")));
}

}  // namespace
}  // namespace sweepd
