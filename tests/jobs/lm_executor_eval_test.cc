// Eval metrics of the eval / probe executor on a random tiny Gemma 4 model:
// eval rows == a hand computation from Engine::Forward NLLs over independently
// chosen windows (steer and replace_layer from the artifact store included),
// per-category rows for JSONL shards, and BOS on/off token counts.
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/artifact_store.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "common/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/jobs/executor_test_env.h"
#include "tests/jobs/lm_executor_fixture.h"
#include "worker/engine/engine.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

using jobs_test::ExpectRelNear;
using jobs_test::LmExecutorTest;
using jobs_test::Outcomes;

// The metric row name + labels (jobs_test::Metric).
constexpr auto& Get = jobs_test::Metric;

TEST_F(LmExecutorTest, EvalEqualsHandComputationFromForwardNlls) {
  const int ctx = 9, stride = 4;
  const json w = {{"context_length", ctx}, {"stride", stride}, {"bos", "on"}};
  const json skip = {{{"skip", {{"layers", "2"}}}}};
  // Small batches so windows of one length span several forwards.
  Outcomes out = Run({Task("eval", "base", "prose.txt", w),
                      Task("eval", "skip", "prose.txt", w, skip)},
                     /*reuse=*/true, nullptr, /*max_batch_tokens=*/20);
  const std::vector<std::string> texts = {
      "The river rises in a high valley where snow lingers.\nIt runs through "
      "farmland past villages.",
      "Lighthouses were built along the northern coast.", "Short.",
      "Each tower had its own pattern of flashes, two long and one short, so "
      "captains knew where they were."};
  for (int k = 0; k < 2; ++k) {
    std::vector<engine::Intervention> ivs;
    if (k == 1) ivs.push_back(engine::Intervention::Skip(2));
    double nll = 0;
    int64_t tokens = 0;
    for (const std::string& t : texts) {
      auto ids = tokenizer_->Encode(t, BosPolicy::kOn);
      ASSERT_TRUE(ids.ok());
      HandEval(*ids, ctx, stride, ivs, &nll, &tokens);
    }
    ASSERT_TRUE(out.at(k).ok()) << out.at(k).status();
    const TaskOutput& o = *out.at(k);
    const std::map<std::string, std::string> all = {{"category", "all"}};
    EXPECT_EQ(Get(o, "tokens", all), static_cast<double>(tokens));
    ExpectRelNear(nll, Get(o, "nll_sum", all), 1e-5, "nll_sum");
    ExpectRelNear(nll / tokens, Get(o, "nll_mean", all), 1e-5, "nll_mean");
    ExpectRelNear(std::exp(nll / tokens), Get(o, "ppl", all), 1e-5, "ppl");
    EXPECT_EQ(Get(o, "bos", {}), 1.0);
  }
}

// Steer and replace_layer whose vector / weights live in the artifact store:
// the eval rows equal the hand computation from Engine::Forward per window
// (steering positions are window-relative), with prefix reuse on and off; a
// worker without a store fails only those tasks, FAILED_PRECONDITION.
TEST_F(LmExecutorTest, SteerAndReplaceLayerFromArtifacts) {
  const std::string dir = *dir_ + "/artifacts";
  ASSERT_TRUE(MakeDirs(dir).ok());
  absl::StatusOr<std::unique_ptr<ArtifactStore>> opened =
      ArtifactStore::Open(dir + "/store");
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::shared_ptr<ArtifactStore> store = std::move(*opened);
  const int64_t hidden = engine_->config().hidden_size;
  std::vector<float> v(hidden);
  for (int64_t i = 0; i < hidden; ++i) v[i] = 0.05f * ((i * 7) % 13) - 0.3f;
  SafetensorsWriter vw;
  ASSERT_TRUE(vw.Add("direction", StDtype::kF32, {hidden}, v.data(),
                     v.size() * sizeof(float))
                  .ok());
  ASSERT_TRUE(
      vw.Add("other", StDtype::kF32, {1}, v.data(), sizeof(float)).ok());
  ASSERT_TRUE(vw.WriteFile(dir + "/v.safetensors").ok());
  auto vinfo = store->PutFile("steer/direction", dir + "/v.safetensors");
  ASSERT_TRUE(vinfo.ok()) << vinfo.status();
  auto ckpt = Checkpoint::Open(Path("model"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const TensorView* o = (*ckpt)->Find("model.layers.3.self_attn.o_proj.weight");
  ASSERT_NE(o, nullptr);
  auto ov = TensorToFloat(*o);
  ASSERT_TRUE(ov.ok());
  for (size_t i = 0; i < ov->size(); ++i) (*ov)[i] *= (i % 3 == 0) ? 0 : 1.5f;
  SafetensorsWriter ow;
  ASSERT_TRUE(ow.Add("self_attn.o_proj.weight", StDtype::kF32, o->shape,
                     ov->data(), ov->size() * sizeof(float))
                  .ok());
  ASSERT_TRUE(ow.WriteFile(dir + "/o.safetensors").ok());
  auto oinfo = store->PutFile("heal/o_proj/layer3", dir + "/o.safetensors");
  ASSERT_TRUE(oinfo.ok()) << oinfo.status();

  const int ctx = 9, stride = 4;
  const json w = {{"context_length", ctx}, {"stride", stride}, {"bos", "on"}};
  std::vector<TaskInput> tasks = {Task("eval", "base", "prose.txt", w),
                                  Task("eval", "steer", "prose.txt", w),
                                  Task("eval", "replace", "prose.txt", w)};
  LmJobSpec& steer = Job(tasks[1]);
  steer.interventions.push_back(engine::Intervention::Steer(
      2, engine::Intervention::SteerMode::kAdd, {}, 4.0, {0, -1}));
  steer.intervention_fields.push_back("interventions.interventions[0].steer");
  steer.intervention_artifacts.push_back(
      {0, vinfo->path, vinfo->sha256, "direction"});
  LmJobSpec& replace = Job(tasks[2]);
  replace.interventions.push_back(engine::Intervention::ReplaceLayer(3, ""));
  replace.interventions.push_back(engine::Intervention::MaskHeads(3, {1}));
  replace.intervention_fields = {"interventions.interventions[0].replace_layer",
                                 "interventions.interventions[1].mask_heads"};
  replace.intervention_artifacts.push_back({0, oinfo->path, "", ""});

  const std::vector<std::string> texts = {
      "The river rises in a high valley where snow lingers.\nIt runs through "
      "farmland past villages.",
      "Lighthouses were built along the northern coast.", "Short.",
      "Each tower had its own pattern of flashes, two long and one short, so "
      "captains knew where they were."};
  const std::vector<std::vector<engine::Intervention>> hand_ivs = {
      {},
      {engine::Intervention::Steer(2, engine::Intervention::SteerMode::kAdd, v,
                                   4.0, {0, -1})},
      {engine::Intervention::ReplaceLayer(3, dir + "/o.safetensors"),
       engine::Intervention::MaskHeads(3, {1})}};
  const std::map<std::string, std::string> all = {{"category", "all"}};
  for (bool reuse : {false, true}) {
    SCOPED_TRACE(reuse);
    Outcomes out = Run(tasks, reuse, nullptr, /*max_batch_tokens=*/40, store);
    for (size_t k = 0; k < tasks.size(); ++k) {
      ASSERT_TRUE(out.at(k).ok()) << out.at(k).status();
      double nll = 0;
      int64_t tokens = 0;
      for (const std::string& t : texts) {
        auto ids = tokenizer_->Encode(t, BosPolicy::kOn);
        ASSERT_TRUE(ids.ok());
        HandEval(*ids, ctx, stride, hand_ivs[k], &nll, &tokens);
      }
      ExpectRelNear(nll, Get(*out.at(k), "nll_sum", all), 1e-5,
                    tasks[k].task_key);
      if (k > 0) {
        EXPECT_NE(Get(*out.at(k), "nll_sum", all),
                  Get(*out.at(0), "nll_sum", all));
      }
    }
  }
  Outcomes no_store = Run(tasks, true);
  EXPECT_TRUE(no_store.at(0).ok()) << no_store.at(0).status();
  for (size_t k : {1, 2}) {
    ASSERT_FALSE(no_store.at(k).ok());
    EXPECT_EQ(no_store.at(k).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(no_store.at(k).status().message(),
                HasSubstr("needs --artifact-root on the worker"));
  }
}

TEST_F(LmExecutorTest, EvalPerCategoryRowsForJsonl) {
  const json w = {{"context_length", 64}, {"bos", "off"}};
  Outcomes out = Run({Task("eval", "base", "probe.jsonl", w)}, true);
  ASSERT_TRUE(out.at(0).ok()) << out.at(0).status();
  const TaskOutput& o = *out.at(0);
  double sum = 0, tokens = 0;
  for (const char* c : {"factual", "math"}) {
    sum += Get(o, "nll_sum", {{"category", c}});
    tokens += Get(o, "tokens", {{"category", c}});
  }
  // The record without a category counts only in "all".
  auto ids = tokenizer_->Encode("Hello there, how are you", BosPolicy::kOff);
  ASSERT_TRUE(ids.ok());
  double nll = 0;
  int64_t n = 0;
  HandEval(*ids, 64, 64, {}, &nll, &n);
  EXPECT_EQ(Get(o, "tokens", {{"category", "all"}}), tokens + n);
  ExpectRelNear(sum + nll, Get(o, "nll_sum", {{"category", "all"}}), 1e-5,
                "all = sum of categories + uncategorised");
  EXPECT_EQ(Get(o, "bos", {}), 0.0);
}

TEST_F(LmExecutorTest, BosOnScoresOneMoreTokenPerRecord) {
  Outcomes on = Run(
      {Task("eval", "a", "prose.txt", {{"context_length", 16}, {"bos", "on"}})},
      true);
  Outcomes off = Run({Task("eval", "b", "prose.txt",
                           {{"context_length", 16}, {"bos", "off"}})},
                     true);
  ASSERT_TRUE(on.at(0).ok() && off.at(0).ok());
  const std::map<std::string, std::string> all = {{"category", "all"}};
  // Four records: with <bos> each record's first text token is scored too.
  EXPECT_EQ(Get(*on.at(0), "tokens", all), Get(*off.at(0), "tokens", all) + 4);
  EXPECT_EQ(Get(*on.at(0), "bos", {}), 1.0);
  EXPECT_EQ(Get(*off.at(0), "bos", {}), 0.0);
}

}  // namespace
}  // namespace sweepd
