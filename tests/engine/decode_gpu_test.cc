// Token generation on CUDA (tiny Gemma-4-shaped model): float32 greedy decode
// equals the argmax of a full recomputation on the growing sequence past the
// sliding window, with interventions; bfloat16 decode agrees with its own
// recomputation's log-probabilities; with the fused paged attention
// (DecodeAttention::kAuto on CUDA) and with the ATen ops.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/engine/decode_test_util.h"
#include "worker/engine/decode.h"
#include "worker/engine/engine.h"

namespace sweepd::engine {
namespace {

std::unique_ptr<Engine> MakeEngine(DType dtype) {
  EngineOptions o = TinyEngineOptions();
  o.device = "cuda";
  o.dtype = dtype;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

void Check(DType dtype, const std::vector<Intervention>& iv,
           DecodeAttention mode = DecodeAttention::kAuto) {
  std::unique_ptr<Engine> e = MakeEngine(dtype);
  ASSERT_NE(e, nullptr);
  DecodeOptions o;
  o.decode_attention = mode;
  o.interventions = iv;
  o.max_sequences = 2;
  o.max_sequence_tokens = 64;
  o.page_size = 4;
  auto session = e->StartDecode(o);
  ASSERT_TRUE(session.ok()) << session.status();
  const SamplingParams greedy = Greedy();
  std::vector<int32_t> seq = {2, 17, 300, 45, 9};
  auto step = (*session)->AddPrompt(seq, {greedy});
  ASSERT_TRUE(step.ok()) << step.status();
  for (int i = 0; i < 20; ++i) {
    const std::vector<float> z = LastLogits(*e, seq, iv);
    const int32_t t = (*step)[0].token;
    const int32_t best = Argmax(z);
    if (dtype == DType::kFloat32) {
      ASSERT_EQ(t, best) << "token " << i;
      EXPECT_NEAR((*step)[0].logprob, LogSoftmaxAt(z, t), 1e-3);
    } else {
      // bf16: the cache holds rounded K/V; the pick is within rounding of
      // the best and its log-probability close to the recomputed one.
      EXPECT_NEAR(z[t], z[best], 0.05) << "token " << i;
      EXPECT_NEAR((*step)[0].logprob, LogSoftmaxAt(z, t), 0.05);
    }
    seq.push_back(t);
    step = (*session)->Step();
    ASSERT_TRUE(step.ok()) << step.status();
  }
}

TEST(DecodeGpuTest, Float32GreedyMatchesRecompute) {
  Check(DType::kFloat32, {});
  Check(DType::kFloat32,
        {Intervention::Skip(1), Intervention::Zero(2),
         Intervention::Reinit(3, 9), Intervention::MaskHeads(5, {1})});
}

// bf16 decode (CUDA graphs on) with every GEMM of <= 32 rows through the
// skinny GEMM kernel (EngineOptions::skinny_gemm) against a recomputation
// through cuBLAS by a second engine of the same seed.
TEST(DecodeGpuTest, SkinnyGemmDecodeMatchesTheCublasRecompute) {
  EngineOptions o = TinyEngineOptions();
  o.device = "cuda";
  o.dtype = DType::kBFloat16;
  o.skinny_gemm = true;
  auto skinny = Engine::Create(o);
  ASSERT_TRUE(skinny.ok()) << skinny.status();
  o.skinny_gemm = false;
  auto cublas = Engine::Create(o);
  ASSERT_TRUE(cublas.ok()) << cublas.status();
  DecodeOptions d;
  d.max_sequences = 2;
  d.max_sequence_tokens = 64;
  d.page_size = 4;
  auto session = (*skinny)->StartDecode(d);
  ASSERT_TRUE(session.ok()) << session.status();
  std::vector<int32_t> seq = {2, 17, 300, 45, 9};
  auto step = (*session)->AddPrompt(seq, {Greedy()});
  ASSERT_TRUE(step.ok()) << step.status();
  for (int i = 0; i < 20; ++i) {
    const std::vector<float> z = LastLogits(**cublas, seq, {});
    const int32_t t = (*step)[0].token;
    EXPECT_NEAR(z[t], z[Argmax(z)], 0.05) << "token " << i;
    EXPECT_NEAR((*step)[0].logprob, LogSoftmaxAt(z, t), 0.05) << "token " << i;
    seq.push_back(t);
    step = (*session)->Step();
    ASSERT_TRUE(step.ok()) << step.status();
  }
}

TEST(DecodeGpuTest, BFloat16MatchesItsRecompute) {
  Check(DType::kBFloat16, {});
}

TEST(DecodeGpuTest, AtenAttentionMatchesRecompute) {
  Check(DType::kFloat32, {}, DecodeAttention::kAten);
  Check(DType::kBFloat16, {}, DecodeAttention::kAten);
}

// Forked samples and a second prompt, flat plan, past the window: the fused
// paged attention draws the ATen ops' tokens (float32) with log-probabilities
// within 1e-3.
TEST(DecodeGpuTest, FusedAttentionEqualsTheAtenOps) {
  std::unique_ptr<Engine> e = MakeEngine(DType::kFloat32);
  ASSERT_NE(e, nullptr);
  auto run = [&](DecodeAttention mode, bool graphs = false) {
    return DecodeForkedFlat(*e, mode, graphs);
  };
  const auto aten = run(DecodeAttention::kAten);
  const auto fused = run(DecodeAttention::kAuto);
  ASSERT_EQ(aten.size(), fused.size());
  for (size_t i = 0; i < aten.size(); ++i) {
    EXPECT_EQ(aten[i].token, fused[i].token) << i;
    EXPECT_NEAR(aten[i].logprob, fused[i].logprob, 1e-3) << i;
  }
  // CUDA graphs (DecodeOptions::cuda_graphs; 4 rows: bucket 4): the same
  // tokens as the eager fused steps.
  const auto graphed = run(DecodeAttention::kAuto, /*graphs=*/true);
  ASSERT_EQ(graphed.size(), fused.size());
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_EQ(graphed[i].token, fused[i].token) << "graphs, " << i;
    EXPECT_NEAR(graphed[i].logprob, fused[i].logprob, 1e-4) << "graphs, " << i;
  }
}

// CUDA graphs with a changing batch: sequences released and added between
// steps (buckets 1, 2, 4, 8 and back), greedy, float32: every token equals the
// eager step's.
TEST(DecodeGpuTest, CudaGraphStepsEqualEagerSteps) {
  std::unique_ptr<Engine> e = MakeEngine(DType::kFloat32);
  ASSERT_NE(e, nullptr);
  auto run = [&](bool graphs) {
    DecodeOptions o;
    o.max_sequences = 8;
    o.max_sequence_tokens = 48;
    o.page_size = 4;
    o.cuda_graphs = graphs;
    auto session = e->StartDecode(o);
    EXPECT_TRUE(session.ok()) << session.status();
    const SamplingParams greedy = Greedy();
    std::vector<std::pair<int64_t, int32_t>> got;
    std::vector<int64_t> live;
    auto add = [&](std::vector<int32_t> prompt, int n) {
      auto first =
          (*session)->AddPrompt(prompt, std::vector<SamplingParams>(n, greedy));
      EXPECT_TRUE(first.ok()) << first.status();
      for (const DecodedToken& t : *first) live.push_back(t.sequence);
    };
    add({2, 7, 8, 9}, 1);
    for (int s = 0; s < 30; ++s) {
      if (s == 4) add({2, 30, 31}, 1);
      if (s == 8) add({2, 50, 51, 52, 53, 54}, 3);
      if (s == 12) add({2, 60}, 2);
      if (s == 20) {
        for (size_t i = 1; i < live.size(); i += 2) {
          (*session)->Release(live[i]);
        }
      }
      auto next = (*session)->Step();
      EXPECT_TRUE(next.ok()) << next.status();
      if (!next.ok()) break;
      for (const DecodedToken& t : *next) got.push_back({t.sequence, t.token});
    }
    return got;
  };
  EXPECT_EQ(run(true), run(false));
}

// Prompts prefilled together (right-padded to the longest) continue exactly
// as each prompt prefilled alone.
TEST(DecodeGpuTest, BatchedPrefillEqualsPrefillAlone) {
  std::unique_ptr<Engine> e = MakeEngine(DType::kFloat32);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(DecodeThreePromptsGreedy(*e, true),
            DecodeThreePromptsGreedy(*e, false));
}

// The fused LM head and sampler (DecodeOptions::fused_sampler, with CUDA
// graphs) against the ATen sampler, float32: the same tokens with
// log-probabilities within 1e-4, for greedy, temperature, top-k, top-p,
// min-p, bias and bans in one batch; a prompt added mid-way with large bias
// maps outgrows the edit buffer (the graphs are captured again).
TEST(DecodeGpuTest, FusedSamplerEqualsTheAtenSampler) {
  std::unique_ptr<Engine> e = MakeEngine(DType::kFloat32);
  ASSERT_NE(e, nullptr);
  const int32_t V = static_cast<int32_t>(e->config().vocab_size);
  auto bias_map = std::make_shared<std::vector<std::pair<int32_t, float>>>();
  for (int32_t t = 0; t < V; ++t) bias_map->push_back({t, 0.01f * (t % 7)});
  (*bias_map)[3].second = 4.0f;
  auto bans = std::make_shared<std::vector<int32_t>>();
  for (int32_t t = 0; t < V; t += 3) bans->push_back(t);
  auto params = [&](int i) {
    SamplingParams p;
    p.seed = SampleSeed(11, 0, i);
    switch (i % 7) {
      case 0:
        p.temperature = 0;
        break;
      case 1:
        break;
      case 2:
        p.top_k = 5;
        break;
      case 3:
        p.top_p = 0.8;
        p.temperature = 0.7;
        break;
      case 4:
        p.min_p = 0.05;
        break;
      case 5:
        p.logit_bias = bias_map;
        break;
      case 6:
        p.banned = bans;
        p.top_k = 40;
        p.top_p = 0.95;
        break;
    }
    return p;
  };
  auto run = [&](bool fused) {
    DecodeOptions o;
    o.fused_sampler = fused;
    o.max_sequences = 32;
    o.max_sequence_tokens = 48;
    o.page_size = 4;
    auto session = e->StartDecode(o);
    EXPECT_TRUE(session.ok()) << session.status();
    std::vector<DecodedToken> got;
    std::vector<SamplingParams> first, second;
    for (int i = 0; i < 7; ++i) first.push_back(params(i));
    for (int i = 0; i < 14; ++i) {
      SamplingParams p = params(i);
      p.logit_bias = bias_map;  // 14 x 512 edits: more than the buffer holds
      second.push_back(p);
    }
    auto a = (*session)->AddPrompts({{{2, 40, 41, 42, 43}, first}});
    EXPECT_TRUE(a.ok()) << a.status();
    if (a.ok()) got.insert(got.end(), (*a)[0].begin(), (*a)[0].end());
    for (int s = 0; s < 20; ++s) {
      if (s == 6) {
        auto b = (*session)->AddPrompts({{{2, 9, 10}, second}});
        EXPECT_TRUE(b.ok()) << b.status();
        if (b.ok()) got.insert(got.end(), (*b)[0].begin(), (*b)[0].end());
      }
      auto next = (*session)->Step();
      EXPECT_TRUE(next.ok()) << next.status();
      if (!next.ok()) break;
      got.insert(got.end(), next->begin(), next->end());
    }
    return got;
  };
  const auto aten = run(false);
  const auto fused = run(true);
  ASSERT_EQ(aten.size(), fused.size());
  int differ = 0;
  for (size_t i = 0; i < aten.size(); ++i) {
    ASSERT_GE(fused[i].token, 0) << i;
    if (aten[i].token != fused[i].token) {
      ++differ;
      continue;
    }
    EXPECT_NEAR(aten[i].logprob, fused[i].logprob, 1e-4) << i;
  }
  // A draw may flip where the uniform falls within float rounding of a CDF
  // boundary; none should in a few hundred draws.
  EXPECT_EQ(differ, 0);
}

}  // namespace
}  // namespace sweepd::engine
