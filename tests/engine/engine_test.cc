#include "worker/engine/engine.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "common/fs.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/engine/model_generator.h"

namespace sweepd::engine {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

std::string SourceDir() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return d != nullptr ? d : ".";
}

std::string TinyConfigPath() {
  return SourceDir() + "/configs/models/gemma4-tiny.json";
}

std::string NewTempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/engine_test_" +
                    std::to_string(getpid()) + "_" + name;
  const absl::Status removed = RemoveAll(dir);
  EXPECT_TRUE(removed.ok()) << removed;
  const absl::Status made = MakeDirs(dir);
  EXPECT_TRUE(made.ok()) << made;
  return dir;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// Max |a - b| / max |b|.
double RelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den == 0 ? num : num / den;
}

ForwardRequest MakeRequest(int64_t batch, int64_t seq, int vocab,
                           uint32_t seed = 7) {
  std::mt19937 rng(seed);
  ForwardRequest r;
  r.batch = batch;
  r.seq = seq;
  r.tokens.resize(batch * seq);
  for (auto& t : r.tokens) t = static_cast<int32_t>(rng() % vocab);
  return r;
}

std::unique_ptr<Engine> MakeEngine(const std::string& dir, int tp,
                                   DType dtype = DType::kFloat32) {
  EngineOptions o;
  o.model_dir = dir;
  o.tp_size = tp;
  o.dtype = dtype;
  o.cpu_threads_per_rank = 1;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

ForwardResult RunFwd(Engine* e, const ForwardRequest& r) {
  auto res = e->Forward(r);
  EXPECT_TRUE(res.ok()) << res.status();
  return res.ok() ? std::move(*res) : ForwardResult();
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(NewTempDir("tiny"));
    ASSERT_TRUE(MakeRandomModel(TinyConfigPath(), /*seed=*/11, *dir_).ok());
    // Variant with a v_proj on full layers (no K = V) and 2 KV heads
    // everywhere.
    std::string cfg = ReadFile(TinyConfigPath());
    json j = json::parse(cfg);
    j["attention_k_eq_v"] = false;
    j.erase("num_global_key_value_heads");
    const std::string variant_cfg = *dir_ + "_variant.json";
    WriteFile(variant_cfg, j.dump());
    variant_dir_ = new std::string(NewTempDir("variant"));
    ASSERT_TRUE(MakeRandomModel(variant_cfg, /*seed=*/5, *variant_dir_).ok());
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete variant_dir_;
  }
  static std::string* dir_;
  static std::string* variant_dir_;
};
std::string* EngineTest::dir_ = nullptr;
std::string* EngineTest::variant_dir_ = nullptr;

TEST_F(EngineTest, GeneratedDirectoryIsComplete) {
  EXPECT_TRUE(PathExists(*dir_ + "/config.json"));
  EXPECT_TRUE(PathExists(*dir_ + "/model.safetensors"));
  EXPECT_TRUE(PathExists(*dir_ + "/tokenizer.json"));
  auto ckpt = Checkpoint::Open(*dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->Find("model.layers.2.self_attn.v_proj.weight"),
            nullptr);  // K = V
  ASSERT_NE((*ckpt)->Find("model.layers.0.self_attn.v_proj.weight"), nullptr);
  const TensorView* k = (*ckpt)->Find("model.layers.2.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{32, 64}));
  // layer_scalar values are random and not 1.
  std::set<float> scalars;
  for (int L = 0; L < 6; ++L) {
    const TensorView* s =
        (*ckpt)->Find("model.layers." + std::to_string(L) + ".layer_scalar");
    ASSERT_NE(s, nullptr);
    float v;
    std::memcpy(&v, s->data, 4);
    EXPECT_NE(v, 1.0f);
    scalars.insert(v);
  }
  EXPECT_EQ(scalars.size(), 6u);
}

TEST_F(EngineTest, TensorParallelMatchesSingleRank) {
  for (const std::string* dir : {dir_, variant_dir_}) {
    SCOPED_TRACE(*dir);
    auto e1 = MakeEngine(*dir, 1);
    ForwardRequest req = MakeRequest(2, 24, 512);
    req.return_logits = true;
    ForwardResult ref = RunFwd(e1.get(), req);
    ASSERT_EQ(ref.logits.shape, (std::vector<int64_t>{2, 24, 512}));
    for (int tp : {2, 4}) {
      SCOPED_TRACE(tp);
      auto e = MakeEngine(*dir, tp);
      ForwardResult got = RunFwd(e.get(), req);
      EXPECT_LE(RelDiff(got.logits.data, ref.logits.data), 1e-5);
      EXPECT_LE(RelDiff(got.nll, ref.nll), 1e-5);
    }
  }
}

TEST_F(EngineTest, NllMatchesLogSoftmaxOfLogits) {
  auto e = MakeEngine(*dir_, 2);
  ForwardRequest req = MakeRequest(2, 12, 512);
  req.return_logits = true;
  req.targets.assign(24, -1);
  for (int i = 0; i < 24; i += 3) req.targets[i] = (i * 37) % 512;
  ForwardResult r = RunFwd(e.get(), req);
  for (int i = 0; i < 24; ++i) {
    const float* z = &r.logits.data[i * 512];
    if (req.targets[i] < 0) {
      EXPECT_EQ(r.target_valid[i], 0);
      EXPECT_EQ(r.nll[i], 0.0f);
      continue;
    }
    double mx = *std::max_element(z, z + 512), sum = 0;
    for (int v = 0; v < 512; ++v) sum += std::exp(z[v] - mx);
    const double expected = mx + std::log(sum) - z[req.targets[i]];
    EXPECT_EQ(r.target_valid[i], 1);
    EXPECT_NEAR(r.nll[i], expected, 1e-5 * std::max(1.0, expected)) << i;
  }
  // Default targets: next token, last position ignored.
  ForwardRequest next = MakeRequest(1, 8, 512);
  ForwardResult n = RunFwd(e.get(), next);
  EXPECT_EQ(n.target_valid.back(), 0);
  EXPECT_GT(n.nll[0], 0.0f);
}

TEST_F(EngineTest, CapturePointsShapesAndContinuity) {
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    ForwardRequest req = MakeRequest(2, 10, 512);
    for (int L = 0; L < 6; ++L) {
      for (const char* k : {"resid_in", "resid_out", "attn_heads", "mlp_in"}) {
        req.captures.push_back(std::string(k) + "[" + std::to_string(L) + "]");
      }
    }
    req.captures.push_back("hidden_states[0]");
    req.captures.push_back("hidden_states[3]");
    req.captures.push_back("hidden_states[6]");
    ForwardResult r = RunFwd(e.get(), req);
    for (int L = 0; L < 6; ++L) {
      const std::string l = "[" + std::to_string(L) + "]";
      const int hd = (L == 2 || L == 5) ? 32 : 16;
      EXPECT_EQ(r.captures["resid_in" + l].shape,
                (std::vector<int64_t>{2, 10, 64}));
      EXPECT_EQ(r.captures["mlp_in" + l].shape,
                (std::vector<int64_t>{2, 10, 64}));
      EXPECT_EQ(r.captures["attn_heads" + l].shape,
                (std::vector<int64_t>{2, 10, 4, hd}));
      if (L + 1 < 6) {
        EXPECT_EQ(r.captures["resid_out" + l].data,
                  r.captures["resid_in[" + std::to_string(L + 1) + "]"].data);
      }
    }
    EXPECT_EQ(r.captures["hidden_states[0]"].data,
              r.captures["resid_in[0]"].data);
    EXPECT_EQ(r.captures["hidden_states[3]"].data,
              r.captures["resid_out[2]"].data);
    // hidden_states[N] is after the final norm (transformers replaces the last
    // entry).
    EXPECT_NE(r.captures["hidden_states[6]"].data,
              r.captures["resid_out[5]"].data);
    EXPECT_EQ(r.captures["hidden_states[6]"].shape,
              (std::vector<int64_t>{2, 10, 64}));
  }
}

TEST_F(EngineTest, SkipIsIdentityWithoutLayerScalar) {
  auto e = MakeEngine(*dir_, 2);
  ForwardRequest req = MakeRequest(1, 12, 512);
  req.captures = {"resid_in[3]", "resid_out[3]"};
  ForwardResult base = RunFwd(e.get(), req);
  req.interventions = {Intervention::Skip(3)};
  ForwardResult skip = RunFwd(e.get(), req);
  EXPECT_EQ(skip.captures["resid_out[3]"].data,
            skip.captures["resid_in[3]"].data);
  EXPECT_EQ(skip.captures["resid_in[3]"].data,
            base.captures["resid_in[3]"].data);
  EXPECT_GT(RelDiff(skip.nll, base.nll), 1e-4);
  EXPECT_EQ(skip.layer_forwards, 5);
  EXPECT_EQ(base.layer_forwards, 6);
}

TEST_F(EngineTest, ZeroKeepsPostNormsAndLayerScalar) {
  auto ckpt = Checkpoint::Open(*dir_);
  ASSERT_TRUE(ckpt.ok());
  for (int layer : {1, 2}) {  // a sliding and a full (K = V) layer
    SCOPED_TRACE(layer);
    float scalar;
    std::memcpy(
        &scalar,
        (*ckpt)
            ->Find("model.layers." + std::to_string(layer) + ".layer_scalar")
            ->data,
        4);
    auto e = MakeEngine(*dir_, 2);
    ForwardRequest req = MakeRequest(1, 12, 512);
    const std::string l = "[" + std::to_string(layer) + "]";
    req.captures = {"resid_in" + l, "resid_out" + l};
    req.interventions = {Intervention::Zero(layer)};
    ForwardResult r = RunFwd(e.get(), req);
    const auto& in = r.captures["resid_in" + l].data;
    const auto& out = r.captures["resid_out" + l].data;
    std::vector<float> scaled(in.size());
    for (size_t i = 0; i < in.size(); ++i) scaled[i] = in[i] * scalar;
    EXPECT_LE(RelDiff(out, scaled), 1e-6);
  }
}

TEST_F(EngineTest, MaskHeadsChangesOnlyThoseHeads) {
  auto e1 = MakeEngine(*dir_, 1);
  auto e2 = MakeEngine(*dir_, 2);
  ForwardRequest req = MakeRequest(1, 12, 512);
  req.captures = {"resid_in[2]", "attn_heads[2]", "resid_out[2]"};
  ForwardResult base = RunFwd(e1.get(), req);
  req.interventions = {
      Intervention::MaskHeads(2, {1, 2})};  // heads on both ranks at TP=2
  ForwardResult m1 = RunFwd(e1.get(), req);
  ForwardResult m2 = RunFwd(e2.get(), req);
  EXPECT_EQ(m1.captures["resid_in[2]"].data, base.captures["resid_in[2]"].data);
  const auto& heads = m1.captures["attn_heads[2]"];
  const auto& ref = base.captures["attn_heads[2]"];
  const int64_t H = 4, hd = 32;
  for (int64_t s = 0; s < 12; ++s) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t d = 0; d < hd; ++d) {
        const int64_t i = (s * H + h) * hd + d;
        if (h == 1 || h == 2) {
          ASSERT_EQ(heads.data[i], 0.0f);
        } else {
          ASSERT_EQ(heads.data[i], ref.data[i]);
        }
      }
    }
  }
  EXPECT_GT(RelDiff(m1.captures["resid_out[2]"].data,
                    base.captures["resid_out[2]"].data),
            1e-5);
  EXPECT_LE(RelDiff(m2.nll, m1.nll), 1e-5);
  EXPECT_LE(RelDiff(m2.captures["attn_heads[2]"].data, heads.data), 1e-5);
}

TEST_F(EngineTest, ReinitIsDeterministicBySeedAndTpInvariant) {
  auto e1 = MakeEngine(*dir_, 1);
  auto e4 = MakeEngine(*dir_, 4);
  ForwardRequest req = MakeRequest(1, 12, 512);
  ForwardResult base = RunFwd(e1.get(), req);
  req.interventions = {Intervention::Reinit(4, 99)};
  ForwardResult a = RunFwd(e1.get(), req);
  ForwardResult b = RunFwd(e1.get(), req);
  ForwardResult c = RunFwd(e4.get(), req);
  req.interventions = {Intervention::Reinit(4, 100)};
  ForwardResult d = RunFwd(e1.get(), req);
  EXPECT_EQ(a.nll, b.nll);
  EXPECT_LE(RelDiff(c.nll, a.nll), 1e-5);
  EXPECT_GT(RelDiff(d.nll, a.nll), 1e-6);
  EXPECT_GT(RelDiff(a.nll, base.nll), 1e-6);
}

TEST_F(EngineTest, PrefixReuseEqualsFullForward) {
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    ForwardRequest base = MakeRequest(2, 16, 512);
    base.keep_prefix_state = true;
    ForwardResult b = RunFwd(e.get(), base);
    ASSERT_NE(b.prefix_state, nullptr);
    EXPECT_EQ(b.prefix_state->valid_until(), 6);
    for (int L = 1; L < 6; ++L) {
      SCOPED_TRACE(L);
      ForwardRequest full = MakeRequest(2, 16, 512);
      full.return_logits = true;
      full.interventions = {Intervention::Skip(L)};
      ForwardResult f = RunFwd(e.get(), full);
      ForwardRequest reuse = full;
      reuse.start_from = b.prefix_state;
      reuse.start_layer = L;
      ForwardResult r = RunFwd(e.get(), reuse);
      EXPECT_LE(RelDiff(r.nll, f.nll), 1e-6);
      EXPECT_LE(RelDiff(r.logits.data, f.logits.data), 1e-6);
      EXPECT_EQ(f.layer_forwards, 5);
      EXPECT_EQ(r.layer_forwards, 5 - L);
    }
  }
}

TEST_F(EngineTest, PrefixStateBudgetMovesToHostAndStillMatches) {
  EngineOptions o;
  o.model_dir = *dir_;
  o.tp_size = 2;
  o.prefix_device_budget_bytes = 3 * 16 * 64 * 4;  // three residuals per rank
  o.cpu_threads_per_rank = 1;
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok());
  ForwardRequest base = MakeRequest(1, 16, 512);
  base.keep_prefix_state = true;
  ForwardResult b = RunFwd(e->get(), base);
  EXPECT_EQ(b.prefix_state->device_bytes(), 2 * 3 * 16 * 64 * 4);
  EXPECT_EQ(b.prefix_state->host_bytes(), 2 * 4 * 16 * 64 * 4);
  ForwardRequest reuse = MakeRequest(1, 16, 512);
  reuse.interventions = {Intervention::Zero(5)};
  ForwardResult f = RunFwd(e->get(), reuse);
  reuse.start_from = b.prefix_state;
  reuse.start_layer = 5;
  ForwardResult r = RunFwd(e->get(), reuse);
  EXPECT_LE(RelDiff(r.nll, f.nll), 1e-6);
}

TEST_F(EngineTest, PrefixReuseRefusesInvalidStarts) {
  auto e = MakeEngine(*dir_, 1);
  ForwardRequest base = MakeRequest(1, 8, 512);
  base.keep_prefix_state = true;
  base.interventions = {Intervention::Skip(3)};
  ForwardResult b = RunFwd(e.get(), base);
  EXPECT_EQ(b.prefix_state->valid_until(), 3);

  ForwardRequest r = MakeRequest(1, 8, 512);
  r.start_from = b.prefix_state;
  r.start_layer = 4;
  r.interventions = {Intervention::Skip(5)};
  EXPECT_THAT(e->Forward(r).status().message(), HasSubstr("valid_until"));
  r.start_layer = 2;
  r.interventions = {Intervention::Skip(1)};
  EXPECT_THAT(e->Forward(r).status().message(),
              HasSubstr("first intervention"));
  ForwardRequest other = MakeRequest(1, 8, 512, /*seed=*/99);
  other.start_from = b.prefix_state;
  other.start_layer = 1;
  auto s = e->Forward(other);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("different tokens"));
}

TEST_F(EngineTest, LayerStatsLogitLensAndBlockInfluence) {
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    ForwardRequest req = MakeRequest(2, 12, 512);
    req.layer_stats = true;
    req.return_logits = true;
    req.interventions = {Intervention::Skip(1)};
    req.captures = {"resid_out[3]"};
    ForwardResult r = RunFwd(e.get(), req);
    ASSERT_EQ(r.layer_stats.size(), 6u);
    const LayerStats& last = r.layer_stats[5];
    for (int i = 0; i < 24; ++i) {
      const float* z = &r.logits.data[i * 512];
      if (!r.target_valid[i]) {
        EXPECT_EQ(last.target_rank[i], -1);
        continue;
      }
      const float zt = z[req.tokens[i + 1]];
      int64_t larger = 0;
      for (int v = 0; v < 512; ++v) larger += z[v] > zt;
      EXPECT_EQ(last.target_rank[i], larger) << i;
    }
    // Skipped layer: resid_out == resid_in, so BI is 0.
    for (float bi : r.layer_stats[1].block_influence)
      EXPECT_NEAR(bi, 0.0f, 1e-6);
    for (float bi : r.layer_stats[2].block_influence) EXPECT_GT(bi, 1e-4);
    // Residual norm matches the captured residual.
    const auto& h = r.captures["resid_out[3]"].data;
    for (int i = 0; i < 24; ++i) {
      double n = 0;
      for (int d = 0; d < 64; ++d)
        n += static_cast<double>(h[i * 64 + d]) * h[i * 64 + d];
      EXPECT_NEAR(r.layer_stats[3].resid_out_norm[i], std::sqrt(n),
                  1e-4 * std::sqrt(n));
    }
  }
}

// lens_positions ranks only where asked; everything else is unchanged.
TEST_F(EngineTest, LensPositionsLimitTheLogitLens) {
  auto e = MakeEngine(*dir_, 2);
  ForwardRequest full = MakeRequest(2, 12, 512);
  full.layer_stats = true;
  ForwardResult all = RunFwd(e.get(), full);
  ForwardRequest some = full;
  some.lens_positions.assign(24, 0);
  some.lens_positions[5] = 1;
  some.lens_positions[17] = 1;
  some.lens_positions[23] = 1;  // the last position of row 1 has no target
  ForwardResult part = RunFwd(e.get(), some);
  for (int L = 0; L < 6; ++L) {
    SCOPED_TRACE(L);
    for (int i = 0; i < 24; ++i) {
      const int64_t want =
          (i == 5 || i == 17) ? all.layer_stats[L].target_rank[i] : -1;
      EXPECT_EQ(part.layer_stats[L].target_rank[i], want) << i;
      EXPECT_EQ(part.layer_stats[L].block_influence[i],
                all.layer_stats[L].block_influence[i]);
    }
  }
  EXPECT_EQ(part.nll, all.nll);
  some.lens_positions.resize(23);
  auto bad = e->Forward(some);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("lens_positions"));
}

TEST_F(EngineTest, Bf16AgreesWithFp32InArgmax) {
  // The tiny config with initializer_range 0.5: logits of std ~4 instead of
  // ~0.16, so the top-1 is not a near-tie that bf16's 8-bit mantissa cannot
  // resolve (docs/ENGINE.md).
  json j = json::parse(ReadFile(TinyConfigPath()));
  j["initializer_range"] = 0.5;
  const std::string base = NewTempDir("bf16cfg");
  WriteFile(base + "/config.json", j.dump());
  const std::string f32_dir = NewTempDir("bf16_f32");
  const std::string bf16_dir = NewTempDir("bf16_bf16");
  ASSERT_TRUE(MakeRandomModel(base + "/config.json", 11, f32_dir).ok());
  MakeModelOptions mo;
  mo.dtype = "bfloat16";
  ASSERT_TRUE(MakeRandomModel(base + "/config.json", 11, bf16_dir, mo).ok());
  auto f32 = MakeEngine(f32_dir, 1);
  auto bf_served = MakeEngine(
      f32_dir, 2, DType::kBFloat16);  // fp32 checkpoint served in bf16
  auto bf_ckpt = MakeEngine(bf16_dir, 1, DType::kBFloat16);  // bf16 checkpoint
  ForwardRequest req = MakeRequest(4, 64, 512, 3);
  req.return_logits = true;
  ForwardResult ref = RunFwd(f32.get(), req);
  for (Engine* e : {bf_served.get(), bf_ckpt.get()}) {
    ForwardResult got = RunFwd(e, req);
    // Random Gaussian logits put the top-2 margin below bf16's resolution at a
    // few percent of positions, so agreement is required on positions whose
    // fp32 top-1 margin exceeds kMargin (about 4x the RMS bf16 logit error),
    // and reported over all positions.
    constexpr float kMargin = 0.25f;
    int agree = 0, decided = 0, agree_decided = 0;
    const int T = 4 * 64;
    for (int i = 0; i < T; ++i) {
      const float* a = &ref.logits.data[i * 512];
      const float* b = &got.logits.data[i * 512];
      const int64_t top = std::max_element(a, a + 512) - a;
      float second = -1e30f;
      for (int v = 0; v < 512; ++v) {
        if (v != top) second = std::max(second, a[v]);
      }
      const bool same = top == (std::max_element(b, b + 512) - b);
      agree += same;
      if (a[top] - second >= kMargin) {
        ++decided;
        agree_decided += same;
      }
    }
    std::cout << "bf16 argmax agreement: all " << agree << "/" << T
              << ", margin >= " << kMargin << ": " << agree_decided << "/"
              << decided << "\n";
    EXPECT_GE(decided, 0.75 * T);
    EXPECT_GE(agree_decided, 0.99 * decided);
    EXPECT_GE(agree, 0.93 * T);
    // Documented tolerance: relative RMS error of the bf16 logits <= 5 %.
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.logits.data.size(); ++i) {
      const double d =
          static_cast<double>(got.logits.data[i]) - ref.logits.data[i];
      num += d * d;
      den += static_cast<double>(ref.logits.data[i]) * ref.logits.data[i];
    }
    EXPECT_LE(std::sqrt(num / den), 0.05);
    EXPECT_LE(RelDiff(got.nll, ref.nll), 0.05);
  }
}

TEST_F(EngineTest, RandomWeightsEqualGeneratedCheckpoint) {
  EngineOptions o;
  o.random_weights = true;
  o.config_path = TinyConfigPath();
  o.seed = 11;
  o.tp_size = 2;
  auto rnd = Engine::Create(o);
  ASSERT_TRUE(rnd.ok()) << rnd.status();
  auto file = MakeEngine(*dir_, 1);
  ForwardRequest req = MakeRequest(1, 12, 512);
  req.return_logits = true;
  EXPECT_LE(RelDiff(RunFwd(rnd->get(), req).logits.data,
                    RunFwd(file.get(), req).logits.data),
            1e-5);
}

TEST_F(EngineTest, ShardedAndMultimodalCheckpointsLoad) {
  const std::string sharded = NewTempDir("sharded");
  MakeModelOptions mo;
  mo.shard_bytes = 200 * 1024;
  ASSERT_TRUE(MakeRandomModel(TinyConfigPath(), 11, sharded, mo).ok());
  EXPECT_TRUE(PathExists(sharded + "/model.safetensors.index.json"));

  // Multimodal layout: tensors under model.language_model., config under
  // text_config.
  const std::string mm = NewTempDir("multimodal");
  auto ckpt = Checkpoint::Open(*dir_);
  ASSERT_TRUE(ckpt.ok());
  SafetensorsWriter w;
  for (const std::string& name : (*ckpt)->names()) {
    const TensorView* t = (*ckpt)->Find(name);
    ASSERT_TRUE(w.Add("model.language_model." + name.substr(6), t->dtype,
                      t->shape, t->data, t->nbytes)
                    .ok());
  }
  ASSERT_TRUE(w.WriteFile(mm + "/model.safetensors").ok());
  json text = json::parse(ReadFile(*dir_ + "/config.json"));
  WriteFile(mm + "/config.json", json{{"text_config", text}}.dump());

  auto ref = MakeEngine(*dir_, 1);
  ForwardRequest req = MakeRequest(1, 12, 512);
  const std::vector<float> expected = RunFwd(ref.get(), req).nll;
  for (const std::string& d : {sharded, mm}) {
    auto e = MakeEngine(d, 2);
    ASSERT_NE(e, nullptr) << d;
    EXPECT_LE(RelDiff(RunFwd(e.get(), req).nll, expected), 1e-5) << d;
  }
}

TEST_F(EngineTest, ErrorsNameTheProblem) {
  EngineOptions o;
  o.model_dir = *dir_;
  o.tp_size = 3;
  auto s = Engine::Create(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("num_attention_heads 4"));

  // KV heads that neither divide nor are divided by tp: named with the layer.
  json j = json::parse(ReadFile(TinyConfigPath()));
  j["num_attention_heads"] = 6;
  j["num_key_value_heads"] = 3;
  const std::string cfg6 = NewTempDir("heads6") + "/config.json";
  WriteFile(cfg6, j.dump());
  EngineOptions r;
  r.random_weights = true;
  r.config_path = cfg6;
  r.tp_size = 2;
  s = Engine::Create(r);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("layer 0 (sliding_attention)"));

  // A config that disagrees with the checkpoint: the tensor is named.
  const std::string bad = NewTempDir("badshape");
  ASSERT_TRUE(
      CopyFile(*dir_ + "/model.safetensors", bad + "/model.safetensors").ok());
  json big = json::parse(ReadFile(*dir_ + "/config.json"));
  big["intermediate_size"] = 256;
  WriteFile(bad + "/config.json", big.dump());
  o.tp_size = 1;
  o.model_dir = bad;
  s = Engine::Create(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              HasSubstr("model.layers.0.mlp.gate_proj.weight"));

  auto e = MakeEngine(*dir_, 1);
  ForwardRequest req = MakeRequest(1, 4, 512);
  req.tokens[2] = 512;
  EXPECT_THAT(e->Forward(req).status().message(), HasSubstr("tokens[2]"));
  req = MakeRequest(1, 4, 512);
  req.captures = {"attn_heads[9]"};
  EXPECT_THAT(e->Forward(req).status().message(), HasSubstr("attn_heads[9]"));
  req.captures = {"attn_heads[1]"};
  req.interventions = {Intervention::Skip(1)};
  EXPECT_THAT(e->Forward(req).status().message(), HasSubstr("skipped layer"));
  req.captures.clear();
  req.interventions = {Intervention::MaskHeads(1, {4})};
  EXPECT_THAT(e->Forward(req).status().message(), HasSubstr("head 4"));
}

// Reconfigure changes only the forward-time options; the rest are fixed at
// Create and named when a caller tries to change them.
TEST_F(EngineTest, ReconfigureChangesOnlyForwardTimeOptions) {
  auto e = MakeEngine(*dir_, 1);
  ASSERT_NE(e, nullptr);
  EngineOptions o = e->options();
  o.tp_size = 2;
  absl::Status s = e->Reconfigure(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("EngineOptions.tp_size"));
  o = e->options();
  o.dtype = DType::kBFloat16;
  s = e->Reconfigure(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("EngineOptions.dtype"));
  EXPECT_EQ(e->options().dtype, DType::kFloat32);

  o = e->options();
  o.phase_profiling = true;
  o.attention_path = AttentionPath::kChunkedGemm;
  o.gemm_tuning = GemmTuning::kAutotune;
  o.chunked_query_block = 64;
  ASSERT_TRUE(e->Reconfigure(o).ok());
  EXPECT_TRUE(e->options().phase_profiling);
  EXPECT_EQ(e->options().attention_path, AttentionPath::kChunkedGemm);
  EXPECT_EQ(e->options().gemm_tuning, GemmTuning::kAutotune);
  EXPECT_EQ(e->options().chunked_query_block, 64);
  // On CPU the CUDA-path options change nothing: the reference backend.
  auto plain = MakeEngine(*dir_, 1);
  ASSERT_NE(plain, nullptr);
  const ForwardRequest req = MakeRequest(1, 8, 512);
  EXPECT_EQ(RunFwd(e.get(), req).nll, RunFwd(plain.get(), req).nll);
  EXPECT_TRUE(e->GemmTuningReport().empty());
  EXPECT_TRUE(e->CheckedAttentionKernels().empty());
}

// The phase profile is per engine: only an engine with phase_profiling
// records, TakePhaseProfile resets it, and another engine's forwards do not
// show up in it.
TEST_F(EngineTest, PhaseProfileIsPerEngine) {
  EngineOptions o;
  o.model_dir = *dir_;
  o.cpu_threads_per_rank = 1;
  o.phase_profiling = true;
  auto profiled = Engine::Create(o);
  ASSERT_TRUE(profiled.ok()) << profiled.status();
  auto quiet = MakeEngine(*dir_, 1);
  ASSERT_NE(quiet, nullptr);
  ForwardRequest req = MakeRequest(1, 8, 512);
  req.layer_stats = true;
  RunFwd(profiled->get(), req);
  RunFwd(profiled->get(), req);
  RunFwd(quiet.get(), req);

  const PhaseTimes p = (*profiled)->TakePhaseProfile();
  EXPECT_EQ(p.forwards, 2);
  EXPECT_FALSE(p.device_events);
  std::set<std::string> phases;
  for (const auto& [name, ms] : p.ms) {
    phases.insert(name);
    EXPECT_GE(ms, 0.0) << name;
  }
  for (const char* want :
       {"embed", "layer", "attention_sliding", "attention_full", "allreduce",
        "stats", "lm_head", "outputs"}) {
    EXPECT_EQ(phases.count(want), 1u) << want;
  }
  EXPECT_EQ((*profiled)->TakePhaseProfile().forwards, 0);
  const PhaseTimes q = quiet->TakePhaseProfile();
  EXPECT_EQ(q.forwards, 0);
  EXPECT_TRUE(q.ms.empty());
}

}  // namespace
}  // namespace sweepd::engine
