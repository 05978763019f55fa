// Probe metrics of the eval / probe executor on a random tiny Gemma 4 model:
// per-category, per-layer aggregates == a hand aggregation of the engine's
// LayerStats from one Engine::Forward per prompt.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/jobs/executor_test_env.h"
#include "tests/jobs/lm_executor_fixture.h"
#include "worker/engine/engine.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"

namespace sweepd {
namespace {

using jobs_test::ExpectRelNear;
using jobs_test::LmExecutorTest;
using jobs_test::Outcomes;

// The metric row name + labels (jobs_test::Metric).
constexpr auto& Get = jobs_test::Metric;

TEST_F(LmExecutorTest, ProbeEqualsHandAggregationOfLayerStats) {
  const int N = engine_->config().num_hidden_layers;
  Outcomes out = Run({Task("probe", "p", "probe.jsonl",
                           {{"context_length", 32}, {"bos", "on"}})},
                     true);
  ASSERT_TRUE(out.at(0).ok()) << out.at(0).status();
  const TaskOutput& o = *out.at(0);
  struct Rec {
    std::string category, prompt, target;
  };
  const std::vector<Rec> recs = {
      {"factual", "The capital of France is", " Paris"},
      {"math", "Two plus two is", " four"},
      {"factual", "The capital of Spain is", " Madrid"},
      {"", "Hello there, how", " are"},
      {"math", "A record without a prompt has no rank but enters BI.", ""}};
  struct Agg {
    std::vector<double> bi, norm, rank, top1;
    double decision = 0, tokens = 0, prompts = 0;
  };
  std::map<std::string, Agg> agg;
  for (const Rec& r : recs) {
    auto ids = tokenizer_->Encode(r.prompt, BosPolicy::kOn);
    ASSERT_TRUE(ids.ok());
    engine::ForwardRequest req;
    req.tokens = *ids;
    req.batch = 1;
    req.seq = static_cast<int64_t>(ids->size());
    req.targets.assign(ids->size(), -1);
    if (!r.target.empty()) {
      auto t = tokenizer_->Encode(r.target, BosPolicy::kOff);
      ASSERT_TRUE(t.ok());
      req.targets.back() = (*t)[0];
    }
    req.layer_stats = true;
    auto res = engine_->Forward(req);
    ASSERT_TRUE(res.ok()) << res.status();
    std::vector<std::string> cats = {"all"};
    if (!r.category.empty()) cats.push_back(r.category);
    for (const std::string& c : cats) {
      Agg& a = agg[c];
      a.bi.resize(N);
      a.norm.resize(N);
      a.rank.resize(N);
      a.top1.resize(N);
      a.tokens += req.seq;
      int decision = N;
      for (int L = 0; L < N; ++L) {
        const engine::LayerStats& st = res->layer_stats[L];
        for (int64_t p = 0; p < req.seq; ++p) {
          a.bi[L] += st.block_influence[p];
          a.norm[L] += st.resid_out_norm[p];
        }
        if (!r.target.empty()) {
          const int64_t rank = st.target_rank[req.seq - 1];
          a.rank[L] += rank;
          a.top1[L] += rank == 0;
          if (rank == 0 && decision == N) decision = L;
        }
      }
      if (!r.target.empty()) {
        a.prompts += 1;
        a.decision += decision;
      }
    }
  }
  ASSERT_EQ(agg.size(), 3u);
  for (const auto& [c, a] : agg) {
    const std::map<std::string, std::string> cat = {{"category", c}};
    EXPECT_EQ(Get(o, "tokens", cat), a.tokens) << c;
    EXPECT_EQ(Get(o, "prompts", cat), a.prompts) << c;
    ExpectRelNear(a.decision / a.prompts, Get(o, "decision_layer", cat), 1e-9,
                  c + " decision_layer");
    for (int L = 0; L < N; ++L) {
      std::map<std::string, std::string> l = cat;
      l["layer"] = std::to_string(L);
      ExpectRelNear(a.bi[L] / a.tokens, Get(o, "bi", l), 1e-5, c + " bi");
      ExpectRelNear(a.norm[L] / a.tokens, Get(o, "resid_norm", l), 1e-5,
                    c + " resid_norm");
      ExpectRelNear(a.rank[L] / a.prompts, Get(o, "lens_rank", l), 1e-9,
                    c + " lens_rank");
      ExpectRelNear(a.top1[L] / a.prompts, Get(o, "lens_top1", l), 1e-9,
                    c + " lens_top1");
    }
  }
}

}  // namespace
}  // namespace sweepd
