// Prefix reuse in the eval / probe executor on a random tiny Gemma 4 model:
// prefix reuse on == off for every intervention kind, with fewer
// layer-forwards; baseline probe tasks sharing the eval pass of their shard
// equal the probe run alone, and fall back to their own pass when the prompts
// are not prefixes of the eval windows or the probe has interventions.
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/jobs/executor_test_env.h"
#include "tests/jobs/lm_executor_fixture.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"

namespace sweepd {
namespace {

using json = nlohmann::json;

using jobs_test::ExpectRelNear;
using jobs_test::Flatten;
using jobs_test::LmExecutorTest;
using jobs_test::Outcomes;
using jobs_test::SourceDir;

// The metric row name + labels (jobs_test::Metric).
constexpr auto& Get = jobs_test::Metric;

TEST_F(LmExecutorTest, ReuseOnEqualsReuseOffForEveryIntervention) {
  const json w = {{"context_length", 12}, {"stride", 5}, {"bos", "on"}};
  const json pw = {{"context_length", 16}, {"bos", "on"}};
  std::vector<TaskInput> tasks = {
      Task("eval", "base", "prose.txt", w),
      Task("eval", "skip2", "prose.txt", w, {{{"skip", {{"layers", "2"}}}}}),
      Task("eval", "zero", "prose.txt", w, {{{"zero", {{"layers", "3,5"}}}}}),
      Task("eval", "reinit", "prose.txt", w,
           {{{"reinit", {{"layers", "4"}, {"seed", "7"}}}}}),
      Task("eval", "heads", "prose.txt", w,
           {{{"mask_heads", {{"layer", 1}, {"heads", {0, 2}}}}}}),
      Task("eval", "skip0", "prose.txt", w,
           {{{"skip", {{"layers", "0:6:2"}}}}}),
      Task("probe", "pbase", "probe.jsonl", pw),
      Task("probe", "pskip", "probe.jsonl", pw,
           {{{"skip", {{"layers", "3"}}}}}),
      Task("probe", "pheads", "probe.jsonl", pw,
           {{{"mask_heads", {{"layer", 4}, {"heads", {1}}}}}}),
  };
  const int64_t f0 = backend_->total_layer_forwards();
  Outcomes off = Run(tasks, /*reuse=*/false);
  const int64_t f1 = backend_->total_layer_forwards();
  Outcomes on = Run(tasks, /*reuse=*/true);
  const int64_t f2 = backend_->total_layer_forwards();
  EXPECT_LT(f2 - f1, f1 - f0);
  for (size_t i = 0; i < tasks.size(); ++i) {
    ASSERT_TRUE(off.at(i).ok()) << off.at(i).status();
    ASSERT_TRUE(on.at(i).ok()) << on.at(i).status();
    auto a = Flatten(*off.at(i));
    auto b = Flatten(*on.at(i));
    ASSERT_EQ(a.size(), b.size()) << tasks[i].task_key;
    for (const auto& [key, value] : a) {
      ASSERT_EQ(b.count(key), 1u) << key;
      ExpectRelNear(value, b.at(key), 1e-6, tasks[i].task_key + " " + key);
    }
  }
  // The interventions changed the results (the comparison is not vacuous).
  EXPECT_NE(Get(*on.at(0), "nll_sum", {{"category", "all"}}),
            Get(*on.at(1), "nll_sum", {{"category", "all"}}));
  EXPECT_NE(Get(*on.at(6), "bi", {{"category", "all"}, {"layer", "3"}}),
            Get(*on.at(7), "bi", {{"category", "all"}, {"layer", "3"}}));
}

// Outcomes and layer-forwards of three runs on one shard: the baseline probe
// task alone, the eval tasks (baseline, skip 2) alone, and all three as one
// group.
struct SharedRuns {
  Outcomes probe_alone, eval_alone, group;
  int64_t probe_forwards = 0, eval_forwards = 0, group_forwards = 0;
};

class LmExecutorSharedPassTest : public LmExecutorTest {
 protected:
  // The longest prompt of `data` in tokens (BOS on).
  int MaxPromptTokens(const std::vector<std::string>& prompts) {
    int p = 0;
    for (const std::string& prompt : prompts) {
      auto ids = tokenizer_->Encode(prompt, BosPolicy::kOn);
      EXPECT_TRUE(ids.ok()) << ids.status();
      if (ids.ok()) p = std::max(p, static_cast<int>(ids->size()));
    }
    return p;
  }

  SharedRuns RunAll(const std::string& data, const json& eval_w,
                    const json& probe_w) {
    const json skip = {{{"skip", {{"layers", "2"}}}}};
    SharedRuns r;
    const int64_t f0 = backend_->total_layer_forwards();
    r.probe_alone = Run({Task("probe", "p", data, probe_w)}, true);
    const int64_t f1 = backend_->total_layer_forwards();
    r.eval_alone = Run({Task("eval", "base", data, eval_w),
                        Task("eval", "skip", data, eval_w, skip)},
                       true);
    const int64_t f2 = backend_->total_layer_forwards();
    r.group = Run({Task("eval", "base", data, eval_w),
                   Task("eval", "skip", data, eval_w, skip),
                   Task("probe", "p", data, probe_w)},
                  true);
    const int64_t f3 = backend_->total_layer_forwards();
    r.probe_forwards = f1 - f0;
    r.eval_forwards = f2 - f1;
    r.group_forwards = f3 - f2;
    return r;
  }

  // Probe metrics of the group equal the probe task run alone: counts and
  // ranks exactly, BI and norms to 1e-6 relative; eval metrics unchanged.
  void ExpectSameResults(const SharedRuns& r) {
    for (size_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(r.group.at(i).ok()) << r.group.at(i).status();
    }
    ASSERT_TRUE(r.probe_alone.at(0).ok()) << r.probe_alone.at(0).status();
    const auto alone = Flatten(*r.probe_alone.at(0));
    const auto shared = Flatten(*r.group.at(2));
    ASSERT_EQ(alone.size(), shared.size());
    int lens_rows = 0;
    for (const auto& [key, value] : alone) {
      ASSERT_EQ(shared.count(key), 1u) << key;
      if (key.rfind("bi|", 0) == 0 || key.rfind("resid_norm|", 0) == 0) {
        ExpectRelNear(value, shared.at(key), 1e-6, "probe " + key);
      } else {
        EXPECT_EQ(value, shared.at(key)) << "probe " << key;
        if (key.rfind("lens_rank|", 0) == 0) ++lens_rows;
      }
    }
    const int N = engine_->config().num_hidden_layers;
    EXPECT_EQ(lens_rows, 3 * N);  // all, factual, math
    for (size_t i = 0; i < 2; ++i) {
      ASSERT_TRUE(r.eval_alone.at(i).ok()) << r.eval_alone.at(i).status();
      const auto a = Flatten(*r.eval_alone.at(i));
      const auto b = Flatten(*r.group.at(i));
      ASSERT_EQ(a.size(), b.size());
      for (const auto& [key, value] : a) {
        ASSERT_EQ(b.count(key), 1u) << key;
        ExpectRelNear(value, b.at(key), 1e-6, "eval " + key);
      }
    }
  }

  const std::vector<std::string> shared_prompts_ = {
      "The capital of France is", "Two plus two is", "The capital of Spain is",
      "Hello there, how", "Ten minus three is"};
};

TEST_F(LmExecutorSharedPassTest, ProbeTakesItsMetricsFromTheEvalPass) {
  const int N = engine_->config().num_hidden_layers;
  const int ctx = MaxPromptTokens(shared_prompts_) + 4;
  const json w = {{"context_length", ctx}, {"bos", "on"}};
  const SharedRuns r = RunAll("shared.jsonl", w, w);
  ExpectSameResults(r);
  ASSERT_GT(r.probe_forwards, 0);
  // The probe task alone runs one unablated pass (N layers per batch).
  EXPECT_EQ(r.probe_forwards % N, 0);
  // Before: eval streams + the probe's own unablated pass. Now: the eval
  // streams only.
  EXPECT_EQ(r.group_forwards, r.eval_forwards);
  EXPECT_LT(r.group_forwards, r.eval_forwards + r.probe_forwards);
}

TEST_F(LmExecutorSharedPassTest, PromptLongerThanContextFallsBackToProbePass) {
  const int p = MaxPromptTokens(shared_prompts_);
  // The eval windows hold every text; the probe would cut the longest prompt.
  const json ew = {{"context_length", p + 4}, {"bos", "on"}};
  const json pw = {{"context_length", p - 1}, {"bos", "on"}};
  const SharedRuns r = RunAll("shared.jsonl", ew, pw);
  ExpectSameResults(r);
  EXPECT_EQ(r.group_forwards, r.eval_forwards + r.probe_forwards);
}

TEST_F(LmExecutorSharedPassTest, TextNotContinuingWithTargetFallsBack) {
  const json w = {{"context_length", 32}, {"bos", "on"}};
  const SharedRuns r = RunAll("mismatch.jsonl", w, w);
  ASSERT_TRUE(r.group.at(2).ok()) << r.group.at(2).status();
  ASSERT_TRUE(r.probe_alone.at(0).ok()) << r.probe_alone.at(0).status();
  const auto alone = Flatten(*r.probe_alone.at(0));
  const auto shared = Flatten(*r.group.at(2));
  ASSERT_EQ(alone.size(), shared.size());
  for (const auto& [key, value] : alone) {
    ASSERT_EQ(shared.count(key), 1u) << key;
    ExpectRelNear(value, shared.at(key), 1e-6, key);
  }
  EXPECT_EQ(r.group_forwards, r.eval_forwards + r.probe_forwards);
}

TEST_F(LmExecutorSharedPassTest, ProbeWithInterventionsKeepsItsOwnPass) {
  const int ctx = MaxPromptTokens(shared_prompts_) + 4;
  const json w = {{"context_length", ctx}, {"bos", "on"}};
  const json skip3 = {{{"skip", {{"layers", "3"}}}}};
  Outcomes alone = Run({Task("probe", "p", "shared.jsonl", w),
                        Task("probe", "pskip", "shared.jsonl", w, skip3)},
                       true);
  Outcomes group = Run({Task("eval", "base", "shared.jsonl", w),
                        Task("probe", "p", "shared.jsonl", w),
                        Task("probe", "pskip", "shared.jsonl", w, skip3)},
                       true);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(alone.at(i).ok()) << alone.at(i).status();
    ASSERT_TRUE(group.at(i + 1).ok()) << group.at(i + 1).status();
    const auto a = Flatten(*alone.at(i));
    const auto b = Flatten(*group.at(i + 1));
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [key, value] : a) {
      ASSERT_EQ(b.count(key), 1u) << key;
      ExpectRelNear(value, b.at(key), 1e-6, key);
    }
  }
  EXPECT_NE(Get(*group.at(1), "bi", {{"category", "all"}, {"layer", "3"}}),
            Get(*group.at(2), "bi", {{"category", "all"}, {"layer", "3"}}));
}

TEST_F(LmExecutorSharedPassTest, LayerStudyProbeSetSharesThePass) {
  // configs/sweeps/layer_study.yaml: eval and probe on a shard of the probe
  // set, windowing {context_length 64, bos on}.
  const json w = {{"context_length", 64}, {"bos", "on"}};
  auto task = [&](const std::string& kind, const std::string& key) {
    TaskInput t = Task(kind, key, "unused", w);
    Job(t).data.path = SourceDir() + "/configs/data/probe.jsonl";
    Job(t).data.shard_index = 1;
    Job(t).data.num_shards = 4;
    return t;
  };
  const int64_t f0 = backend_->total_layer_forwards();
  Outcomes eval_alone = Run({task("eval", "base")}, true);
  const int64_t f1 = backend_->total_layer_forwards();
  Outcomes probe_alone = Run({task("probe", "p")}, true);
  const int64_t f2 = backend_->total_layer_forwards();
  Outcomes group = Run({task("eval", "base"), task("probe", "p")}, true);
  const int64_t f3 = backend_->total_layer_forwards();
  ASSERT_GT(f2 - f1, 0);
  EXPECT_EQ(f3 - f2, f1 - f0);
  ASSERT_TRUE(probe_alone.at(0).ok()) << probe_alone.at(0).status();
  ASSERT_TRUE(group.at(1).ok()) << group.at(1).status();
  const auto a = Flatten(*probe_alone.at(0));
  const auto b = Flatten(*group.at(1));
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [key, value] : a) {
    ASSERT_EQ(b.count(key), 1u) << key;
    ExpectRelNear(value, b.at(key), 1e-6, key);
  }
  EXPECT_GT(Get(*group.at(1), "prompts", {{"category", "all"}}), 50);
}

}  // namespace
}  // namespace sweepd
