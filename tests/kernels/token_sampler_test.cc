// CPU reference of kernels/token_sampler.h against a brute force written from
// the contract (std::sort for top-k and top-p, an explicit CDF walk, float64
// masses): random rows in bf16 and float32, with and without softcap, every
// sampling option and their combinations, bias and ban edits; then hand-made
// cases (greedy ties, duplicate edits, all banned, uniform at the ends, ties
// at the top-k and top-p thresholds, min-p, logprob) and the argument checks.
#include "kernels/token_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

using ::testing::HasSubstr;

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Problem {
  Dtype dtype = Dtype::kFloat32;
  int64_t vocab = 0;
  float softcap = 0.0f;
  bool reciprocal = false;
  std::vector<uint8_t> logits;  // [rows, vocab] in dtype
  std::vector<float> temperature, top_p, min_p;
  std::vector<int32_t> top_k;
  std::vector<double> uniform;
  std::vector<int32_t> edit_row, edit_token;
  std::vector<float> edit_value;

  int64_t rows() const { return static_cast<int64_t>(temperature.size()); }
  float Raw(int64_t r, int64_t v) const {
    return LoadAs(dtype, logits.data(), r * vocab + v);
  }
  void AddRow(const std::vector<float>& x, float t, int32_t k = 0,
              float p = 1.0f, float mp = 0.0f, double u = 0.5) {
    const size_t at = logits.size() / DtypeSize(dtype);
    logits.resize((at + vocab) * DtypeSize(dtype));
    for (int64_t v = 0; v < vocab; ++v)
      StoreAs(dtype, logits.data(), at + v, x[v]);
    temperature.push_back(t);
    top_k.push_back(k);
    top_p.push_back(p);
    min_p.push_back(mp);
    uniform.push_back(u);
  }
  void Edit(int32_t r, int32_t tok, float value) {
    edit_row.push_back(r);
    edit_token.push_back(tok);
    edit_value.push_back(value);
  }
};

struct Result {
  std::vector<int64_t> token;
  std::vector<float> logprob;
};

TokenSamplerArgs ArgsFor(const Problem& p, Result* out, int32_t* count) {
  *count = static_cast<int32_t>(p.edit_row.size());
  out->token.assign(p.rows(), -2);
  out->logprob.assign(p.rows(), 0.0f);
  TokenSamplerArgs a;
  a.dtype = p.dtype;
  a.logits = p.logits.data();
  a.row_stride = p.vocab;
  a.rows = p.rows();
  a.vocab = p.vocab;
  a.softcap = p.softcap;
  a.softcap_reciprocal = p.reciprocal;
  a.temperature = p.temperature.data();
  a.top_k = p.top_k.data();
  a.top_p = p.top_p.data();
  a.min_p = p.min_p.data();
  a.uniform = p.uniform.data();
  a.edit_row = p.edit_row.data();
  a.edit_token = p.edit_token.data();
  a.edit_value = p.edit_value.data();
  a.edit_count = count;
  a.edit_capacity = static_cast<int64_t>(p.edit_row.size());
  a.token = out->token.data();
  a.logprob = out->logprob.data();
  return a;
}

Result RunCpu(const Problem& p) {
  Result out;
  int32_t count = 0;
  const absl::Status s = TokenSamplerCpu(ArgsFor(p, &out, &count));
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

// ---- brute force, from the contract -----------------------------------------

float BruteZ(const Problem& p, float x) {
  if (p.softcap == 0.0f) return x;
  const float a =
      RoundTo(p.dtype, p.reciprocal ? x * (1.0f / p.softcap) : x / p.softcap);
  return RoundTo(p.dtype, RoundTo(p.dtype, std::tanh(a)) * p.softcap);
}

Result Brute(const Problem& p) {
  Result out;
  const int64_t V = p.vocab;
  for (int64_t r = 0; r < p.rows(); ++r) {
    std::vector<float> z(V);
    for (int64_t v = 0; v < V; ++v) z[v] = BruteZ(p, p.Raw(r, v));
    const float zmax = *std::max_element(z.begin(), z.end());
    double s = 0;
    for (float x : z) s += std::exp(static_cast<double>(x) - zmax);
    const double lse = zmax + std::log(s);
    std::vector<float> zb = z;
    for (size_t i = 0; i < p.edit_row.size(); ++i) {
      if (p.edit_row[i] == r) zb[p.edit_token[i]] += p.edit_value[i];
    }
    int64_t token = -1;
    if (p.temperature[r] <= 0) {
      const float best = *std::max_element(zb.begin(), zb.end());
      if (best > -kInf) {
        token = std::find(zb.begin(), zb.end(), best) - zb.begin();
      }
    } else {
      std::vector<float> zt(V);
      for (int64_t v = 0; v < V; ++v) zt[v] = zb[v] / p.temperature[r];
      std::vector<float> desc = zt;
      std::sort(desc.begin(), desc.end(), std::greater<float>());
      const int64_t k = p.top_k[r];
      const float thr = (k > 0 && k < V) ? desc[k - 1] : -kInf;
      const float m = desc[0];
      std::vector<float> e(V, 0.0f);
      if (m > -kInf) {
        double total = 0;
        for (int64_t v = 0; v < V; ++v) {
          if (zt[v] >= thr) e[v] = std::exp(zt[v] - m);
          total += e[v];
        }
        float s_top = thr;
        if (p.top_p[r] < 1) {
          std::vector<int64_t> ids(V);
          std::iota(ids.begin(), ids.end(), 0);
          std::sort(ids.begin(), ids.end(),
                    [&](int64_t x, int64_t y) { return zt[x] > zt[y]; });
          double cum = 0;
          for (size_t i = 0; i < ids.size();) {
            const float val = zt[ids[i]];
            for (; i < ids.size() && zt[ids[i]] == val; ++i) cum += e[ids[i]];
            if (cum >= static_cast<double>(p.top_p[r]) * total) {
              s_top = val;
              break;
            }
          }
        }
        for (int64_t v = 0; v < V; ++v) {
          if (zt[v] < s_top || e[v] < p.min_p[r]) e[v] = 0.0f;
        }
        std::vector<double> cdf(V);
        double acc = 0;
        for (int64_t v = 0; v < V; ++v) cdf[v] = acc += e[v];
        for (int64_t v = 0; v < V && token < 0; ++v) {
          if (cdf[v] > p.uniform[r] * acc) token = v;
        }
        if (token < 0) {
          for (int64_t v = V - 1; v >= 0 && token < 0; --v) {
            if (e[v] > 0) token = v;
          }
        }
      }
    }
    out.token.push_back(token);
    out.logprob.push_back(token >= 0 ? static_cast<float>(z[token] - lse)
                                     : -kInf);
  }
  return out;
}

void ExpectSame(const Result& got, const Result& want) {
  ASSERT_EQ(got.token.size(), want.token.size());
  for (size_t r = 0; r < got.token.size(); ++r) {
    EXPECT_EQ(got.token[r], want.token[r]) << "row " << r;
    if (std::isinf(want.logprob[r])) {
      EXPECT_EQ(got.logprob[r], want.logprob[r]) << "row " << r;
    } else {
      EXPECT_NEAR(got.logprob[r], want.logprob[r],
                  1e-5 * std::max(1.0f, std::fabs(want.logprob[r])))
          << "row " << r;
    }
  }
}

// ---- random rows ------------------------------------------------------------

Problem RandomProblem(Dtype dtype, float softcap, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  Problem p;
  p.dtype = dtype;
  p.vocab = 1500;
  p.softcap = softcap;
  const float temps[] = {0.0f, 1.0f, 0.7f, 1.6f};
  const int32_t ks[] = {0, 1, 7, 40, 1499, 1500, 5000};
  const float ps[] = {1.0f, 0.9f, 0.5f, 0.05f, 0.0f};
  const float mps[] = {0.0f, 0.05f, 0.3f};
  for (int r = 0; r < 48; ++r) {
    std::vector<float> x(p.vocab);
    for (float& v : x) v = normal(rng) * (softcap > 0 ? 8.0f : 1.0f);
    const float t = temps[r % 4];
    const int32_t k = (r / 4) % 3 == 0 ? ks[rng() % 7] : 0;
    const float tp = (r / 4) % 3 == 1 || r % 5 == 0 ? ps[rng() % 5] : 1.0f;
    const float mp = r % 3 == 2 ? mps[rng() % 3] : 0.0f;
    double u = unit(rng);
    if (r % 11 == 0) u = 1e-12;
    if (r % 13 == 0) u = 1.0 - 1e-12;
    p.AddRow(x, t, k, tp, mp, u);
  }
  // Bias and ban edits on a third of the rows, some on the same token.
  for (int r = 0; r < 48; r += 3) {
    for (int i = 0; i < 30; ++i) {
      const int32_t tok = static_cast<int32_t>(rng() % p.vocab);
      p.Edit(r, tok, i % 2 == 0 ? -kInf : normal(rng));
      if (i % 5 == 0) p.Edit(r, tok, 2.5f);
    }
  }
  return p;
}

TEST(TokenSamplerCpu, RandomRowsMatchBruteForce) {
  int seed = 1;
  for (Dtype dtype : {Dtype::kFloat32, Dtype::kBFloat16}) {
    for (float softcap : {0.0f, 30.0f}) {
      for (bool reciprocal : {false, true}) {
        if (softcap == 0.0f && reciprocal) continue;
        SCOPED_TRACE(::testing::Message()
                     << "dtype " << static_cast<int>(dtype) << " softcap "
                     << softcap << " reciprocal " << reciprocal);
        Problem p = RandomProblem(dtype, softcap, seed++);
        p.reciprocal = reciprocal;
        ExpectSame(RunCpu(p), Brute(p));
      }
    }
  }
}

TEST(TokenSamplerCpu, TheSameRowGivesTheSameResultInAnyBatch) {
  Problem p = RandomProblem(Dtype::kBFloat16, 30.0f, 99);
  const Result all = RunCpu(p);
  for (int64_t r : {0, 5, 47}) {
    Problem one = p;
    one.logits.assign(p.logits.begin() + r * p.vocab * 2,
                      p.logits.begin() + (r + 1) * p.vocab * 2);
    one.temperature = {p.temperature[r]};
    one.top_k = {p.top_k[r]};
    one.top_p = {p.top_p[r]};
    one.min_p = {p.min_p[r]};
    one.uniform = {p.uniform[r]};
    one.edit_row.clear();
    one.edit_token.clear();
    one.edit_value.clear();
    for (size_t i = 0; i < p.edit_row.size(); ++i) {
      if (p.edit_row[i] == r) one.Edit(0, p.edit_token[i], p.edit_value[i]);
    }
    const Result single = RunCpu(one);
    EXPECT_EQ(single.token[0], all.token[r]);
    EXPECT_EQ(single.logprob[0], all.logprob[r]);
  }
}

// ---- hand-made cases
// ---------------------------------------------------------

Problem Small(std::vector<float> x) {
  Problem p;
  p.vocab = static_cast<int64_t>(x.size());
  return p;
}

TEST(TokenSamplerCpu, GreedyTiesTakeTheSmallestId) {
  const std::vector<float> x = {1, 3, 2, 3, -1};
  Problem p = Small(x);
  p.AddRow(x, 0.0f);
  p.AddRow(x, -1.0f);
  p.AddRow(x, 0.0f);
  p.Edit(2, 1, -kInf);  // row 2: id 1 banned, id 3 is the max
  const Result r = RunCpu(p);
  EXPECT_EQ(r.token, (std::vector<int64_t>{1, 1, 3}));
  ExpectSame(r, Brute(p));
}

TEST(TokenSamplerCpu, DuplicateEditsAddUpAndLogprobIgnoresThem) {
  const std::vector<float> x = {0, 1, 2};
  Problem p = Small(x);
  p.AddRow(x, 0.0f);
  p.Edit(0, 0, 1.5f);
  p.Edit(0, 0, 1.0f);  // z[0] + 2.5 = 2.5 > 2
  const Result r = RunCpu(p);
  ASSERT_EQ(r.token[0], 0);
  const double lse = std::log(std::exp(0.0) + std::exp(1.0) + std::exp(2.0));
  EXPECT_NEAR(r.logprob[0], 0.0 - lse, 1e-6);
}

TEST(TokenSamplerCpu, AllBannedButOneAndAllBanned) {
  const std::vector<float> x = {5, 4, 3, 2};
  Problem p = Small(x);
  for (double u : {1e-12, 0.5, 1 - 1e-12}) p.AddRow(x, 1.0f, 0, 1.0f, 0.0f, u);
  p.AddRow(x, 0.0f);
  p.AddRow(x, 1.0f);  // row 4: everything banned
  p.AddRow(x, 0.0f);  // row 5: everything banned, greedy
  for (int32_t r = 0; r < 4; ++r) {
    for (int32_t tok : {0, 1, 3}) p.Edit(r, tok, -kInf);
  }
  for (int32_t r : {4, 5}) {
    for (int32_t tok = 0; tok < 4; ++tok) p.Edit(r, tok, -kInf);
  }
  const Result r = RunCpu(p);
  EXPECT_EQ(r.token, (std::vector<int64_t>{2, 2, 2, 2, -1, -1}));
  EXPECT_EQ(r.logprob[4], -kInf);
  EXPECT_EQ(r.logprob[5], -kInf);
  ExpectSame(r, Brute(p));
}

TEST(TokenSamplerCpu, UniformAtTheEndsTakesTheFirstAndLastKeptIds) {
  const std::vector<float> x = {0, 0, 0, 0};
  Problem p = Small(x);
  p.AddRow(x, 1.0f, 0, 1.0f, 0.0f, 0.0);
  p.AddRow(x, 1.0f, 0, 1.0f, 0.0f, 1e-12);
  p.AddRow(x, 1.0f, 0, 1.0f, 0.0f, std::nextafter(1.0, 0.0));
  p.AddRow(x, 1.0f, 0, 1.0f, 0.0f, 0.49);
  p.AddRow(x, 1.0f, 0, 1.0f, 0.0f, 0.51);
  EXPECT_EQ(RunCpu(p).token, (std::vector<int64_t>{0, 0, 3, 1, 2}));
}

TEST(TokenSamplerCpu, TopKKeepsTiesAtTheThreshold) {
  const std::vector<float> x = {5, 4, 1, 4, 4, 0};
  Problem p = Small(x);
  const double u_last = 1 - 1e-12;
  p.AddRow(x, 1.0f, 2, 1.0f, 0.0f, u_last);  // keeps {0, 1, 3, 4}
  p.AddRow(x, 1.0f, 1, 1.0f, 0.0f, u_last);  // keeps {0}
  p.AddRow(x, 1.0f, 5, 1.0f, 0.0f, u_last);  // keeps {0, 1, 2, 3, 4}
  p.AddRow(x, 1.0f, 6, 1.0f, 0.0f, u_last);  // off: keeps all
  EXPECT_EQ(RunCpu(p).token, (std::vector<int64_t>{4, 0, 4, 5}));
  ExpectSame(RunCpu(p), Brute(p));
}

TEST(TokenSamplerCpu, TopPTakesWholeTieGroups) {
  // e = {1, 1, e^-1, e^-1, e^-5}: the top group alone has 2 / 2.74 = 73 %.
  const std::vector<float> x = {0, -1, 0, -1, -5};
  Problem p = Small(x);
  const double u_last = 1 - 1e-12;
  p.AddRow(x, 1.0f, 0, 0.5f, 0.0f, u_last);    // {0, 2}
  p.AddRow(x, 1.0f, 0, 0.72f, 0.0f, u_last);   // {0, 2}
  p.AddRow(x, 1.0f, 0, 0.74f, 0.0f, u_last);   // {0, 1, 2, 3}
  p.AddRow(x, 1.0f, 0, 0.0f, 0.0f, u_last);    // {0, 2}
  p.AddRow(x, 1.0f, 0, 0.999f, 0.0f, u_last);  // all
  EXPECT_EQ(RunCpu(p).token, (std::vector<int64_t>{2, 2, 3, 2, 4}));
  ExpectSame(RunCpu(p), Brute(p));
}

TEST(TokenSamplerCpu, MinPDropsRelativeToTheTopToken) {
  // e = {1, e^-1 = 0.37, e^-2 = 0.14}
  const std::vector<float> x = {2, 1, 0};
  Problem p = Small(x);
  const double u_last = 1 - 1e-12;
  p.AddRow(x, 1.0f, 0, 1.0f, 0.2f, u_last);  // {0, 1}
  p.AddRow(x, 1.0f, 0, 1.0f, 0.5f, u_last);  // {0}
  p.AddRow(x, 1.0f, 0, 1.0f, 0.1f, u_last);  // all
  p.AddRow(x, 2.0f, 0, 1.0f, 0.5f, u_last);  // t = 2: e = {1, 0.61, 0.37}
  EXPECT_EQ(RunCpu(p).token, (std::vector<int64_t>{1, 0, 2, 1}));
}

TEST(TokenSamplerCpu, BiasShiftsTheDrawAndSoftcapBoundsTheLogits) {
  const std::vector<float> x = {100, 0, -100};
  Problem p = Small(x);
  p.softcap = 30.0f;
  p.AddRow(x, 0.0f);
  p.Edit(0, 1, 40.0f);  // z = {28.9, 0, -28.9}: 0 + 40 wins
  const Result r = RunCpu(p);
  EXPECT_EQ(r.token[0], 1);
  const double z0 = 30.0 * std::tanh(100.0 / 30.0);
  const double lse = z0 + std::log(1 + std::exp(-z0) + std::exp(-2 * z0));
  EXPECT_NEAR(r.logprob[0], 0.0 - lse, 1e-5);
}

// ---- argument checks -------------------------------------------------------

TEST(TokenSamplerCpu, BadArgumentsNameTheField) {
  const std::vector<float> x = {1, 2, 3};
  Problem p = Small(x);
  p.AddRow(x, 1.0f);
  p.Edit(0, 1, 1.0f);
  Result out;
  int32_t count = 0;
  auto expect_invalid = [&](const char* field, auto mutate) {
    TokenSamplerArgs a = ArgsFor(p, &out, &count);
    mutate(a);
    const absl::Status s = TokenSamplerCpu(a);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(std::string(s.message()), HasSubstr(field));
  };
  expect_invalid("rows", [](TokenSamplerArgs& a) { a.rows = 0; });
  expect_invalid("vocab", [](TokenSamplerArgs& a) { a.vocab = 0; });
  expect_invalid("row_stride", [](TokenSamplerArgs& a) { a.row_stride = 2; });
  expect_invalid("softcap", [](TokenSamplerArgs& a) { a.softcap = -1; });
  expect_invalid("logits", [](TokenSamplerArgs& a) { a.logits = nullptr; });
  expect_invalid("uniform", [](TokenSamplerArgs& a) { a.uniform = nullptr; });
  expect_invalid("token", [](TokenSamplerArgs& a) { a.token = nullptr; });
  const float nan = std::nanf("");
  const int32_t neg_k = -1;
  const float big_p = 1.5f;
  const double one = 1.0;
  const int32_t bad_row = 1, bad_token = 3, too_many = 2;
  const float pos_inf = kInf;
  expect_invalid("temperature",
                 [&](TokenSamplerArgs& a) { a.temperature = &nan; });
  expect_invalid("top_k", [&](TokenSamplerArgs& a) { a.top_k = &neg_k; });
  expect_invalid("top_p", [&](TokenSamplerArgs& a) { a.top_p = &big_p; });
  expect_invalid("min_p", [&](TokenSamplerArgs& a) { a.min_p = &big_p; });
  expect_invalid("uniform", [&](TokenSamplerArgs& a) { a.uniform = &one; });
  expect_invalid("edit_capacity",
                 [](TokenSamplerArgs& a) { a.edit_capacity = -1; });
  expect_invalid("edit_count",
                 [&](TokenSamplerArgs& a) { a.edit_count = &too_many; });
  expect_invalid("edit_count",
                 [](TokenSamplerArgs& a) { a.edit_count = nullptr; });
  expect_invalid("edit_row",
                 [&](TokenSamplerArgs& a) { a.edit_row = &bad_row; });
  expect_invalid("edit_token",
                 [&](TokenSamplerArgs& a) { a.edit_token = &bad_token; });
  expect_invalid("edit_value",
                 [&](TokenSamplerArgs& a) { a.edit_value = &pos_inf; });
  // No edits: the edit pointers may be null.
  TokenSamplerArgs a = ArgsFor(p, &out, &count);
  a.edit_capacity = 0;
  a.edit_row = nullptr;
  a.edit_token = nullptr;
  a.edit_value = nullptr;
  a.edit_count = nullptr;
  EXPECT_TRUE(TokenSamplerCpu(a).ok());
}

TEST(TokenSamplerCpu, WorkspaceHoldsZbAndOneDoublePerRow) {
  EXPECT_EQ(TokenSamplerWorkspaceBytes(1, 262144), 262144 * 4 + 8);
  EXPECT_EQ(TokenSamplerWorkspaceBytes(3, 3), 48 + 24);
}

}  // namespace
}  // namespace sweepd::kernels
