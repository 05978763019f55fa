// The vocab-parallel sampler (worker/engine/sampler.h) on hand-made logits:
// frequencies match the softmax (chi-square, fixed uniforms), bans hold, a
// bias shifts frequencies as predicted, top-k / top-p / min-p keep the right
// sets, greedy breaks ties by the lowest id, and TP = 2 draws the same tokens
// as TP = 1.
#include "worker/engine/sampler.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "worker/engine/comm_factory.h"
#include "worker/engine/decode.h"

namespace sweepd::engine::internal {
namespace {

constexpr int kDraws = 20000;

// Draws `rows` tokens from the logits `z` (one row, repeated) with the
// sampler at tensor-parallel degree `tp`.
std::vector<int64_t> Draw(const std::vector<float>& z, SamplerBatch batch,
                          int tp, std::vector<float>* logprob = nullptr) {
  const int64_t V = static_cast<int64_t>(z.size());
  const int64_t R = batch.rows();
  const int64_t shard = (V + tp - 1) / tp;
  auto comms = CreateRankComms("cpu", tp, 0, absl::Seconds(30));
  EXPECT_TRUE(comms.ok()) << comms.status();
  std::vector<std::vector<int64_t>> out(tp);
  std::vector<std::vector<float>> lps(tp);
  std::vector<std::thread> threads;
  for (int r = 0; r < tp; ++r) {
    threads.emplace_back([&, r] {
      at::set_num_threads(1);
      const int64_t start = r * shard;
      const int64_t len = std::min<int64_t>(shard, V - start);
      at::Tensor row = at::full({shard}, -INFINITY, at::kFloat);
      for (int64_t i = 0; i < len; ++i) row[i] = z[start + i];
      at::Tensor local = row.unsqueeze(0).expand({R, shard}).contiguous();
      SampledRows s = SampleRows((*comms)->rank(r), local, start, len, batch);
      at::Tensor t = s.token.contiguous();
      out[r].assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + R);
      at::Tensor l = s.logprob.contiguous();
      lps[r].assign(l.data_ptr<float>(), l.data_ptr<float>() + R);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 1; r < tp; ++r) EXPECT_EQ(out[r], out[0]);
  if (logprob != nullptr) *logprob = lps[0];
  return out[0];
}

SamplerBatch Rows(int n, float temperature, uint64_t seed) {
  SamplerBatch b;
  for (int i = 0; i < n; ++i) {
    b.temperature.push_back(temperature);
    b.top_k.push_back(0);
    b.top_p.push_back(1);
    b.min_p.push_back(0);
    b.uniform.push_back(SampleUniform(seed + i, 0));
  }
  return b;
}

std::vector<double> Softmax(const std::vector<float>& z, double t) {
  double m = -INFINITY;
  for (float v : z) m = std::max(m, v / t);
  std::vector<double> p;
  double s = 0;
  for (float v : z) {
    p.push_back(std::isinf(v) ? 0 : std::exp(v / t - m));
    s += p.back();
  }
  for (double& x : p) x /= s;
  return p;
}

// Pearson's chi-square of the draws against `p` (cells with p > 0).
double ChiSquare(const std::vector<int64_t>& draws,
                 const std::vector<double>& p, int* dof) {
  std::map<int64_t, int64_t> count;
  for (int64_t t : draws) ++count[t];
  double chi = 0;
  *dof = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0) {
      EXPECT_EQ(count[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    const double expect = p[i] * draws.size();
    const double d = count[i] - expect;
    chi += d * d / expect;
    ++*dof;
  }
  return chi;
}

const std::vector<float> kLogits = {1.0f, 2.0f, 0.5f, -1.0f,
                                    3.0f, 0.0f, 2.5f, -2.0f};

TEST(SamplerTest, FrequenciesMatchTheSoftmax) {
  for (float t : {1.0f, 0.5f, 2.0f}) {
    const auto draws = Draw(kLogits, Rows(kDraws, t, 1000), 1);
    int dof = 0;
    const double chi = ChiSquare(draws, Softmax(kLogits, t), &dof);
    // 7 degrees of freedom: P(chi2 > 24.3) = 0.001.
    EXPECT_LT(chi, 24.3) << "temperature " << t << " dof " << dof;
  }
}

TEST(SamplerTest, TensorParallelDrawsTheSameTokens) {
  SamplerBatch b = Rows(500, 1.0f, 7);
  for (int i = 0; i < 500; i += 3) b.top_k[i] = 3;
  for (int i = 1; i < 500; i += 3) b.top_p[i] = 0.8f;
  for (int i = 2; i < 500; i += 9) b.temperature[i] = 0;  // greedy rows
  std::vector<float> lp1, lp2, lp4;
  const auto one = Draw(kLogits, b, 1, &lp1);
  EXPECT_EQ(Draw(kLogits, b, 2, &lp2), one);
  EXPECT_EQ(Draw(kLogits, b, 4, &lp4), one);
  for (size_t i = 0; i < lp1.size(); ++i) {
    EXPECT_NEAR(lp2[i], lp1[i], 1e-5);
    EXPECT_NEAR(lp4[i], lp1[i], 1e-5);
  }
}

TEST(SamplerTest, BannedTokensNeverAppear) {
  SamplerBatch b = Rows(kDraws, 1.0f, 3);
  for (int64_t r = 0; r < b.rows(); ++r) {
    for (int64_t tok : {4, 6}) {  // the two likeliest
      b.ban_row.push_back(r);
      b.ban_token.push_back(tok);
    }
  }
  for (int tp : {1, 2}) {
    const auto draws = Draw(kLogits, b, tp);
    std::vector<float> z = kLogits;
    z[4] = z[6] = -INFINITY;
    int dof = 0;
    EXPECT_LT(ChiSquare(draws, Softmax(z, 1.0), &dof), 22.5);  // 5 dof
  }
}

TEST(SamplerTest, BiasShiftsFrequenciesAsPredicted) {
  SamplerBatch b = Rows(kDraws, 1.0f, 11);
  for (int64_t r = 0; r < b.rows(); ++r) {
    b.bias_row.push_back(r);
    b.bias_token.push_back(3);
    b.bias_value.push_back(4.5f);
  }
  std::vector<float> lp;
  const auto draws = Draw(kLogits, b, 2, &lp);
  std::vector<float> z = kLogits;
  z[3] += 4.5f;
  int dof = 0;
  EXPECT_LT(ChiSquare(draws, Softmax(z, 1.0), &dof), 24.3);
  // The log-probability is the model's, before the bias.
  const auto p = Softmax(kLogits, 1.0);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_NEAR(lp[i], std::log(p[draws[i]]), 1e-5);
  }
}

TEST(SamplerTest, TopKTopPMinPKeepTheRightSets) {
  // top-k 3: tokens 4, 6, 1.
  SamplerBatch k = Rows(kDraws, 1.0f, 21);
  for (auto& v : k.top_k) v = 3;
  std::vector<float> zk(kLogits.size(), -INFINITY);
  for (int t : {4, 6, 1}) zk[t] = kLogits[t];
  int dof = 0;
  EXPECT_LT(ChiSquare(Draw(kLogits, k, 2, nullptr), Softmax(zk, 1.0), &dof),
            13.8);  // 2 dof
  // top-p 0.75: probabilities sorted 0.46 (4), 0.28 (6), 0.17 (1), ... —
  // the nucleus is {4, 6, 1} (0.46 + 0.28 < 0.75).
  SamplerBatch p = Rows(kDraws, 1.0f, 31);
  for (auto& v : p.top_p) v = 0.75f;
  EXPECT_LT(ChiSquare(Draw(kLogits, p, 2, nullptr), Softmax(zk, 1.0), &dof),
            13.8);
  // min-p 0.3: tokens with p >= 0.3 * p(4): exp(z - 3) >= 0.3 -> z >= 1.796.
  SamplerBatch m = Rows(kDraws, 1.0f, 41);
  for (auto& v : m.min_p) v = 0.3f;
  std::vector<float> zm(kLogits.size(), -INFINITY);
  for (int t : {4, 6, 1}) zm[t] = kLogits[t];
  EXPECT_LT(ChiSquare(Draw(kLogits, m, 1, nullptr), Softmax(zm, 1.0), &dof),
            13.8);
}

TEST(SamplerTest, GreedyPicksTheLowestIdOnTies) {
  std::vector<float> z = {0, 5, 1, 5, 5, 0, 0, 5};
  for (int tp : {1, 2, 4}) {
    const auto t = Draw(z, Rows(4, 0.0f, 1), tp);
    for (int64_t v : t) EXPECT_EQ(v, 1);
  }
}

}  // namespace
}  // namespace sweepd::engine::internal
