// GPU tests of the engine's CUDA path (label gpu; built with
// SWEEPD_ENABLE_CUDA): the fused kernels, mask-free attention (FlashAttention
// with the sliding window, SDPA is_causal) and the fused LM-head pass against
// the CPU engine in float32 on the tiny config, bf16 against float32 within
// the documented tolerance, interventions, probe statistics and prefix reuse.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/engine/engine.h"
#include "worker/engine/model_generator.h"

namespace sweepd::engine {
namespace {

using json = nlohmann::json;

std::string SourceDir() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return d != nullptr ? d : ".";
}

std::string NewTempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/engine_gpu_test_" +
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
                           uint32_t seed) {
  std::mt19937 rng(seed);
  ForwardRequest r;
  r.batch = batch;
  r.seq = seq;
  r.tokens.resize(batch * seq);
  for (auto& t : r.tokens) t = static_cast<int32_t>(rng() % vocab);
  return r;
}

std::unique_ptr<Engine> MakeEngine(const std::string& dir,
                                   const std::string& device, DType dtype) {
  EngineOptions o;
  o.model_dir = dir;
  o.device = device;
  o.dtype = dtype;
  o.cpu_threads_per_rank = 2;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

ForwardResult RunFwd(Engine* e, const ForwardRequest& r) {
  auto res = e->Forward(r);
  EXPECT_TRUE(res.ok()) << res.status();
  return res.ok() ? std::move(*res) : ForwardResult();
}

class EngineGpuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // initializer_range 0.5: logits of std ~4, so bf16 argmax comparisons are
    // meaningful (docs/ENGINE.md tolerances).
    json j =
        json::parse(ReadFile(SourceDir() + "/configs/models/gemma4-tiny.json"));
    j["initializer_range"] = 0.5;
    const std::string cfg_dir = NewTempDir("cfg");
    std::ofstream(cfg_dir + "/config.json") << j.dump();
    dir_ = new std::string(NewTempDir("model"));
    ASSERT_TRUE(MakeRandomModel(cfg_dir + "/config.json", 11, *dir_).ok());
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string* dir_;
};
std::string* EngineGpuTest::dir_ = nullptr;

// Sequence 24 > sliding window 8: the band matters on sliding layers.
constexpr int64_t kBatch = 2, kSeq = 24;

TEST_F(EngineGpuTest, Fp32MatchesCpuWithInterventionsAndCaptures) {
  auto cpu = MakeEngine(*dir_, "cpu", DType::kFloat32);
  auto gpu = MakeEngine(*dir_, "cuda", DType::kFloat32);
  ASSERT_NE(gpu, nullptr);
  ForwardRequest req = MakeRequest(kBatch, kSeq, 512, 5);
  req.captures = {"attn_heads[0]", "attn_heads[5]", "mlp_in[2]", "resid_out[4]",
                  "hidden_states[6]"};
  req.interventions = {Intervention::Zero(1), Intervention::Reinit(3, 9),
                       Intervention::MaskHeads(4, {1, 2})};
  ForwardResult a = RunFwd(cpu.get(), req);
  ForwardResult b = RunFwd(gpu.get(), req);  // fused LM-head pass for the NLL
  EXPECT_LE(RelDiff(b.nll, a.nll), 1e-4);
  EXPECT_EQ(b.target_valid, a.target_valid);
  for (const std::string& c : req.captures) {
    SCOPED_TRACE(c);
    ASSERT_EQ(b.captures.count(c), 1u);
    EXPECT_EQ(b.captures[c].shape, a.captures[c].shape);
    EXPECT_LE(RelDiff(b.captures[c].data, a.captures[c].data), 1e-4);
  }
  // Masked heads of layer 4 are exactly zero on the GPU path too.
  ForwardRequest heads = req;
  heads.captures = {"attn_heads[4]"};
  ForwardResult h = RunFwd(gpu.get(), heads);
  const HostTensor& t = h.captures["attn_heads[4]"];  // [B, S, 4, 16]
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int64_t head = (i / t.shape[3]) % t.shape[2];
    if (head == 1 || head == 2) {
      ASSERT_EQ(t.data[i], 0.0f) << i;
    }
  }
  // return_logits takes the eager LM head: logits match the CPU.
  req.return_logits = true;
  req.captures.clear();
  EXPECT_LE(RelDiff(RunFwd(gpu.get(), req).logits.data,
                    RunFwd(cpu.get(), req).logits.data),
            1e-4);
}

TEST_F(EngineGpuTest, Bf16AgreesWithCpuFp32) {
  auto cpu = MakeEngine(*dir_, "cpu", DType::kFloat32);
  auto gpu = MakeEngine(*dir_, "cuda", DType::kBFloat16);
  ASSERT_NE(gpu, nullptr);
  ForwardRequest req = MakeRequest(4, 64, 512, 3);
  req.return_logits = true;
  req.captures = {"attn_heads[0]", "attn_heads[5]"};
  ForwardResult ref = RunFwd(cpu.get(), req);
  ForwardResult got = RunFwd(gpu.get(), req);
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.logits.data.size(); ++i) {
    const double d =
        static_cast<double>(got.logits.data[i]) - ref.logits.data[i];
    num += d * d;
    den += static_cast<double>(ref.logits.data[i]) * ref.logits.data[i];
  }
  EXPECT_LE(std::sqrt(num / den), 0.05);
  int agree = 0;
  const int T = 4 * 64;
  for (int i = 0; i < T; ++i) {
    const float* a = &ref.logits.data[i * 512];
    const float* b = &got.logits.data[i * 512];
    agree += (std::max_element(a, a + 512) - a) ==
             (std::max_element(b, b + 512) - b);
  }
  EXPECT_GE(agree, 0.93 * T);
  // Sliding (flash with the window) and full attention outputs, bf16 level.
  for (const char* c : {"attn_heads[0]", "attn_heads[5]"}) {
    SCOPED_TRACE(c);
    EXPECT_LE(RelDiff(got.captures[c].data, ref.captures[c].data), 0.05);
  }
  // NLL through the fused LM-head pass (no return_logits).
  req.return_logits = false;
  req.captures.clear();
  EXPECT_LE(RelDiff(RunFwd(gpu.get(), req).nll, ref.nll), 0.05);
}

TEST_F(EngineGpuTest, ProbeStatsMatchCpuAndPrefixReuse) {
  auto cpu = MakeEngine(*dir_, "cpu", DType::kFloat32);
  auto gpu = MakeEngine(*dir_, "cuda", DType::kFloat32);
  ASSERT_NE(gpu, nullptr);
  // One target per prompt, as the probe job sets them.
  ForwardRequest req = MakeRequest(3, kSeq, 512, 8);
  req.targets.assign(3 * kSeq, -1);
  for (int b = 0; b < 3; ++b) req.targets[b * kSeq + kSeq - 1] = 17 + b;
  req.layer_stats = true;
  ForwardResult a = RunFwd(cpu.get(), req);
  ForwardResult b = RunFwd(gpu.get(), req);
  ASSERT_EQ(b.layer_stats.size(), 6u);
  for (int L = 0; L < 6; ++L) {
    SCOPED_TRACE(L);
    EXPECT_EQ(b.layer_stats[L].target_rank, a.layer_stats[L].target_rank);
    EXPECT_LE(RelDiff(b.layer_stats[L].resid_out_norm,
                      a.layer_stats[L].resid_out_norm),
              1e-4);
    for (size_t i = 0; i < a.layer_stats[L].block_influence.size(); ++i) {
      EXPECT_NEAR(b.layer_stats[L].block_influence[i],
                  a.layer_stats[L].block_influence[i], 1e-4);
    }
  }
  int scored = 0;
  for (int64_t r : b.layer_stats[5].target_rank) scored += r >= 0;
  EXPECT_EQ(scored, 3);
  // Prefix reuse on the GPU equals the full forward with the same skip.
  ForwardRequest keep = req;
  keep.keep_prefix_state = true;
  ForwardResult base = RunFwd(gpu.get(), keep);
  ASSERT_NE(base.prefix_state, nullptr);
  ForwardRequest full = req;
  full.interventions = {Intervention::Skip(3)};
  ForwardRequest reuse = full;
  reuse.start_from = base.prefix_state;
  reuse.start_layer = 3;
  ForwardResult f = RunFwd(gpu.get(), full);
  ForwardResult r = RunFwd(gpu.get(), reuse);
  EXPECT_EQ(r.layer_forwards, 2);
  EXPECT_LE(RelDiff(r.nll, f.nll), 1e-6);
  for (int L = 3; L < 6; ++L) {
    EXPECT_EQ(r.layer_stats[L].target_rank, f.layer_stats[L].target_rank);
  }
}

std::unique_ptr<Engine> MakeEngineWithAttention(const std::string& dir,
                                                DType dtype,
                                                AttentionPath path) {
  EngineOptions o;
  o.model_dir = dir;
  o.device = "cuda";
  o.dtype = dtype;
  o.attention_path = path;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

// Relative RMS error of a against b.
double RelRms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// The chunked GEMM attention on every layer (sliding layers with the band,
// full layers causal), over a sequence of 600 positions (three query blocks of
// 256; the window of 8 makes each sliding block read a band of keys), against
// the CPU engine: fp32 within the CPU tolerance, bf16 within the bf16 one.
TEST_F(EngineGpuTest, ChunkedGemmAttentionMatchesCpu) {
  auto cpu = MakeEngine(*dir_, "cpu", DType::kFloat32);
  auto f32 = MakeEngineWithAttention(*dir_, DType::kFloat32,
                                     AttentionPath::kChunkedGemm);
  auto bf16 = MakeEngineWithAttention(*dir_, DType::kBFloat16,
                                      AttentionPath::kChunkedGemm);
  auto bf16_sdpa =
      MakeEngineWithAttention(*dir_, DType::kBFloat16, AttentionPath::kSdpa);
  ASSERT_NE(f32, nullptr);
  ASSERT_NE(bf16, nullptr);
  ASSERT_NE(bf16_sdpa, nullptr);
  ForwardRequest req = MakeRequest(2, 600, 512, 21);
  req.captures = {"attn_heads[0]", "attn_heads[5]", "resid_out[5]"};
  ForwardResult ref = RunFwd(cpu.get(), req);
  ForwardResult got = RunFwd(f32.get(), req);
  EXPECT_LE(RelDiff(got.nll, ref.nll), 1e-4);
  for (const std::string& c : req.captures) {
    SCOPED_TRACE(c);
    EXPECT_LE(RelDiff(got.captures[c].data, ref.captures[c].data), 1e-4);
  }
  ForwardResult b = RunFwd(bf16.get(), req);
  ForwardResult bs = RunFwd(bf16_sdpa.get(), req);
  for (const char* c : {"attn_heads[0]", "attn_heads[5]"}) {
    SCOPED_TRACE(c);
    EXPECT_LE(RelRms(b.captures[c].data, ref.captures[c].data), 0.05);
    // Chunked and flash/SDPA agree to bf16 rounding of the same math.
    EXPECT_LE(RelRms(b.captures[c].data, bs.captures[c].data), 0.05);
  }
  EXPECT_LE(RelDiff(b.nll, ref.nll), 0.05);
}

// kAuto's sliding layers in bf16 go through cuDNN's attention banded by
// window blocks (window 8): sequences that are a multiple of the window (one
// batched cuDNN call), that are not (a call per block), and that are shorter
// than it (plain causal) match FlashAttention-2's windowed kernel (kFlash) to
// bf16 rounding and the CPU engine within the bf16 tolerance; the composition
// passed its once-per-device check, so it was the path taken.
TEST_F(EngineGpuTest, CudnnBandedAttentionMatchesFlashAndCpu) {
  auto cpu = MakeEngine(*dir_, "cpu", DType::kFloat32);
  auto cudnn =
      MakeEngineWithAttention(*dir_, DType::kBFloat16, AttentionPath::kAuto);
  auto flash =
      MakeEngineWithAttention(*dir_, DType::kBFloat16, AttentionPath::kFlash);
  ASSERT_NE(cudnn, nullptr);
  ASSERT_NE(flash, nullptr);
  for (int64_t seq : {int64_t{600}, int64_t{605}, int64_t{6}}) {
    SCOPED_TRACE(seq);
    ForwardRequest req = MakeRequest(2, seq, 512, 41);
    req.captures = {"attn_heads[0]", "attn_heads[1]"};
    ForwardResult ref = RunFwd(cpu.get(), req);
    ForwardResult c = RunFwd(cudnn.get(), req);
    ForwardResult f = RunFwd(flash.get(), req);
    for (const std::string& name : req.captures) {
      SCOPED_TRACE(name);
      EXPECT_LE(RelRms(c.captures[name].data, f.captures[name].data), 0.02);
      EXPECT_LE(RelRms(c.captures[name].data, ref.captures[name].data), 0.05);
    }
    EXPECT_LE(RelDiff(c.nll, ref.nll), 0.05);
  }
  bool cudnn_checked = false;
  for (const auto& [name, usable] : cudnn->CheckedAttentionKernels()) {
    if (absl::StrContains(name, "cuDNN")) {
      cudnn_checked = true;
      EXPECT_TRUE(usable) << name;
    }
  }
  EXPECT_TRUE(cudnn_checked);
}

// GemmTuning::kAutotune (cuBLASLt algorithms chosen by timing) gives the
// heuristic's results to bf16 rounding, and the same results on a second
// forward (one algorithm per shape within a process); every GEMM shape of the
// forward was tuned (Engine::GemmTuningReport).
TEST_F(EngineGpuTest, AutotunedGemmsMatchHeuristic) {
  EngineOptions o;
  o.model_dir = *dir_;
  o.device = "cuda";
  o.dtype = DType::kBFloat16;
  o.gemm_tuning = GemmTuning::kAutotune;
  auto tuned = Engine::Create(o);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  auto plain =
      MakeEngineWithAttention(*dir_, DType::kBFloat16, AttentionPath::kAuto);
  ASSERT_NE(plain, nullptr);
  // 2 x 520 tokens: every GEMM, the LM head's too, has the >= 1024 rows that
  // autotuning takes.
  ForwardRequest req = MakeRequest(2, 520, 512, 51);
  req.captures = {"resid_out[5]"};
  const size_t before = (*tuned)->GemmTuningReport().size();
  ForwardResult a = RunFwd(tuned->get(), req);
  ForwardResult a2 = RunFwd(tuned->get(), req);
  ForwardResult b = RunFwd(plain.get(), req);
  EXPECT_LE(
      RelRms(a.captures["resid_out[5]"].data, b.captures["resid_out[5]"].data),
      0.02);
  EXPECT_LE(RelDiff(a.nll, b.nll), 0.05);
  EXPECT_EQ(a.captures["resid_out[5]"].data, a2.captures["resid_out[5]"].data);
  EXPECT_EQ(a.nll, a2.nll);
  // qkv (sliding and full), o (both), gate_up, down, LM head: >= 5 shapes.
  EXPECT_GE((*tuned)->GemmTuningReport().size(), before + 5);
}

// kAuto takes the chunked GEMM attention for full layers with head_dim 512
// (the 31B shape's): a tiny model with global_head_dim 512 and 4 query heads
// per KV head on its full layers matches the CPU engine.
TEST(EngineGpuAutoTest, FullLayersWithHeadDim512MatchCpu) {
  json j =
      json::parse(ReadFile(SourceDir() + "/configs/models/gemma4-tiny.json"));
  j["initializer_range"] = 0.5;
  j["global_head_dim"] = 512;
  j["num_global_key_value_heads"] = 1;
  j["attention_k_eq_v"] = true;
  const std::string cfg_dir = NewTempDir("cfg512");
  std::ofstream(cfg_dir + "/config.json") << j.dump();
  const std::string dir = NewTempDir("model512");
  ASSERT_TRUE(MakeRandomModel(cfg_dir + "/config.json", 5, dir).ok());
  auto cpu = MakeEngine(dir, "cpu", DType::kFloat32);
  auto f32 =
      MakeEngineWithAttention(dir, DType::kFloat32, AttentionPath::kAuto);
  auto bf16 =
      MakeEngineWithAttention(dir, DType::kBFloat16, AttentionPath::kAuto);
  ASSERT_NE(f32, nullptr);
  ASSERT_NE(bf16, nullptr);
  ASSERT_EQ(cpu->config().layers[5].head_dim, 512);
  ForwardRequest req = MakeRequest(2, 300, 512, 4);
  req.captures = {"attn_heads[5]"};
  ForwardResult ref = RunFwd(cpu.get(), req);
  ForwardResult got = RunFwd(f32.get(), req);
  EXPECT_LE(RelDiff(got.captures["attn_heads[5]"].data,
                    ref.captures["attn_heads[5]"].data),
            1e-4);
  EXPECT_LE(RelDiff(got.nll, ref.nll), 1e-4);
  ForwardResult b = RunFwd(bf16.get(), req);
  EXPECT_LE(RelRms(b.captures["attn_heads[5]"].data,
                   ref.captures["attn_heads[5]"].data),
            0.05);
  EXPECT_LE(RelDiff(b.nll, ref.nll), 0.05);
}

// Query blocks of other sizes than the default
// (EngineOptions::chunked_query_block, set through Engine::Reconfigure):
// 100 positions (rows of up to 2056 keys: the warp-per-row softmax up to
// 2048 keys, element-wise in bf16 where the keys are not a multiple of 8),
// and the whole sequence of 2056 positions in one block (fp32 rows of 2056
// keys take the two-pass softmax, bf16 ones the single-pass block kernel),
// match the CPU engine; the default 256-position blocks of the other tests
// take the vectorised warp kernel.
TEST_F(EngineGpuTest, ChunkedGemmAttentionQueryBlocksMatchCpu) {
  auto cpu = MakeEngine(*dir_, "cpu", DType::kFloat32);
  auto f32 = MakeEngineWithAttention(*dir_, DType::kFloat32,
                                     AttentionPath::kChunkedGemm);
  auto bf16 = MakeEngineWithAttention(*dir_, DType::kBFloat16,
                                      AttentionPath::kChunkedGemm);
  ASSERT_NE(f32, nullptr);
  ASSERT_NE(bf16, nullptr);
  for (int64_t block : {int64_t{100}, int64_t{2056}}) {
    SCOPED_TRACE(block);
    ForwardRequest req = MakeRequest(1, 2056, 512, 31);
    req.captures = {"attn_heads[0]", "attn_heads[5]"};
    ForwardResult ref = RunFwd(cpu.get(), req);
    for (Engine* e : {f32.get(), bf16.get()}) {
      EngineOptions o = e->options();
      o.chunked_query_block = block;
      ASSERT_TRUE(e->Reconfigure(o).ok());
    }
    ForwardResult got = RunFwd(f32.get(), req);
    ForwardResult b = RunFwd(bf16.get(), req);
    EXPECT_LE(RelDiff(got.nll, ref.nll), 1e-4);
    EXPECT_LE(RelDiff(b.nll, ref.nll), 0.05);
    for (const std::string& c : req.captures) {
      SCOPED_TRACE(c);
      EXPECT_LE(RelDiff(got.captures[c].data, ref.captures[c].data), 1e-4);
      EXPECT_LE(RelRms(b.captures[c].data, ref.captures[c].data), 0.05);
    }
  }
}

}  // namespace
}  // namespace sweepd::engine
