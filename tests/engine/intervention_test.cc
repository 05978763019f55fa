// Steering and replace_layer interventions of the engine (docs/ENGINE.md,
// "Interventions"), at TP 1 and 2 on CPU: adding zero changes nothing
// (bit-identical); adding or replacing at positions equals a forward started
// from the patched residual (a prefix state edited here); prefix reuse and
// kept states respect the steering; replace_layer with the layer's own
// weights is bit-identical to no intervention, and with other weights equals
// a checkpoint edited here (logits and probe statistics); TP 2 equals TP 1
// within 1e-5; greedy decoding under steering and replace_layer equals a full
// recompute; errors name the problem.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/decode.h"
#include "worker/engine/engine.h"
#include "worker/engine/model_generator.h"
#include "worker/engine/prefix_state.h"
#include "worker/engine/weights.h"

namespace sweepd::engine {
namespace {

using ::testing::HasSubstr;
using SteerMode = Intervention::SteerMode;

constexpr int kHidden = 64;
constexpr int kVocab = 512;

std::string TinyConfigPath() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return std::string(d != nullptr ? d : ".") +
         "/configs/models/gemma4-tiny.json";
}

std::string NewTempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/intervention_test_" +
                    std::to_string(getpid()) + "_" + name;
  EXPECT_TRUE(RemoveAll(dir).ok());
  EXPECT_TRUE(MakeDirs(dir).ok());
  return dir;
}

std::unique_ptr<Engine> MakeEngine(const std::string& dir, int tp) {
  EngineOptions o;
  o.model_dir = dir;
  o.tp_size = tp;
  o.cpu_threads_per_rank = 1;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

ForwardRequest MakeRequest(int64_t batch, int64_t seq, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  ForwardRequest r;
  r.batch = batch;
  r.seq = seq;
  r.tokens.resize(batch * seq);
  for (auto& t : r.tokens) t = static_cast<int32_t>(rng() % kVocab);
  r.return_logits = true;
  return r;
}

ForwardResult RunFwd(Engine* e, const ForwardRequest& r) {
  auto res = e->Forward(r);
  EXPECT_TRUE(res.ok()) << res.status();
  return res.ok() ? std::move(*res) : ForwardResult();
}

std::vector<float> RandomVector(uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, scale);
  std::vector<float> v(kHidden);
  for (float& x : v) x = n(rng);
  return v;
}

// max |a - b| / max |b|, as engine_test.cc measures TP differences.
double RelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den == 0 ? num : num / den;
}

// The float32 tensors of layer L of the checkpoint in `dir`, named relative to
// the layer.
std::map<std::string, std::vector<float>> LayerTensors(const std::string& dir,
                                                       int L) {
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  const std::string prefix = "model.layers." + std::to_string(L) + ".";
  std::map<std::string, std::vector<float>> out;
  for (const std::string& name : (*ckpt)->names()) {
    if (name.rfind(prefix, 0) != 0) continue;
    auto values = TensorToFloat(*(*ckpt)->Find(name));
    EXPECT_TRUE(values.ok());
    out[name.substr(prefix.size())] = *values;
  }
  return out;
}

std::vector<int64_t> ShapeOf(const std::string& dir, const std::string& name) {
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  return (*ckpt)->Find(name)->shape;
}

// A replace_layer file: each tensor as F32, or as BF16 when named in `bf16`.
std::string WriteLayerFile(
    const std::string& path, const std::string& model_dir, int L,
    const std::map<std::string, std::vector<float>>& tensors,
    const std::vector<std::string>& bf16 = {}) {
  SafetensorsWriter w;
  for (const auto& [name, values] : tensors) {
    const std::vector<int64_t> shape =
        ShapeOf(model_dir, "model.layers." + std::to_string(L) + "." + name);
    if (std::find(bf16.begin(), bf16.end(), name) != bf16.end()) {
      std::vector<uint16_t> b(values.size());
      for (size_t i = 0; i < values.size(); ++i) b[i] = FloatToBf16(values[i]);
      EXPECT_TRUE(
          w.Add(name, StDtype::kBF16, shape, b.data(), b.size() * 2).ok());
    } else {
      EXPECT_TRUE(
          w.Add(name, StDtype::kF32, shape, values.data(), values.size() * 4)
              .ok());
    }
  }
  EXPECT_TRUE(w.WriteFile(path).ok());
  return path;
}

// A copy of the checkpoint in `dir` with layer L's tensors in `edits` (float32
// values, names relative to the layer) replaced.
std::string WriteEditedCheckpoint(
    const std::string& dir, const std::string& out_dir, int L,
    const std::map<std::string, std::vector<float>>& edits) {
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  const std::string prefix = "model.layers." + std::to_string(L) + ".";
  SafetensorsWriter w;
  for (const std::string& name : (*ckpt)->names()) {
    const TensorView* tv = (*ckpt)->Find(name);
    auto it = name.rfind(prefix, 0) == 0
                  ? edits.find(name.substr(prefix.size()))
                  : edits.end();
    if (it != edits.end()) {
      EXPECT_TRUE(w.Add(name, StDtype::kF32, tv->shape, it->second.data(),
                        it->second.size() * 4)
                      .ok());
    } else {
      EXPECT_TRUE(w.Add(name, tv->dtype, tv->shape, tv->data, tv->nbytes).ok());
    }
  }
  EXPECT_TRUE(w.WriteFile(out_dir + "/model.safetensors").ok());
  EXPECT_TRUE(CopyFile(dir + "/config.json", out_dir + "/config.json").ok());
  return out_dir;
}

// A copy of `state` whose residual entering `layer` has `fn` applied to the
// row of (b, p) on every rank.
std::shared_ptr<const PrefixState> Patched(
    const std::shared_ptr<PrefixState>& state, int layer,
    const std::vector<std::pair<int64_t, int64_t>>& rows,
    const std::function<void(float* row)>& fn) {
  const auto* impl =
      dynamic_cast<const internal::PrefixStateImpl*>(state.get());
  EXPECT_NE(impl, nullptr);
  auto copy = std::make_shared<internal::PrefixStateImpl>(*impl);
  for (auto& rank : copy->resid) {
    at::Tensor t = rank[layer].to(at::kCPU).clone().contiguous();
    for (const auto& [b, p] : rows) {
      fn(t.data_ptr<float>() + (b * t.size(1) + p) * kHidden);
    }
    rank[layer] = t;
  }
  return copy;
}

class InterventionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(NewTempDir("tiny"));
    ASSERT_TRUE(MakeRandomModel(TinyConfigPath(), /*seed=*/11, *dir_).ok());
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string* dir_;
};
std::string* InterventionTest::dir_ = nullptr;

TEST_F(InterventionTest, SteeringByAddingZeroChangesNothing) {
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    ForwardRequest req = MakeRequest(2, 12);
    req.layer_stats = true;
    ForwardResult base = RunFwd(e.get(), req);
    const std::vector<float> zero(kHidden, 0.0f);
    for (const std::vector<int>& positions :
         {std::vector<int>{}, std::vector<int>{0, 5, -1}}) {
      req.interventions = {
          Intervention::Steer(0, SteerMode::kAdd, zero, 3.0, positions),
          Intervention::Steer(3, SteerMode::kAdd, zero, 1.0, positions)};
      ForwardResult r = RunFwd(e.get(), req);
      EXPECT_EQ(r.logits.data, base.logits.data);
      EXPECT_EQ(r.nll, base.nll);
      for (int L = 0; L < 6; ++L) {
        EXPECT_EQ(r.layer_stats[L].block_influence,
                  base.layer_stats[L].block_influence);
        EXPECT_EQ(r.layer_stats[L].target_rank,
                  base.layer_stats[L].target_rank);
      }
    }
    // A vector scaled by 0 is zero too; a non-zero one changes the logits.
    req.interventions = {
        Intervention::Steer(2, SteerMode::kAdd, RandomVector(1), 0.0)};
    EXPECT_EQ(RunFwd(e.get(), req).logits.data, base.logits.data);
    req.interventions = {
        Intervention::Steer(2, SteerMode::kAdd, RandomVector(1), 1.0)};
    EXPECT_NE(RunFwd(e.get(), req).logits.data, base.logits.data);
  }
}

TEST_F(InterventionTest, SteeringAtPositionsEqualsForwardFromPatchedResidual) {
  constexpr int64_t kSeq = 12;
  const int layer = 2;
  const std::vector<float> v = RandomVector(3, 2.0f);
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    ForwardRequest req = MakeRequest(2, kSeq);
    req.keep_prefix_state = true;
    ForwardResult base = RunFwd(e.get(), req);
    ASSERT_NE(base.prefix_state, nullptr);
    // Positions 3 and -2 (= 10) of both sequences; 40 lies outside them.
    const std::vector<std::pair<int64_t, int64_t>> rows = {
        {0, 3}, {0, 10}, {1, 3}, {1, 10}};
    for (SteerMode mode : {SteerMode::kAdd, SteerMode::kReplace}) {
      SCOPED_TRACE(static_cast<int>(mode));
      ForwardRequest steered = MakeRequest(2, kSeq);
      steered.interventions = {
          Intervention::Steer(layer, mode, v, 0.5, {3, -2, 40})};
      steered.captures = {"resid_in[2]", "resid_out[1]"};
      ForwardResult got = RunFwd(e.get(), steered);

      ForwardRequest ref = MakeRequest(2, kSeq);
      ref.start_from = Patched(base.prefix_state, layer, rows, [&](float* r) {
        for (int i = 0; i < kHidden; ++i) {
          const float d = static_cast<float>(0.5 * v[i]);
          r[i] = mode == SteerMode::kAdd ? r[i] + d : d;
        }
      });
      ref.start_layer = layer;
      ref.captures = {"resid_in[2]"};
      ForwardResult want = RunFwd(e.get(), ref);
      EXPECT_EQ(got.logits.data, want.logits.data);
      EXPECT_EQ(got.nll, want.nll);
      // resid_in[L] shows what layer L reads; resid_out[L-1] the residual
      // before steering.
      EXPECT_EQ(got.captures["resid_in[2]"].data,
                want.captures["resid_in[2]"].data);
      EXPECT_NE(got.captures["resid_in[2]"].data,
                got.captures["resid_out[1]"].data);
      const std::vector<float>& in = got.captures["resid_in[2]"].data;
      EXPECT_EQ(in[(1 * kSeq + 10) * kHidden + 5],
                mode == SteerMode::kReplace
                    ? static_cast<float>(0.5 * v[5])
                    : got.captures["resid_out[1]"]
                              .data[(1 * kSeq + 10) * kHidden + 5] +
                          static_cast<float>(0.5 * v[5]));
    }
    // Replacing every position with the same vector: every position of layer
    // `layer` reads it.
    ForwardRequest all = MakeRequest(2, kSeq);
    all.interventions = {Intervention::Steer(layer, SteerMode::kReplace, v)};
    all.captures = {"resid_in[2]"};
    ForwardResult got = RunFwd(e.get(), all);
    std::vector<std::pair<int64_t, int64_t>> every;
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t p = 0; p < kSeq; ++p) every.push_back({b, p});
    }
    ForwardRequest ref = MakeRequest(2, kSeq);
    ref.start_from = Patched(base.prefix_state, layer, every, [&](float* r) {
      std::copy(v.begin(), v.end(), r);
    });
    ref.start_layer = layer;
    EXPECT_EQ(got.logits.data, RunFwd(e.get(), ref).logits.data);
  }
}

TEST_F(InterventionTest, SteeringWithPrefixReuseAndKeptStates) {
  const std::vector<float> v = RandomVector(4);
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    ForwardRequest base = MakeRequest(2, 10);
    base.keep_prefix_state = true;
    ForwardResult b = RunFwd(e.get(), base);
    for (int L : {0, 3, 5}) {
      SCOPED_TRACE(L);
      const std::vector<Intervention> iv = {
          Intervention::Steer(L, SteerMode::kAdd, v, 2.0, {1, -1})};
      ForwardRequest full = MakeRequest(2, 10);
      full.interventions = iv;
      full.keep_prefix_state = true;
      ForwardResult f = RunFwd(e.get(), full);
      ASSERT_NE(f.prefix_state, nullptr);
      EXPECT_EQ(f.prefix_state->valid_until(), L);
      // Started at the first touched layer from the unsteered pass.
      ForwardRequest reuse = MakeRequest(2, 10);
      reuse.interventions = iv;
      reuse.start_from = b.prefix_state;
      reuse.start_layer = L;
      ForwardResult r = RunFwd(e.get(), reuse);
      EXPECT_EQ(r.logits.data, f.logits.data);
      EXPECT_EQ(r.layer_forwards, 6 - L);
      // The steered forward's state keeps the residual before steering: an
      // unsteered forward from it equals the plain forward.
      ForwardRequest back = MakeRequest(2, 10);
      back.start_from = f.prefix_state;
      back.start_layer = L;
      EXPECT_EQ(RunFwd(e.get(), back).logits.data, b.logits.data);
    }
  }
}

TEST_F(InterventionTest, ReplaceLayerWithItsOwnWeightsIsBitIdentical) {
  const std::string tmp = NewTempDir("own");
  const auto layer3 = LayerTensors(*dir_, 3);
  const auto layer5 = LayerTensors(*dir_, 5);  // full layer, K = V
  ASSERT_EQ(layer5.count("self_attn.v_proj.weight"), 0u);
  const std::string full3 = WriteLayerFile(tmp + "/l3.st", *dir_, 3, layer3);
  const std::string full5 = WriteLayerFile(tmp + "/l5.st", *dir_, 5, layer5);
  const std::string part5 = WriteLayerFile(
      tmp + "/l5o.st", *dir_, 5,
      {{"self_attn.o_proj.weight", layer5.at("self_attn.o_proj.weight")},
       {"self_attn.k_proj.weight", layer5.at("self_attn.k_proj.weight")}});
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    ForwardRequest req = MakeRequest(2, 12);
    req.layer_stats = true;
    ForwardResult base = RunFwd(e.get(), req);
    for (const auto& iv :
         {std::vector<Intervention>{Intervention::ReplaceLayer(3, full3)},
          std::vector<Intervention>{Intervention::ReplaceLayer(5, full5),
                                    Intervention::ReplaceLayer(3, full3)},
          std::vector<Intervention>{Intervention::ReplaceLayer(5, part5)}}) {
      req.interventions = iv;
      ForwardResult r = RunFwd(e.get(), req);
      EXPECT_EQ(r.logits.data, base.logits.data);
      EXPECT_EQ(r.nll, base.nll);
      EXPECT_EQ(r.layer_stats[5].block_influence,
                base.layer_stats[5].block_influence);
    }
  }
}

// replace_layer and reinit weights are built once and reused by later
// forwards (the rank's LayerWeightsCache): repeated forwards give the same
// numbers as the first and as a fresh engine, a replacement file rewritten in
// place is rebuilt (its identity is part of the key), and the cache is an LRU
// of bounded size.
TEST_F(InterventionTest, InterventionWeightsAreCachedWithoutChangingNumbers) {
  const std::string tmp = NewTempDir("cache");
  std::mt19937 rng(41);
  std::normal_distribution<float> n(0.0f, 0.05f);
  auto random_o = [&] {
    std::vector<float> o(LayerTensors(*dir_, 4).at("self_attn.o_proj.weight"));
    for (float& x : o) x = n(rng);
    return o;
  };
  const std::string file = tmp + "/r4.st";
  WriteLayerFile(file, *dir_, 4, {{"self_attn.o_proj.weight", random_o()}});
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    ForwardRequest req = MakeRequest(2, 12);
    req.interventions = {Intervention::ReplaceLayer(4, file),
                         Intervention::Reinit(2, 99)};
    const ForwardResult first = RunFwd(e.get(), req);
    for (int i = 0; i < 3; ++i) {
      const ForwardResult again = RunFwd(e.get(), req);
      EXPECT_EQ(again.logits.data, first.logits.data);
      EXPECT_EQ(again.nll, first.nll);
    }
    auto fresh = MakeEngine(*dir_, tp);
    EXPECT_EQ(RunFwd(fresh.get(), req).logits.data, first.logits.data);
    // Another seed is another entry.
    ForwardRequest other = req;
    other.interventions[1] = Intervention::Reinit(2, 100);
    EXPECT_NE(RunFwd(e.get(), other).logits.data, first.logits.data);
    // The file rewritten (atomic rename: a new inode) is read again.
    const std::string copy = tmp + "/r4_before.st";
    ASSERT_TRUE(CopyFile(file, copy).ok());
    WriteLayerFile(file, *dir_, 4, {{"self_attn.o_proj.weight", random_o()}});
    const ForwardResult rewritten = RunFwd(e.get(), req);
    EXPECT_NE(rewritten.logits.data, first.logits.data);
    auto fresh2 = MakeEngine(*dir_, tp);
    EXPECT_EQ(RunFwd(fresh2.get(), req).logits.data, rewritten.logits.data);
    // Restore for the next TP degree.
    ASSERT_TRUE(CopyFile(copy, file + ".tmp").ok());
    ASSERT_EQ(std::rename((file + ".tmp").c_str(), file.c_str()), 0);
  }
}

TEST(LayerWeightsCacheTest, BuildsOnceKeepsTheMostRecentAndKeysFileIdentity) {
  using internal::LayerWeights;
  using internal::LayerWeightsCache;
  LayerWeightsCache cache(2);
  int built = 0;
  auto build = [&] {
    ++built;
    return std::make_shared<const LayerWeights>();
  };
  auto a = cache.GetOrBuild("a", build);
  EXPECT_EQ(cache.GetOrBuild("a", build), a);
  EXPECT_EQ(built, 1);
  cache.GetOrBuild("b", build);
  cache.GetOrBuild("a", build);  // a most recent
  cache.GetOrBuild("c", build);  // evicts b
  EXPECT_EQ(built, 3);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.GetOrBuild("a", build), a);
  cache.GetOrBuild("b", build);
  EXPECT_EQ(built, 4);
  EXPECT_EQ(cache.builds(), 4);
  LayerWeightsCache none(0);
  none.GetOrBuild("a", build);
  none.GetOrBuild("a", build);
  EXPECT_EQ(built, 6);
  EXPECT_EQ(none.size(), 0u);

  const std::string dir = NewTempDir("cache_key");
  const std::string f = dir + "/w.st";
  EXPECT_EQ(LayerWeightsCache::ReplaceKey(1, f), "");  // missing: no caching
  { std::ofstream(f) << "one"; }
  const std::string k1 = LayerWeightsCache::ReplaceKey(1, f);
  EXPECT_NE(k1, "");
  EXPECT_EQ(LayerWeightsCache::ReplaceKey(1, f), k1);
  EXPECT_NE(LayerWeightsCache::ReplaceKey(2, f), k1);
  { std::ofstream(f + ".new") << "two!"; }
  ASSERT_EQ(std::rename((f + ".new").c_str(), f.c_str()), 0);
  EXPECT_NE(LayerWeightsCache::ReplaceKey(1, f), k1);
  EXPECT_NE(LayerWeightsCache::ReinitKey(1, 5),
            LayerWeightsCache::ReinitKey(1, 6));
}

TEST_F(InterventionTest, ReplaceLayerEqualsAnEditedCheckpoint) {
  const std::string tmp = NewTempDir("edit");
  std::mt19937 rng(21);
  std::normal_distribution<float> n(0.0f, 0.05f);
  auto random_like = [&](const std::vector<float>& like, bool bf16) {
    std::vector<float> out(like.size());
    for (float& x : out) {
      x = n(rng);
      if (bf16) x = Bf16ToFloat(FloatToBf16(x));
    }
    return out;
  };
  // Layer 5 is full with one KV head (replicated at TP 2); layer 4 sliding.
  const auto l5 = LayerTensors(*dir_, 5);
  const auto l4 = LayerTensors(*dir_, 4);
  std::map<std::string, std::vector<float>> e5 = {
      {"self_attn.o_proj.weight",
       random_like(l5.at("self_attn.o_proj.weight"), true)},
      {"self_attn.k_proj.weight",
       random_like(l5.at("self_attn.k_proj.weight"), false)},
      {"pre_feedforward_layernorm.weight",
       random_like(l5.at("pre_feedforward_layernorm.weight"), false)},
      {"layer_scalar", {0.75f}}};
  std::map<std::string, std::vector<float>> e4 = {
      {"mlp.down_proj.weight",
       random_like(l4.at("mlp.down_proj.weight"), false)},
      {"mlp.up_proj.weight", random_like(l4.at("mlp.up_proj.weight"), false)},
      {"self_attn.q_proj.weight",
       random_like(l4.at("self_attn.q_proj.weight"), false)}};
  const std::string f5 =
      WriteLayerFile(tmp + "/l5.st", *dir_, 5, e5, {"self_attn.o_proj.weight"});
  const std::string f4 = WriteLayerFile(tmp + "/l4.st", *dir_, 4, e4);
  const std::string edited4 =
      WriteEditedCheckpoint(*dir_, NewTempDir("edited4"), 4, e4);
  const std::string edited =
      WriteEditedCheckpoint(edited4, NewTempDir("edited45"), 5, e5);
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    auto ref = MakeEngine(edited, tp);
    ForwardRequest req = MakeRequest(2, 12);
    req.layer_stats = true;
    ForwardResult want = RunFwd(ref.get(), req);
    req.interventions = {Intervention::ReplaceLayer(5, f5),
                         Intervention::ReplaceLayer(4, f4)};
    ForwardResult got = RunFwd(e.get(), req);
    EXPECT_EQ(got.logits.data, want.logits.data);
    EXPECT_EQ(got.nll, want.nll);
    for (int L = 0; L < 6; ++L) {
      EXPECT_EQ(got.layer_stats[L].block_influence,
                want.layer_stats[L].block_influence);
      EXPECT_EQ(got.layer_stats[L].target_rank,
                want.layer_stats[L].target_rank);
    }
    // Prefix reuse from the unedited pass starts at layer 4.
    ForwardRequest base = MakeRequest(2, 12);
    base.keep_prefix_state = true;
    ForwardResult b = RunFwd(e.get(), base);
    ForwardRequest reuse = MakeRequest(2, 12);
    reuse.interventions = req.interventions;
    reuse.start_from = b.prefix_state;
    reuse.start_layer = 4;
    ForwardResult r = RunFwd(e.get(), reuse);
    EXPECT_EQ(r.logits.data, want.logits.data);
    EXPECT_EQ(r.layer_forwards, 2);
    // Combined with a head mask on the same layer.
    req.interventions.push_back(Intervention::MaskHeads(5, {1}));
    ForwardRequest masked = MakeRequest(2, 12);
    masked.interventions = {Intervention::MaskHeads(5, {1})};
    EXPECT_EQ(RunFwd(e.get(), req).logits.data,
              RunFwd(ref.get(), masked).logits.data);
  }
}

// Layer-4 (sliding) and layer-5 (full, K = V) replacement files with random
// values, written under `tmp`.
std::vector<std::string> RandomReplacements(const std::string& model_dir,
                                            const std::string& tmp) {
  std::mt19937 rng(33);
  std::normal_distribution<float> n(0.0f, 0.05f);
  auto random_like = [&](const std::vector<float>& like) {
    std::vector<float> out(like.size());
    for (float& x : out) x = n(rng);
    return out;
  };
  const auto l4 = LayerTensors(model_dir, 4);
  const auto l5 = LayerTensors(model_dir, 5);
  return {WriteLayerFile(tmp + "/r4.st", model_dir, 4,
                         {{"mlp.down_proj.weight",
                           random_like(l4.at("mlp.down_proj.weight"))},
                          {"self_attn.o_proj.weight",
                           random_like(l4.at("self_attn.o_proj.weight"))}}),
          WriteLayerFile(tmp + "/r5.st", model_dir, 5,
                         {{"self_attn.k_proj.weight",
                           random_like(l5.at("self_attn.k_proj.weight"))},
                          {"layer_scalar", {1.25f}}})};
}

TEST_F(InterventionTest, TensorParallelEqualsTpOne) {
  const std::vector<std::string> files =
      RandomReplacements(*dir_, NewTempDir("tp"));
  const std::vector<Intervention> iv = {
      Intervention::Steer(1, SteerMode::kAdd, RandomVector(5, 2.0f), 1.5,
                          {0, 4, -1}),
      Intervention::Steer(3, SteerMode::kReplace, RandomVector(6), 1.0, {2}),
      Intervention::Steer(4, SteerMode::kAdd, RandomVector(7)),
      Intervention::ReplaceLayer(4, files[0]),
      Intervention::ReplaceLayer(5, files[1])};
  ForwardRequest req = MakeRequest(2, 12);
  req.interventions = iv;
  req.layer_stats = true;
  req.captures = {"resid_in[3]", "resid_out[4]"};
  auto e1 = MakeEngine(*dir_, 1);
  const ForwardResult want = RunFwd(e1.get(), req);
  ForwardRequest plain = MakeRequest(2, 12);
  ASSERT_GT(RelDiff(want.logits.data, RunFwd(e1.get(), plain).logits.data),
            1e-3);
  auto e2 = MakeEngine(*dir_, 2);
  const ForwardResult got = RunFwd(e2.get(), req);
  EXPECT_LE(RelDiff(got.logits.data, want.logits.data), 1e-5);
  EXPECT_LE(RelDiff(got.nll, want.nll), 1e-5);
  for (const char* c : {"resid_in[3]", "resid_out[4]"}) {
    EXPECT_LE(RelDiff(got.captures.at(c).data, want.captures.at(c).data), 1e-5)
        << c;
  }
  for (int L = 0; L < 6; ++L) {
    EXPECT_NEAR(got.layer_stats[L].block_influence[0],
                want.layer_stats[L].block_influence[0], 1e-5);
  }
}

int32_t Argmax(const float* z, int64_t n) {
  return static_cast<int32_t>(std::max_element(z, z + n) - z);
}

// Greedy decoding of `prompt` under `decode_iv` equals, token by token, the
// argmax of a full forward over the growing sequence under `forward_iv` (the
// same interventions with the prompt-relative steering positions resolved).
void ExpectGreedyDecodeMatchesRecompute(
    Engine* e, std::vector<int32_t> seq,
    const std::vector<Intervention>& decode_iv,
    const std::vector<Intervention>& forward_iv) {
  DecodeOptions o;
  o.interventions = decode_iv;
  o.max_sequences = 2;
  o.max_sequence_tokens = 64;
  o.page_size = 3;
  auto session = e->StartDecode(o);
  ASSERT_TRUE(session.ok()) << session.status();
  SamplingParams greedy;
  greedy.temperature = 0;
  auto first = (*session)->AddPrompt(seq, {greedy});
  ASSERT_TRUE(first.ok()) << first.status();
  std::vector<DecodedToken> step = *first;
  // The tiny model's window is 8: 14 new tokens decode past it.
  for (int i = 0; i < 14; ++i) {
    ForwardRequest r;
    r.tokens = seq;
    r.batch = 1;
    r.seq = static_cast<int64_t>(seq.size());
    r.return_logits = true;
    r.interventions = forward_iv;
    ForwardResult f = RunFwd(e, r);
    const float* last = f.logits.data.data() + (r.seq - 1) * kVocab;
    ASSERT_EQ(step[0].token, Argmax(last, kVocab)) << "token " << i;
    seq.push_back(step[0].token);
    auto next = (*session)->Step();
    ASSERT_TRUE(next.ok()) << next.status();
    step = *next;
  }
}

TEST_F(InterventionTest, DecodeUnderSteeringAndReplaceLayerEqualsRecompute) {
  const std::vector<std::string> files =
      RandomReplacements(*dir_, NewTempDir("decode"));
  const std::vector<int32_t> prompt = {2, 17, 300, 45, 9};
  const std::vector<float> v = RandomVector(8, 3.0f);
  const std::vector<float> w = RandomVector(9, 1.0f);
  // Prompt-relative -1 is the prompt's last token (4); 7 is the third
  // generated token; an empty list is every token.
  auto with = [&](std::vector<int> positions) {
    return std::vector<Intervention>{
        Intervention::Steer(2, SteerMode::kReplace, v, 1.0, positions),
        Intervention::Steer(3, SteerMode::kAdd, w, 2.0),
        Intervention::ReplaceLayer(4, files[0]),
        Intervention::ReplaceLayer(5, files[1]),
        Intervention::MaskHeads(5, {1})};
  };
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    ExpectGreedyDecodeMatchesRecompute(e.get(), prompt, with({1, -1, 7}),
                                       with({1, 4, 7}));
  }
}

TEST_F(InterventionTest, ErrorsNameTheProblem) {
  const std::string tmp = NewTempDir("errors");
  auto e = MakeEngine(*dir_, 1);
  const auto l2 = LayerTensors(*dir_, 2);
  auto forward = [&](std::vector<Intervention> iv) {
    ForwardRequest req = MakeRequest(1, 6);
    req.interventions = std::move(iv);
    return e->Forward(req).status();
  };
  EXPECT_THAT(forward({Intervention::Steer(1, SteerMode::kAdd,
                                           std::vector<float>(63, 0.0f))})
                  .message(),
              HasSubstr("the vector has 63 values, hidden_size is 64"));
  EXPECT_THAT(
      forward({Intervention::Steer(6, SteerMode::kAdd, RandomVector(1))})
          .message(),
      HasSubstr("layer 6 outside [0, 6)"));
  EXPECT_THAT(forward({Intervention::Steer(1, SteerMode::kAdd, RandomVector(1),
                                           std::nan(""))})
                  .message(),
              HasSubstr("scale nan is not finite"));
  EXPECT_THAT(
      forward({Intervention::ReplaceLayer(2, tmp + "/missing.st")}).message(),
      HasSubstr("missing.st"));
  // v_proj on a K = V layer; a name of another layer; a wrong shape.
  SafetensorsWriter w;
  const std::vector<float> k = l2.at("self_attn.k_proj.weight");
  ASSERT_TRUE(w.Add("self_attn.v_proj.weight", StDtype::kF32, {32, 64},
                    k.data(), k.size() * 4)
                  .ok());
  ASSERT_TRUE(w.WriteFile(tmp + "/v.st").ok());
  absl::Status s = forward({Intervention::ReplaceLayer(2, tmp + "/v.st")});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("tensor 'self_attn.v_proj.weight' is not a tensor of "
                        "layer 2"));
  SafetensorsWriter w2;
  ASSERT_TRUE(w2.Add("self_attn.k_proj.weight", StDtype::kF32, {64, 32},
                     k.data(), k.size() * 4)
                  .ok());
  ASSERT_TRUE(w2.WriteFile(tmp + "/shape.st").ok());
  EXPECT_THAT(
      forward({Intervention::ReplaceLayer(2, tmp + "/shape.st")}).message(),
      HasSubstr("has shape [64, 32], layer 2 needs [32, 64]"));
  SafetensorsWriter w3;
  ASSERT_TRUE(w3.WriteFile(tmp + "/empty.st").ok());
  EXPECT_THAT(
      forward({Intervention::ReplaceLayer(2, tmp + "/empty.st")}).message(),
      HasSubstr("holds no tensor of layer 2"));
  const std::string ok = WriteLayerFile(tmp + "/ok.st", *dir_, 2, l2);
  EXPECT_THAT(
      forward({Intervention::ReplaceLayer(2, ok), Intervention::Reinit(2, 1)})
          .message(),
      HasSubstr("more than one of skip / zero / reinit / replace_layer"));
  // Generation checks them at StartDecode.
  DecodeOptions o;
  o.interventions = {Intervention::ReplaceLayer(2, tmp + "/shape.st")};
  EXPECT_THAT(e->StartDecode(o).status().message(), HasSubstr("layer 2 needs"));
}

}  // namespace
}  // namespace sweepd::engine
