#include "worker/jobs/interventions.h"

#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "common/artifact_store.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Steer = engine::Intervention::SteerMode;

ModelConfig Config(int layers, int heads) {
  ModelConfig c;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  return c;
}

std::string TempDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/jobs_interventions_" +
                          std::to_string(getpid()) + "_" + name;
  EXPECT_TRUE(RemoveAll(dir).ok());
  EXPECT_TRUE(MakeDirs(dir).ok());
  return dir;
}

// Stores a safetensors object holding `tensors` (name -> F32 [values]).
ArtifactInfo PutTensors(
    ArtifactStore* store, const std::string& dir,
    const std::vector<std::pair<std::string, std::vector<float>>>& tensors) {
  SafetensorsWriter w;
  for (const auto& [name, values] : tensors) {
    EXPECT_TRUE(w.Add(name, StDtype::kF32,
                      {static_cast<int64_t>(values.size())}, values.data(),
                      values.size() * sizeof(float))
                    .ok());
  }
  const std::string path = dir + "/t.safetensors";
  EXPECT_TRUE(w.WriteFile(path).ok());
  auto info = store->PutFile("test", path);
  EXPECT_TRUE(info.ok()) << info.status();
  return *info;
}

TEST(CheckInterventionsTest, ErrorsNameTheSpecField) {
  const std::vector<engine::Intervention> ivs = {
      engine::Intervention::Zero(0), engine::Intervention::Reinit(7, 3),
      engine::Intervention::MaskHeads(3, {0, 2})};
  const std::vector<std::string> fields = {
      "eval.base_interventions.interventions[0].zero.layers",
      "interventions.interventions[1].reinit.layers",
      "interventions.interventions[2].mask_heads"};
  EXPECT_TRUE(CheckInterventions(ivs, fields, Config(8, 4)).ok());
  absl::Status small = CheckInterventions(ivs, fields, Config(6, 4));
  EXPECT_EQ(small.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(small.message()),
              HasSubstr("interventions.interventions[1].reinit.layers"));
  absl::Status heads = CheckInterventions(ivs, fields, Config(8, 2));
  EXPECT_THAT(std::string(heads.message()),
              HasSubstr("interventions.interventions[2].mask_heads"));
  EXPECT_THAT(std::string(heads.message()), HasSubstr("heads[1] = 2"));
  // Without field names the position is named.
  absl::Status unnamed = CheckInterventions(ivs, {}, Config(6, 4));
  EXPECT_THAT(std::string(unnamed.message()), HasSubstr("interventions[1]"));
}

TEST(CheckInterventionsTest, SteerVectorsAndReplaceLayerFiles) {
  ModelConfig c = Config(4, 2);
  c.hidden_size = 3;
  const std::vector<std::string> fields = {
      "interventions.interventions[0].steer",
      "interventions.interventions[1]."
      "replace_layer"};
  EXPECT_TRUE(CheckInterventions(
                  {engine::Intervention::Steer(1, Steer::kAdd, {1, 2, 3}),
                   engine::Intervention::ReplaceLayer(3, "/x.safetensors")},
                  fields, c)
                  .ok());
  EXPECT_THAT(std::string(CheckInterventions({engine::Intervention::Steer(
                                                 1, Steer::kAdd, {1, 2})},
                                             fields, c)
                              .message()),
              AllOf(HasSubstr("interventions.interventions[0].steer"),
                    HasSubstr("the steering vector has 2 values; this model's "
                              "hidden_size is 3")));
  EXPECT_THAT(std::string(CheckInterventions(
                              {engine::Intervention::Steer(1, Steer::kAdd, {}),
                               engine::Intervention::ReplaceLayer(3, "")},
                              fields, c)
                              .message()),
              HasSubstr("has 0 values"));
  EXPECT_THAT(
      std::string(CheckInterventions(
                      {engine::Intervention::Steer(1, Steer::kAdd, {1, 2, 3}),
                       engine::Intervention::ReplaceLayer(3, "")},
                      fields, c)
                      .message()),
      AllOf(HasSubstr("interventions.interventions[1].replace_layer"),
            HasSubstr("no weights file (unresolved artifact)")));
}

TEST(ResolveInterventionArtifactsTest, FillsVectorsAndWeightPaths) {
  const std::string dir = TempDir("resolve");
  auto opened = ArtifactStore::Open(dir + "/store");
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::shared_ptr<ArtifactStore> store = std::move(*opened);
  const ArtifactInfo one = PutTensors(store.get(), dir, {{"v", {1, 2, 3}}});
  const ArtifactInfo two =
      PutTensors(store.get(), dir, {{"a", {4, 5, 6}}, {"b", {7, 8, 9}}});
  std::vector<engine::Intervention> ivs = {
      engine::Intervention::Steer(0, Steer::kAdd, {}),
      engine::Intervention::Steer(1, Steer::kReplace, {}, 2.0, {-1}),
      engine::Intervention::ReplaceLayer(2, "")};
  const std::vector<std::string> fields = {"f0", "f1", "f2"};
  std::vector<InterventionArtifactRef> refs = {{0, one.path, "", ""},
                                               {1, two.path, two.sha256, "b"},
                                               {2, two.path, "", ""}};
  ASSERT_TRUE(ResolveInterventionArtifacts(store, refs, fields, &ivs).ok());
  EXPECT_THAT(ivs[0].vector, ElementsAre(1, 2, 3));
  EXPECT_THAT(ivs[1].vector, ElementsAre(7, 8, 9));
  EXPECT_EQ(ivs[1].scale, 2.0);
  EXPECT_THAT(ivs[2].weights_path, ::testing::EndsWith("/store/" + two.path));
  EXPECT_TRUE(PathExists(ivs[2].weights_path));

  // Errors name the field.
  auto resolve = [&](std::vector<InterventionArtifactRef> r,
                     const std::shared_ptr<ArtifactStore>& s) {
    std::vector<engine::Intervention> copy = ivs;
    return ResolveInterventionArtifacts(s, r, fields, &copy);
  };
  absl::Status no_store = resolve({refs[0]}, nullptr);
  EXPECT_EQ(no_store.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(no_store.message()),
              HasSubstr("f0 (artifact " + one.path +
                        ") needs --artifact-root on the worker"));
  EXPECT_THAT(std::string(resolve({{1, two.path, "", ""}}, store).message()),
              HasSubstr("f1: artifact " + two.path +
                        " holds 2 tensors; name one with "
                        "vector_artifact.tensor"));
  EXPECT_THAT(std::string(resolve({{1, two.path, "", "c"}}, store).message()),
              HasSubstr("has no tensor 'c'"));
  const std::string missing = "objects/00/" + std::string(64, '0');
  absl::Status not_found = resolve({{0, missing, "", ""}}, store);
  // Missing: retryable (another box's store may not show it yet).
  EXPECT_EQ(not_found.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(not_found.message()), HasSubstr("f0"));
}

TEST(PromptRelativeSteeringTest, ResolvesNegativePositionsAgainstThePrompt) {
  const std::vector<engine::Intervention> ivs = {
      engine::Intervention::Skip(0),
      engine::Intervention::Steer(1, Steer::kAdd, {1}, 1.0, {-1, 2, -9}),
      engine::Intervention::Steer(2, Steer::kAdd, {1}),
      engine::Intervention::Steer(3, Steer::kAdd, {1}, 1.0, {-8})};
  const std::vector<engine::Intervention> out = PromptRelativeSteering(ivs, 5);
  ASSERT_EQ(out.size(), 3u);  // the steer left without positions is dropped
  EXPECT_EQ(out[0].kind, engine::Intervention::Kind::kSkipLayer);
  EXPECT_THAT(out[1].positions, ElementsAre(4, 2));
  EXPECT_TRUE(out[2].positions.empty());  // every position stays every one
  EXPECT_EQ(out[2].layer, 2);
}

}  // namespace
}  // namespace sweepd
