// Helpers shared by the decode tests on CPU (decode_test.cc) and CUDA
// (decode_gpu_test.cc): the tiny random model's engine options, a full
// recomputation's last-position logits, argmax and log-softmax of a logit row,
// greedy sampling parameters, and the forked-flat and batched-vs-alone decode
// runs. Plain engine API only (no CUDA, no libtorch headers), so both builds
// include it.
//
// Header-only, test code only; the functions are stateless (the engine passed
// in is used from the calling thread).
#ifndef SWEEPD_TESTS_ENGINE_DECODE_TEST_UTIL_H_
#define SWEEPD_TESTS_ENGINE_DECODE_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/engine/decode.h"
#include "worker/engine/engine.h"

namespace sweepd::engine {

// configs/models/gemma4-tiny.json under $SWEEPD_SOURCE_DIR (or ".").
inline std::string TinyConfigPath() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return std::string(d != nullptr ? d : ".") +
         "/configs/models/gemma4-tiny.json";
}

// The tiny model with random weights, seed 5; the caller sets the device,
// dtype and TP.
inline EngineOptions TinyEngineOptions() {
  EngineOptions o;
  o.random_weights = true;
  o.config_path = TinyConfigPath();
  o.seed = 5;
  return o;
}

// Softcapped logits of the last position of `tokens`, recomputed in full.
inline std::vector<float> LastLogits(Engine& e,
                                     const std::vector<int32_t>& tokens,
                                     const std::vector<Intervention>& iv) {
  ForwardRequest r;
  r.tokens = tokens;
  r.batch = 1;
  r.seq = static_cast<int64_t>(tokens.size());
  r.return_logits = true;
  r.interventions = iv;
  auto out = e.Forward(r);
  EXPECT_TRUE(out.ok()) << out.status();
  const int64_t V = e.config().vocab_size;
  const float* last = out->logits.data.data() + (r.seq - 1) * V;
  return std::vector<float>(last, last + V);
}

inline int32_t Argmax(const std::vector<float>& z) {
  return static_cast<int32_t>(std::max_element(z.begin(), z.end()) - z.begin());
}

inline float LogSoftmaxAt(const std::vector<float>& z, int32_t t) {
  const float m = *std::max_element(z.begin(), z.end());
  double s = 0;
  for (float v : z) s += std::exp(static_cast<double>(v) - m);
  return static_cast<float>(z[t] - m - std::log(s));
}

inline SamplingParams Greedy() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

// Three forked samples of one prompt (seeds SampleSeed(5, 0, i)) and a greedy
// second prompt, a flat plan (no shared-prefix attention), 24 steps past the
// window, decoding attention with `mode` (CUDA graphs as `cuda_graphs`, by
// default DecodeOptions' default): every step's tokens in order.
inline std::vector<DecodedToken> DecodeForkedFlat(
    Engine& e, DecodeAttention mode,
    bool cuda_graphs = DecodeOptions().cuda_graphs) {
  DecodeOptions o;
  o.cuda_graphs = cuda_graphs;
  o.max_sequences = 8;
  o.max_sequence_tokens = 48;
  o.page_size = 4;
  o.shared_attention_min_keys = int64_t{1} << 40;  // flat
  o.decode_attention = mode;
  auto session = e.StartDecode(o);
  EXPECT_TRUE(session.ok()) << session.status();
  std::vector<SamplingParams> params(3);
  for (int i = 0; i < 3; ++i) params[i].seed = SampleSeed(5, 0, i);
  std::vector<DecodedToken> got;
  auto first =
      (*session)->AddPrompts({{{2, 40, 41, 42, 43, 44, 45, 46, 47, 48}, params},
                              {{2, 9, 10}, {Greedy()}}});
  EXPECT_TRUE(first.ok()) << first.status();
  for (int s = 0; s < 24; ++s) {
    auto next = (*session)->Step();
    EXPECT_TRUE(next.ok()) << next.status();
    got.insert(got.end(), next->begin(), next->end());
  }
  return got;
}

// Three prompts of different lengths decoded greedily for 12 steps after the
// prefill, prefilled together (right-padded to the longest) or each alone:
// every prompt's tokens, in prompt order.
inline std::vector<std::vector<int32_t>> DecodeThreePromptsGreedy(
    Engine& e, bool together) {
  const std::vector<std::vector<int32_t>> prompts = {
      {2, 7, 8}, {2, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50}, {2, 99}};
  DecodeOptions o;
  o.max_sequences = 6;
  o.max_sequence_tokens = 40;
  o.page_size = 4;
  auto session = e.StartDecode(o);
  EXPECT_TRUE(session.ok()) << session.status();
  std::vector<std::vector<int32_t>> got(prompts.size());
  std::map<int64_t, size_t> owner;
  std::vector<PromptRequest> reqs;
  for (const auto& p : prompts) reqs.push_back({p, {Greedy()}});
  std::vector<std::vector<DecodedToken>> first;
  if (together) {
    auto all = (*session)->AddPrompts(reqs);
    EXPECT_TRUE(all.ok()) << all.status();
    first = *all;
  } else {
    for (const auto& r : reqs) {
      auto one = (*session)->AddPrompts({r});
      EXPECT_TRUE(one.ok()) << one.status();
      first.push_back((*one)[0]);
    }
  }
  for (size_t i = 0; i < first.size(); ++i) {
    owner[first[i][0].sequence] = i;
    got[i].push_back(first[i][0].token);
  }
  for (int s = 0; s < 12; ++s) {
    auto next = (*session)->Step();
    EXPECT_TRUE(next.ok()) << next.status();
    for (const DecodedToken& t : *next)
      got[owner[t.sequence]].push_back(t.token);
  }
  return got;
}

}  // namespace sweepd::engine

#endif  // SWEEPD_TESTS_ENGINE_DECODE_TEST_UTIL_H_
