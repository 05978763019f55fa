// Token generation through Engine::StartDecode: greedy decoding equals the
// argmax of a full recomputation on the growing sequence (past the sliding
// window, with every intervention kind, at TP 1/2/4 on CPU); forked samples
// share the prompt; a sequence's samples do not depend on the batch.
#include "worker/engine/decode.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/decode_test_util.h"
#include "worker/engine/engine.h"

namespace sweepd::engine {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Engine> MakeEngine(int tp) {
  EngineOptions o = TinyEngineOptions();
  o.tp_size = tp;
  o.cpu_threads_per_rank = 1;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

void ExpectGreedyMatchesRecompute(
    int tp, const std::vector<Intervention>& iv, int page_size,
    DecodeAttention mode = DecodeAttention::kAuto) {
  std::unique_ptr<Engine> e = MakeEngine(tp);
  DecodeOptions o;
  o.decode_attention = mode;
  o.interventions = iv;
  o.max_sequences = 2;
  o.max_sequence_tokens = 64;
  o.page_size = page_size;
  auto session = e->StartDecode(o);
  ASSERT_TRUE(session.ok()) << session.status();
  std::vector<int32_t> seq = {2, 17, 300, 45, 9};
  auto first = (*session)->AddPrompt(seq, {Greedy()});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 1u);
  std::vector<DecodedToken> step = *first;
  // The tiny model's window is 8: 20 new tokens decode well past it.
  for (int i = 0; i < 20; ++i) {
    const std::vector<float> z = LastLogits(*e, seq, iv);
    ASSERT_EQ(step[0].token, Argmax(z))
        << "token " << i << " tp " << tp << " z[got] " << z[step[0].token]
        << " z[argmax] " << z[Argmax(z)] << " lp " << step[0].logprob
        << " want lp " << LogSoftmaxAt(z, step[0].token);
    EXPECT_NEAR(step[0].logprob, LogSoftmaxAt(z, step[0].token), 2e-4);
    seq.push_back(step[0].token);
    auto next = (*session)->Step();
    ASSERT_TRUE(next.ok()) << next.status();
    step = *next;
  }
}

TEST(DecodeTest, GreedyMatchesFullRecomputePastTheWindow) {
  for (int tp : {1, 2, 4}) ExpectGreedyMatchesRecompute(tp, {}, 4);
}

TEST(DecodeTest, GreedyMatchesFullRecomputeWithInterventions) {
  const std::vector<Intervention> iv = {
      Intervention::Skip(1), Intervention::Zero(2), Intervention::Reinit(3, 99),
      Intervention::MaskHeads(5, {1, 2}), Intervention::MaskHeads(4, {0})};
  for (int tp : {1, 2, 4}) ExpectGreedyMatchesRecompute(tp, iv, 3);
}

// The fused paged attention (kernels/paged_decode_attention.h; on CPU its
// reference implementation) through the session: the flat plan's rows,
// windows, K = V layers and interventions.
TEST(DecodeTest, FusedAttentionGreedyMatchesFullRecompute) {
  for (int tp : {1, 2}) {
    ExpectGreedyMatchesRecompute(tp, {}, 4, DecodeAttention::kFused);
  }
  const std::vector<Intervention> iv = {
      Intervention::Skip(1), Intervention::Zero(2), Intervention::Reinit(3, 99),
      Intervention::MaskHeads(5, {1, 2})};
  ExpectGreedyMatchesRecompute(1, iv, 3, DecodeAttention::kFused);
}

// Three forked samples and a second prompt, flat plan, 24 steps past the
// window: the fused attention draws the ATen path's tokens with its
// log-probabilities within 1e-4.
TEST(DecodeTest, FusedAttentionEqualsTheAtenOps) {
  std::unique_ptr<Engine> e = MakeEngine(1);
  ASSERT_NE(e, nullptr);
  auto run = [&](DecodeAttention mode) { return DecodeForkedFlat(*e, mode); };
  const auto aten = run(DecodeAttention::kAten);
  const auto fused = run(DecodeAttention::kFused);
  ASSERT_EQ(aten.size(), fused.size());
  for (size_t i = 0; i < aten.size(); ++i) {
    EXPECT_EQ(aten[i].token, fused[i].token) << i;
    EXPECT_NEAR(aten[i].logprob, fused[i].logprob, 1e-4) << i;
  }
}

TEST(DecodeTest, ForkedGreedySamplesAreIdenticalAndShareThePrompt) {
  std::unique_ptr<Engine> e = MakeEngine(1);
  DecodeOptions o;
  o.max_sequences = 4;
  o.max_sequence_tokens = 40;
  o.page_size = 4;
  auto session = e->StartDecode(o);
  ASSERT_TRUE(session.ok()) << session.status();
  auto first =
      (*session)->AddPrompt({2, 5, 6, 7, 8, 9}, {Greedy(), Greedy(), Greedy()});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 3u);
  std::vector<std::vector<int32_t>> got(3);
  for (int i = 0; i < 3; ++i) got[i].push_back((*first)[i].token);
  for (int s = 0; s < 12; ++s) {
    auto next = (*session)->Step();
    ASSERT_TRUE(next.ok()) << next.status();
    ASSERT_EQ(next->size(), 3u);
    for (int i = 0; i < 3; ++i) got[i].push_back((*next)[i].token);
  }
  EXPECT_EQ(got[0], got[1]);
  EXPECT_EQ(got[0], got[2]);
  EXPECT_EQ((*session)->live_sequences(), 3);
  (*session)->Release((*first)[1].sequence);
  EXPECT_EQ((*session)->live_sequences(), 2);
}

// Runs `prompt` with two seeded samples at temperature 1, optionally with
// another prompt's samples in the batch from step 3 on.
std::vector<std::vector<int32_t>> Sample(Engine& e, bool crowd, int tp_note) {
  (void)tp_note;
  DecodeOptions o;
  o.max_sequences = 8;
  o.max_sequence_tokens = 40;
  o.page_size = 4;
  auto session = e.StartDecode(o);
  EXPECT_TRUE(session.ok()) << session.status();
  std::vector<SamplingParams> params(2);
  params[0].seed = SampleSeed(77, 0, 0);
  params[1].seed = SampleSeed(77, 0, 1);
  auto first = (*session)->AddPrompt({2, 40, 41, 42}, params);
  EXPECT_TRUE(first.ok()) << first.status();
  std::vector<std::vector<int32_t>> got(2);
  const int64_t a = (*first)[0].sequence, b = (*first)[1].sequence;
  got[0].push_back((*first)[0].token);
  got[1].push_back((*first)[1].token);
  for (int s = 0; s < 15; ++s) {
    if (crowd && s == 3) {
      std::vector<SamplingParams> other(3);
      for (int i = 0; i < 3; ++i) other[i].seed = SampleSeed(78, 1, i);
      EXPECT_TRUE(
          (*session)->AddPrompt({2, 100, 101, 102, 103, 104, 105}, other).ok());
    }
    auto next = (*session)->Step();
    EXPECT_TRUE(next.ok()) << next.status();
    for (const DecodedToken& t : *next) {
      if (t.sequence == a) got[0].push_back(t.token);
      if (t.sequence == b) got[1].push_back(t.token);
    }
  }
  return got;
}

TEST(DecodeTest, SamplesDependOnTheSeedNotOnTheBatch) {
  std::unique_ptr<Engine> e = MakeEngine(1);
  const auto alone = Sample(*e, false, 1);
  const auto crowded = Sample(*e, true, 1);
  EXPECT_EQ(alone, crowded);
  EXPECT_NE(alone[0], alone[1]);  // different seeds, different samples
  std::unique_ptr<Engine> e2 = MakeEngine(2);
  EXPECT_EQ(Sample(*e2, true, 2), alone);
}

// Samples forked from one prompt attend to the prompt's shared pages as one
// GEMM per cluster and to their own pages separately, merged by log-sum-exp
// (decode_rows.h): each must draw what it draws decoded alone, where its
// prompt is not shared.
TEST(DecodeTest, ForkedSamplesEqualEachSampleDecodedAlone) {
  for (int tp : {1, 2}) {
    std::unique_ptr<Engine> e = MakeEngine(tp);
    ASSERT_NE(e, nullptr);
    DecodeOptions o;
    o.max_sequences = 8;
    o.max_sequence_tokens = 48;
    o.page_size = 4;
    const std::vector<int32_t> prompt = {2, 40, 41, 42, 43, 44, 45, 46, 47, 48};
    std::vector<SamplingParams> params(3);
    for (int i = 0; i < 3; ++i) params[i].seed = SampleSeed(91, 0, i);
    auto run = [&](const std::vector<SamplingParams>& p) {
      auto session = e->StartDecode(o);
      EXPECT_TRUE(session.ok()) << session.status();
      auto first = (*session)->AddPrompt(prompt, p);
      EXPECT_TRUE(first.ok()) << first.status();
      std::map<int64_t, size_t> index;
      std::vector<std::vector<DecodedToken>> got(p.size());
      for (size_t i = 0; i < p.size(); ++i) {
        index[(*first)[i].sequence] = i;
        got[i].push_back((*first)[i]);
      }
      for (int s = 0; s < 24; ++s) {  // well past the window of 8
        auto next = (*session)->Step();
        EXPECT_TRUE(next.ok()) << next.status();
        for (const DecodedToken& t : *next) got[index[t.sequence]].push_back(t);
      }
      return got;
    };
    // Shared-prefix attention always on, then never (a flat plan: every row
    // reads its own pages); each sample alone is flat.
    o.shared_attention_min_keys = 0;
    const auto together = run(params);
    o.shared_attention_min_keys = int64_t{1} << 40;
    const auto together_flat = run(params);
    for (int i = 0; i < 3; ++i) {
      const auto alone = run({params[i]});
      ASSERT_EQ(alone[0].size(), together_flat[i].size());
      for (size_t t = 0; t < alone[0].size(); ++t) {
        EXPECT_EQ(alone[0][t].token, together_flat[i][t].token)
            << "flat, tp " << tp << " sample " << i << " step " << t;
      }
      ASSERT_EQ(alone[0].size(), together[i].size());
      for (size_t t = 0; t < alone[0].size(); ++t) {
        EXPECT_EQ(alone[0][t].token, together[i][t].token)
            << "tp " << tp << " sample " << i << " step " << t;
        EXPECT_NEAR(alone[0][t].logprob, together[i][t].logprob, 1e-4)
            << "tp " << tp << " sample " << i << " step " << t;
      }
    }
  }
}

TEST(DecodeTest, BadInputsAreNamed) {
  std::unique_ptr<Engine> e = MakeEngine(1);
  DecodeOptions o;
  o.max_sequences = 2;
  o.max_sequence_tokens = 8;
  auto session = e->StartDecode(o);
  ASSERT_TRUE(session.ok());
  EXPECT_THAT((*session)->AddPrompt({}, {Greedy()}).status().message(),
              HasSubstr("empty"));
  EXPECT_THAT((*session)->AddPrompt({2, 9999}, {Greedy()}).status().message(),
              HasSubstr("outside the vocabulary"));
  EXPECT_THAT((*session)
                  ->AddPrompt({1, 2, 3, 4, 5, 6, 7, 8}, {Greedy()})
                  .status()
                  .message(),
              HasSubstr("max_sequence_tokens"));
  SamplingParams bad;
  bad.top_p = 0;
  EXPECT_THAT((*session)->AddPrompt({2}, {bad}).status().message(),
              HasSubstr("top_p"));
  EXPECT_EQ((*session)
                ->AddPrompt({2}, {Greedy(), Greedy(), Greedy()})
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  DecodeOptions bad_iv;
  bad_iv.interventions = {Intervention::Skip(1000)};
  EXPECT_FALSE(e->StartDecode(bad_iv).ok());
  DecodeOptions bad_splits;
  bad_splits.attention_key_splits = -1;
  EXPECT_THAT(e->StartDecode(bad_splits).status().message(),
              HasSubstr("attention_key_splits"));
  // A sequence at max_sequence_tokens must be released first.
  auto first = (*session)->AddPrompt({2, 3, 4, 5, 6, 7, 8}, {Greedy()});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*session)->Step().ok());
  EXPECT_EQ((*session)->Step().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Prompts prefilled together (right-padded to the longest) continue exactly
// as each prompt prefilled alone.
TEST(DecodeTest, BatchedPrefillEqualsPrefillAlone) {
  std::unique_ptr<Engine> e = MakeEngine(1);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(DecodeThreePromptsGreedy(*e, true),
            DecodeThreePromptsGreedy(*e, false));
}

}  // namespace
}  // namespace sweepd::engine
