// Paths and model info through PlanSweep (coordinator/spec_paths.cc): paths
// resolved under the model and data roots (symlinks included), fingerprints
// filled in, config.json read (nested text_config, errors), the model
// fingerprint over headers and tensor data.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/hash.h"
#include "common/model_config.h"
#include "common/model_fingerprint.h"
#include "coordinator/planner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/planner_test_util.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using planner_test::PlannerTest;
using planner_test::Safetensors;
using planner_test::WriteFile;
using planner_test::WriteModel;
using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// The planner's reading of a config.json (common/model_config.h): both counts
// required.
struct ModelCounts {
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
};

absl::StatusOr<ModelCounts> CountsOf(const absl::StatusOr<HfConfig>& config) {
  if (!config.ok()) return config.status();
  ModelCounts counts;
  absl::StatusOr<int> layers = config->RequiredCount("num_hidden_layers");
  if (!layers.ok()) return layers.status();
  absl::StatusOr<int> heads = config->RequiredCount("num_attention_heads");
  if (!heads.ok()) return heads.status();
  counts.num_hidden_layers = *layers;
  counts.num_attention_heads = *heads;
  return counts;
}

absl::StatusOr<ModelCounts> ParseModelConfig(const std::string& config_json,
                                             const std::string& source) {
  return CountsOf(HfConfig::Parse(config_json, source));
}

absl::StatusOr<ModelCounts> ReadModelInfo(const std::string& dir) {
  return CountsOf(HfConfig::ReadFile(dir + "/config.json"));
}

TEST_F(PlannerTest, ResolvesPathsFillsFingerprintsAndDefaults) {
  Plan plan = MustPlan(EvalSpec());
  const v1::SweepSpec& r = plan.resolved_spec;
  char real_root[PATH_MAX];
  ASSERT_NE(realpath(model_root_.c_str(), real_root), nullptr);
  EXPECT_EQ(r.model().path(), std::string(real_root) + "/tiny");
  EXPECT_EQ(r.datasets(0).fingerprint(), Sha256Hex("the quick brown fox\n"));
  EXPECT_EQ(r.datasets(0).shards(), 1);
  EXPECT_THAT(r.model().fingerprint(), ::testing::MatchesRegex("[0-9a-f]{64}"));
  EXPECT_EQ(r.policy().max_attempts(), 3);
  EXPECT_EQ(r.policy().lease_seconds(), 60);
  EXPECT_EQ(r.policy().retry_backoff_ms(), 1000);
  EXPECT_EQ(r.eval().windowing().context_length(), 512);
  EXPECT_EQ(r.eval().windowing().stride(), 512);
  EXPECT_EQ(r.eval().windowing().bos(), "on");
  EXPECT_EQ(plan.tasks[0].spec.model().fingerprint(), r.model().fingerprint());
  EXPECT_EQ(plan.tasks[0].spec.data().dataset().path(), r.datasets(0).path());
}

// Issue 10, defect 3: the fingerprint covers tensor bytes, so an edited
// checkpoint with its base's layout no longer shares the base's fingerprint
// (this test asserted EXPECT_EQ for m1/m2 before).
TEST_F(PlannerTest, ModelFingerprintCoversHeadersAndTensorData) {
  const std::string w =
      R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
  const std::string v =
      R"({"v":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
  WriteModel(root_ + "/m1", 8, 4, false, w, "AAAA");
  WriteModel(root_ + "/m2", 8, 4, false, w,
             "BBBB");                                 // same header, other data
  WriteModel(root_ + "/m3", 8, 4, false, v, "AAAA");  // other header
  WriteModel(root_ + "/m4", 8, 4, true, w,
             "AAAA");  // other config.json
  auto f1 = ComputeModelFingerprint(root_ + "/m1");
  ASSERT_TRUE(f1.ok()) << f1.status();
  EXPECT_NE(*f1, *ComputeModelFingerprint(root_ + "/m2"));
  EXPECT_NE(*f1, *ComputeModelFingerprint(root_ + "/m3"));
  EXPECT_NE(*f1, *ComputeModelFingerprint(root_ + "/m4"));
  WriteFile(root_ + "/m1/model.safetensors.index.json", "{\"weight_map\": {}}");
  EXPECT_NE(*f1, *ComputeModelFingerprint(root_ + "/m1"));
}

TEST_F(PlannerTest, ModelInfoReadsNestedTextConfig) {
  WriteModel(model_root_ + "/nested", 60, 32, /*nested=*/true);
  auto info = ReadModelInfo(model_root_ + "/nested");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->num_hidden_layers, 60);
  EXPECT_EQ(info->num_attention_heads, 32);
  v1::SweepSpec s = EvalSpec();
  s.mutable_model()->set_path("nested");
  AddLayers(&s, "skip", "all");
  EXPECT_THAT(MustPlan(s).tasks, SizeIs(60));
}

TEST_F(PlannerTest, ModelInfoErrors) {
  EXPECT_THAT(
      ParseModelConfig("{\"num_hidden_layers\": 0, \"num_attention_heads\": 4}",
                       "c"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("num_hidden_layers")));
  EXPECT_THAT(
      ParseModelConfig("{\"text_config\": {\"num_hidden_layers\": 2}}", "c"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("text_config: missing \"num_attention_heads\"")));
  EXPECT_THAT(ParseModelConfig("not json", "c"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a JSON object")));
  ASSERT_EQ(mkdir((root_ + "/trunc").c_str(), 0755), 0);
  WriteFile(root_ + "/trunc/config.json", "{}");
  WriteFile(root_ + "/trunc/model.safetensors",
            Safetensors("{}", "").substr(0, 9));
  EXPECT_THAT(ComputeModelFingerprint(root_ + "/trunc"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model.safetensors")));
  ASSERT_EQ(mkdir((root_ + "/noweights").c_str(), 0755), 0);
  WriteFile(root_ + "/noweights/config.json", "{}");
  EXPECT_THAT(
      ComputeModelFingerprint(root_ + "/noweights"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("no *.safetensors")));
}

TEST_F(PlannerTest, PathsMustStayInsideTheRoots) {
  const std::string outside = root_ + "/outside-model";
  WriteModel(outside, 8, 4);
  v1::SweepSpec s = EvalSpec();
  s.mutable_model()->set_path("../outside-model");
  EXPECT_THAT(
      PlanSweep(s, Options()),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("model.path")));
  s.mutable_model()->set_path(outside);
  EXPECT_THAT(
      PlanSweep(s, Options()),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("model.path")));
  ASSERT_EQ(symlink(outside.c_str(), (model_root_ + "/link").c_str()), 0);
  s.mutable_model()->set_path("link");
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("outside the model root")));

  v1::SweepSpec d = EvalSpec();
  d.mutable_datasets(0)->set_path("../../etc/passwd");
  EXPECT_THAT(PlanSweep(d, Options()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("datasets[0].path")));

  v1::SweepSpec missing = EvalSpec();
  missing.mutable_model()->set_path("no-such-model");
  EXPECT_THAT(PlanSweep(missing, Options()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("model.path: 'no-such-model'")));
  v1::SweepSpec missing_data = EvalSpec();
  missing_data.mutable_datasets(0)->set_path("nope.txt");
  EXPECT_THAT(PlanSweep(missing_data, Options()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("datasets[0].path: 'nope.txt'")));
}

// Defect 7 (issue 13): the model directory was checked, its files were not.
TEST_F(PlannerTest, ModelFilesSymlinkedOutsideTheRootAreRefused) {
  const std::string outside = root_ + "/outside-files";
  WriteModel(outside, 8, 4);
  WriteFile(outside + "/tokenizer.json", "{}");

  // config.json of a directory inside the root links outside it.
  const std::string config_link = model_root_ + "/config-link";
  ASSERT_EQ(mkdir(config_link.c_str(), 0755), 0);
  WriteFile(config_link + "/model.safetensors", Safetensors("{}", ""));
  ASSERT_EQ(symlink((outside + "/config.json").c_str(),
                    (config_link + "/config.json").c_str()),
            0);
  v1::SweepSpec s = EvalSpec();
  s.mutable_model()->set_path("config-link");
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("model.path"), HasSubstr("config.json"),
                             HasSubstr("outside"))));

  // tokenizer.json links outside it.
  const std::string tokenizer_link = model_root_ + "/tokenizer-link";
  WriteModel(tokenizer_link, 8, 4);
  ASSERT_EQ(symlink((outside + "/tokenizer.json").c_str(),
                    (tokenizer_link + "/tokenizer.json").c_str()),
            0);
  s.mutable_model()->set_path("tokenizer-link");
  EXPECT_THAT(
      PlanSweep(s, Options()),
      StatusIs(absl::StatusCode::kPermissionDenied,
               AllOf(HasSubstr("tokenizer.json"), HasSubstr("outside"))));

  // A weights shard links outside it.
  const std::string shard_link = model_root_ + "/shard-link";
  ASSERT_EQ(mkdir(shard_link.c_str(), 0755), 0);
  WriteFile(shard_link + "/config.json",
            "{\"num_hidden_layers\": 8, \"num_attention_heads\": 4}");
  ASSERT_EQ(symlink((outside + "/model.safetensors").c_str(),
                    (shard_link + "/model.safetensors").c_str()),
            0);
  s.mutable_model()->set_path("shard-link");
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("model.safetensors")));

  // Links that stay inside the root are fine (a Hugging Face cache's
  // snapshots link into its blobs).
  const std::string inside = model_root_ + "/inside-link";
  ASSERT_EQ(mkdir(inside.c_str(), 0755), 0);
  for (const char* name : {"config.json", "model.safetensors"}) {
    ASSERT_EQ(symlink((model_root_ + "/tiny/" + name).c_str(),
                      (inside + "/" + name).c_str()),
              0);
  }
  s.mutable_model()->set_path("inside-link");
  EXPECT_THAT(PlanSweep(s, Options()), IsOk());
}

}  // namespace
}  // namespace sweepd
