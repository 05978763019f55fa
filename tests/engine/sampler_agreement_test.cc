// The fused sampler's CPU reference (kernels/token_sampler.h) against the
// engine's ATen sampler (worker/engine/sampler.h, SampleRows) at TP = 1 on
// CPU float32: the raw logits go to TokenSamplerCpu, the softcapped logits
// computed by the ATen ops of RankForward::LocalLogits go to SampleRows; one
// batch mixes greedy (with a tie), temperature, top-k, top-p, min-p, their
// combinations, bias and ban rows. Tokens must be equal and log-probabilities
// within 1e-5 · max(1, |logprob|).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/token_sampler.h"
#include "worker/engine/comm_factory.h"
#include "worker/engine/sampler.h"

namespace sweepd::engine::internal {
namespace {

constexpr double kSoftcap = 30.0;
constexpr int64_t kVocab = 5000;

struct Row {
  float temperature = 0;
  int64_t top_k = 0;
  float top_p = 1;
  float min_p = 0;
  std::vector<std::pair<int64_t, float>> bias;
  std::vector<int64_t> ban;
};

TEST(SamplerAgreement, FusedCpuReferenceMatchesSampleRows) {
  std::vector<Row> rows;
  auto add = [&](float t, int64_t k, float p, float mp,
                 std::vector<std::pair<int64_t, float>> bias = {}) {
    Row row;
    row.temperature = t;
    row.top_k = k;
    row.top_p = p;
    row.min_p = mp;
    row.bias = std::move(bias);
    rows.push_back(row);
  };
  for (int rep = 0; rep < 3; ++rep) {
    add(0.0f, 0, 1.0f, 0.0f);                           // greedy
    add(1.0f, 0, 1.0f, 0.0f);                           // temperature
    add(0.7f, 40, 1.0f, 0.0f);                          // top-k
    add(1.0f, 0, 0.9f, 0.0f);                           // top-p
    add(1.2f, 0, 0.5f, 0.0f);                           // top-p
    add(1.0f, 0, 1.0f, 0.1f);                           // min-p
    add(0.8f, 100, 0.8f, 0.05f);                        // all three
    add(1.0f, 1, 1.0f, 0.0f);                           // top-k 1
    add(1.0f, 0, 1.0f, 0.0f, {{7, 25.0f}, {9, 3.0f}});  // bias
    add(0.0f, 0, 1.0f, 0.0f, {{11, 40.0f}});            // greedy + bias
  }
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal(0.0f, 10.0f);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const int64_t R = static_cast<int64_t>(rows.size());
  at::Tensor raw = at::empty({R, kVocab}, at::kFloat);
  float* x = raw.data_ptr<float>();
  for (int64_t i = 0; i < R * kVocab; ++i) x[i] = normal(rng);
  // Row 0: a tie at the top (greedy takes the smaller id).
  x[10] = x[20] = 80.0f;

  SamplerBatch batch;
  std::vector<float> temperature, top_p, min_p;
  std::vector<int32_t> top_k, edit_row, edit_token;
  std::vector<float> edit_value;
  for (int64_t r = 0; r < R; ++r) {
    Row& row = rows[r];
    if (r % 4 == 3) {  // a token family banned, incl. the row's argmax
      int64_t arg = 0;
      for (int64_t v = 1; v < kVocab; ++v) {
        if (x[r * kVocab + v] > x[r * kVocab + arg]) arg = v;
      }
      row.ban.push_back(arg);
      for (int i = 0; i < 200; ++i) row.ban.push_back(rng() % kVocab);
    }
    const double u = unit(rng);
    batch.temperature.push_back(row.temperature);
    batch.top_k.push_back(row.top_k);
    batch.top_p.push_back(row.top_p);
    batch.min_p.push_back(row.min_p);
    batch.uniform.push_back(u);
    temperature.push_back(row.temperature);
    top_k.push_back(static_cast<int32_t>(row.top_k));
    top_p.push_back(row.top_p);
    min_p.push_back(row.min_p);
    for (const auto& [tok, value] : row.bias) {
      batch.bias_row.push_back(r);
      batch.bias_token.push_back(tok);
      batch.bias_value.push_back(value);
      edit_row.push_back(static_cast<int32_t>(r));
      edit_token.push_back(static_cast<int32_t>(tok));
      edit_value.push_back(value);
    }
    for (int64_t tok : row.ban) {
      batch.ban_row.push_back(r);
      batch.ban_token.push_back(tok);
      edit_row.push_back(static_cast<int32_t>(r));
      edit_token.push_back(static_cast<int32_t>(tok));
      edit_value.push_back(-std::numeric_limits<float>::infinity());
    }
  }

  // LocalLogits' softcap, then SampleRows at TP = 1.
  const at::Tensor z = (at::tanh(raw / kSoftcap) * kSoftcap).contiguous();
  auto comms = CreateRankComms("cpu", 1, 0, absl::Seconds(30));
  ASSERT_TRUE(comms.ok()) << comms.status();
  const SampledRows want = SampleRows((*comms)->rank(0), z, 0, kVocab, batch);
  const at::Tensor want_token = want.token.contiguous();
  const at::Tensor want_lp = want.logprob.contiguous();

  std::vector<int64_t> token(R, -2);
  std::vector<float> logprob(R, 0.0f);
  const int32_t count = static_cast<int32_t>(edit_row.size());
  kernels::TokenSamplerArgs a;
  a.dtype = kernels::Dtype::kFloat32;
  a.logits = x;
  a.row_stride = kVocab;
  a.rows = R;
  a.vocab = kVocab;
  a.softcap = static_cast<float>(kSoftcap);
  a.temperature = temperature.data();
  a.top_k = top_k.data();
  a.top_p = top_p.data();
  a.min_p = min_p.data();
  a.uniform = batch.uniform.data();
  a.edit_row = edit_row.data();
  a.edit_token = edit_token.data();
  a.edit_value = edit_value.data();
  a.edit_count = &count;
  a.edit_capacity = count;
  a.token = token.data();
  a.logprob = logprob.data();
  ASSERT_TRUE(kernels::TokenSamplerCpu(a).ok());

  EXPECT_EQ(token[0], 10);
  // The draws are not all the arg-max: the sampled paths are exercised.
  int not_argmax = 0;
  for (int64_t r = 0; r < R; ++r) {
    const float* zr = z.data_ptr<float>() + r * kVocab;
    not_argmax += zr[token[r]] < *std::max_element(zr, zr + kVocab);
  }
  EXPECT_GE(not_argmax, 5);
  for (int64_t r = 0; r < R; ++r) {
    EXPECT_EQ(token[r], want_token[r].item<int64_t>()) << "row " << r;
    const float lp = want_lp[r].item<float>();
    EXPECT_NEAR(logprob[r], lp, 1e-5 * std::max(1.0f, std::fabs(lp)))
        << "row " << r;
  }
}

}  // namespace
}  // namespace sweepd::engine::internal
