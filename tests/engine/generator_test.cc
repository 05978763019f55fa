// Continuous batching (worker/engine/generator.h): every sample comes out
// exactly as if its prompt ran alone, whatever joins or leaves the batch;
// stop tokens, stop conditions and max_new_tokens end samples; a prompt that
// can never fit is named.
#include "worker/engine/generator.h"

#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/engine.h"

namespace sweepd::engine {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Engine> MakeEngine() {
  EngineOptions o;
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  o.random_weights = true;
  o.config_path =
      std::string(d != nullptr ? d : ".") + "/configs/models/gemma4-tiny.json";
  o.seed = 3;
  o.cpu_threads_per_rank = 1;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

std::vector<GenerationPrompt> Prompts() {
  std::vector<GenerationPrompt> ps;
  for (int p = 0; p < 5; ++p) {
    GenerationPrompt gp;
    for (int i = 0; i <= p + 2; ++i) gp.tokens.push_back(2 + 37 * p + i);
    gp.max_new_tokens = 6 + 3 * p;
    for (int s = 0; s < 3; ++s) {
      SamplingParams sp;
      sp.seed = SampleSeed(123, p, s);
      sp.top_k = s == 2 ? 20 : 0;
      gp.samples.push_back(sp);
    }
    ps.push_back(gp);
  }
  return ps;
}

using Key = std::pair<int, int>;

std::map<Key, GeneratedSample> RunAll(Engine& e,
                                      const std::vector<GenerationPrompt>& ps,
                                      int max_batch, GenerationStats* stats) {
  DecodeOptions o;
  o.max_sequences = max_batch;
  o.max_sequence_tokens = 40;
  o.page_size = 4;
  auto session = e.StartDecode(o);
  EXPECT_TRUE(session.ok()) << session.status();
  std::map<Key, GeneratedSample> out;
  GenerationOptions g;
  g.max_batch = max_batch;
  g.on_sample = [&](GeneratedSample s) {
    const Key k{s.prompt, s.sample};
    EXPECT_EQ(out.count(k), 0u);
    out[k] = std::move(s);
  };
  auto st = Generate(session->get(), ps, g);
  EXPECT_TRUE(st.ok()) << st.status();
  if (stats != nullptr && st.ok()) *stats = *st;
  return out;
}

TEST(GeneratorTest, ContinuousBatchingGivesEachPromptItsOwnSamples) {
  std::unique_ptr<Engine> e = MakeEngine();
  const auto ps = Prompts();
  GenerationStats stats;
  // 15 samples through a batch of 4: prompts join in parts as others finish.
  const auto batched = RunAll(*e, ps, 4, &stats);
  ASSERT_EQ(batched.size(), 15u);
  EXPECT_LE(stats.max_live, 4);
  EXPECT_GT(stats.prefills, 5);  // some prompts were split
  for (int p = 0; p < 5; ++p) {
    const auto alone = RunAll(*e, {ps[p]}, 3, nullptr);
    for (int s = 0; s < 3; ++s) {
      const GeneratedSample& a = alone.at({0, s});
      const GeneratedSample& b = batched.at({p, s});
      EXPECT_EQ(a.tokens, b.tokens) << "prompt " << p << " sample " << s;
      EXPECT_EQ(b.tokens.size(), static_cast<size_t>(ps[p].max_new_tokens));
      EXPECT_EQ(b.finish, FinishReason::kLength);
      double sum = 0;
      for (float lp : b.logprobs) sum += lp;
      EXPECT_NEAR(b.logprob_sum, sum, 1e-9);
    }
  }
}

TEST(GeneratorTest, StopTokensAndStopConditionsEndSamples) {
  std::unique_ptr<Engine> e = MakeEngine();
  auto ps = Prompts();
  ps.resize(1);
  ps[0].max_new_tokens = 12;
  const auto free_run = RunAll(*e, ps, 3, nullptr);
  const std::vector<int32_t>& t = free_run.at({0, 0}).tokens;
  ps[0].stop_tokens = {t[4]};
  const auto stopped = RunAll(*e, ps, 3, nullptr);
  const GeneratedSample& s = stopped.at({0, 0});
  EXPECT_EQ(s.finish, FinishReason::kStopToken);
  EXPECT_LE(s.tokens.size(), 5u);
  EXPECT_EQ(s.tokens.back(), t[4]);

  DecodeOptions o;
  o.max_sequences = 3;
  o.max_sequence_tokens = 40;
  auto session = e->StartDecode(o);
  ASSERT_TRUE(session.ok());
  GenerationOptions g;
  std::map<Key, GeneratedSample> out;
  g.should_stop = [](int, int, const std::vector<int32_t>& toks) {
    return toks.size() == 3;
  };
  g.on_sample = [&](GeneratedSample s) { out[{s.prompt, s.sample}] = s; };
  ps[0].stop_tokens.clear();
  ASSERT_TRUE(Generate(session->get(), ps, g).ok());
  for (const auto& [k, v] : out) {
    EXPECT_EQ(v.tokens.size(), 3u);
    EXPECT_EQ(v.finish, FinishReason::kStopCondition);
  }
}

TEST(GeneratorTest, APromptThatNeverFitsIsNamed) {
  std::unique_ptr<Engine> e = MakeEngine();
  DecodeOptions o;
  o.max_sequences = 2;
  o.max_sequence_tokens = 16;
  o.max_cached_tokens = 8;
  o.page_size = 4;
  auto session = e->StartDecode(o);
  ASSERT_TRUE(session.ok());
  GenerationPrompt gp;
  gp.tokens.assign(12, 5);
  gp.samples.resize(1);
  gp.max_new_tokens = 200;
  auto st = Generate(session->get(), {gp}, GenerationOptions());
  EXPECT_THAT(st.status().message(), HasSubstr("prompt 0"));
}

}  // namespace
}  // namespace sweepd::engine
