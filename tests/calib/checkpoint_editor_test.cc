// Tests of the checkpoint editor (worker/calib/checkpoint_editor.h) on tiny
// models made by the project's generator: the materialized checkpoint loads in
// the engine and its logits equal the base's masked forward; a healed
// checkpoint equals an independently edited one; the manifest lists exactly
// the changed tensors; the fingerprint differs from the base's; re-runs give
// identical bytes; bad inputs give errors naming what is wrong.
#include "worker/calib/checkpoint_editor.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "common/hash.h"
#include "common/model_fingerprint.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "worker/calib/manifest_canary.h"
#include "worker/engine/engine.h"
#include "worker/engine/model_generator.h"

namespace sweepd::calib {
namespace {

using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr int kHidden = 64;
constexpr int kHeads = 4;

std::string SourceDir() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return d != nullptr ? d : ".";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string NewTempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/checkpoint_editor_test_" +
                    std::to_string(getpid()) + "_" + name;
  EXPECT_THAT(RemoveAll(dir), IsOk());
  EXPECT_THAT(MakeDirs(dir), IsOk());
  return dir;
}

// The tiny Gemma 4 config (6 layers: s s f s s f; 4 heads, head_dim 16 / 32
// on full layers) with larger weights, so that masking a head moves the
// logits well above float32 noise.
std::string TinyConfig(const std::string& dir) {
  json j =
      json::parse(ReadFile(SourceDir() + "/configs/models/gemma4-tiny.json"));
  j["initializer_range"] = 0.3;
  const std::string path = dir + "/config.json";
  WriteFile(path, j.dump());
  return path;
}

std::string MakeModel(const std::string& name, const std::string& dtype,
                      uint64_t shard_bytes) {
  const std::string cfg = TinyConfig(NewTempDir(name + "_cfg"));
  const std::string dir = NewTempDir(name);
  engine::MakeModelOptions mo;
  mo.dtype = dtype;
  mo.shard_bytes = shard_bytes;
  EXPECT_THAT(engine::MakeRandomModel(cfg, 11, dir, mo), IsOk());
  WriteFile(dir + "/generation_config.json", "{\"bos_token_id\": 2}\n");
  return dir;
}

int HeadDim(int layer) { return layer == 2 || layer == 5 ? 32 : 16; }

std::string LayerTensor(int layer, const std::string& what) {
  return "model.layers." + std::to_string(layer) + ".self_attn." + what +
         ".weight";
}

// A heal artifact for `layer`: random F32 o_proj of the full shape with the
// pruned heads' columns zero.
std::string MakeHeal(const std::string& dir, int layer,
                     const std::vector<int>& pruned, uint32_t seed,
                     std::vector<float>* values_out = nullptr,
                     std::vector<int64_t> shape = {}) {
  const int hd = HeadDim(layer);
  const int64_t cols = kHeads * hd;
  if (shape.empty()) shape = {kHidden, cols};
  std::vector<float> v(shape[0] * shape[1]);
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.3f);
  for (float& x : v) x = n(rng);
  for (int64_t r = 0; r < shape[0]; ++r) {
    for (int h : pruned) {
      for (int c = h * hd; c < (h + 1) * hd && c < shape[1]; ++c)
        v[r * shape[1] + c] = 0.0f;
    }
  }
  SafetensorsWriter w;
  EXPECT_THAT(w.Add("self_attn.o_proj.weight", StDtype::kF32, shape, v.data(),
                    v.size() * 4),
              IsOk());
  const std::string path = dir + "/heal_layer" + std::to_string(layer) + "_" +
                           std::to_string(seed) + ".safetensors";
  EXPECT_THAT(w.WriteFile(path), IsOk());
  if (values_out != nullptr) *values_out = v;
  return path;
}

std::unique_ptr<engine::Engine> MakeEngine(const std::string& dir, int tp) {
  engine::EngineOptions o;
  o.model_dir = dir;
  o.tp_size = tp;
  o.cpu_threads_per_rank = 1;
  auto e = engine::Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

std::vector<float> Logits(
    engine::Engine* e, std::vector<engine::Intervention> interventions = {}) {
  engine::ForwardRequest r;
  r.batch = 2;
  r.seq = 20;
  std::mt19937 rng(5);
  r.tokens.resize(r.batch * r.seq);
  for (auto& t : r.tokens) t = static_cast<int32_t>(rng() % 512);
  r.tokens[0] = r.tokens[r.seq] = 2;
  r.return_logits = true;
  r.interventions = std::move(interventions);
  auto res = e->Forward(r);
  EXPECT_TRUE(res.ok()) << res.status();
  return res.ok() ? res->logits.data : std::vector<float>();
}

// max |a - b| / max |b|.
double RelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den == 0 ? num : num / den;
}

MaterializeRequest Request(const std::string& base, const std::string& out,
                           EditPlan plan) {
  MaterializeRequest r;
  r.base_dir = base;
  r.out_dir = out;
  r.plan = std::move(plan);
  r.threads = 2;
  return r;
}

json Manifest(const std::string& dir) {
  return json::parse(ReadFile(dir + "/" + kManifestFile));
}

class CheckpointEditorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new std::string(MakeModel("base", "float32", 0));
    sharded_ = new std::string(MakeModel("sharded", "float32", 100 * 1024));
    bf16_ = new std::string(MakeModel("bf16", "bfloat16", 0));
  }
  static void TearDownTestSuite() {
    delete base_;
    delete sharded_;
    delete bf16_;
  }
  static std::string* base_;
  static std::string* sharded_;
  static std::string* bf16_;
};
std::string* CheckpointEditorTest::base_ = nullptr;
std::string* CheckpointEditorTest::sharded_ = nullptr;
std::string* CheckpointEditorTest::bf16_ = nullptr;

TEST_F(CheckpointEditorTest, MaskedCheckpointEqualsMaskedForwardOfBase) {
  EditPlan plan;
  plan.pruned = {{1, {2, 0}}, {2, {3}}};  // a sliding and a full layer
  const std::string out = NewTempDir("masked_parent") + "/masked";
  auto r = MaterializeCheckpoint(Request(*base_, out, plan));
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->reused);

  auto base = MakeEngine(*base_, 1);
  const std::vector<float> plain = Logits(base.get());
  const std::vector<float> masked =
      Logits(base.get(), {engine::Intervention::MaskHeads(1, {0, 2}),
                          engine::Intervention::MaskHeads(2, {3})});
  // The edit matters: masking moves the logits far above float32 noise.
  EXPECT_GT(RelDiff(masked, plain), 1e-3);
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto mat = MakeEngine(out, tp);
    ASSERT_NE(mat, nullptr);
    const std::vector<float> got = Logits(mat.get());
    const double diff = RelDiff(got, masked);
    std::cout << "tp " << tp << ": materialized vs masked base, max rel diff "
              << diff << "\n";
    EXPECT_LE(diff, 1e-5);
  }
}

TEST_F(CheckpointEditorTest, LayerSelectorWritesOnlyTheSelectedLayers) {
  // Seed 001's salvage: a plan over every layer, only L0-L3 written.
  EditPlan plan;
  for (int L = 0; L < 6; ++L) plan.pruned.push_back({L, {1}});
  plan.layers = std::vector<int>{0, 1, 2, 3};
  const std::string out = NewTempDir("salvage_parent") + "/salvage";
  auto r = MaterializeCheckpoint(Request(*sharded_, out, plan));
  ASSERT_THAT(r, IsOk());
  std::vector<std::string> want;
  for (int L = 0; L < 4; ++L) {
    want.push_back(LayerTensor(L, "o_proj"));
    want.push_back(LayerTensor(L, "q_proj"));
  }
  std::sort(want.begin(), want.end());
  EXPECT_EQ(r->changed_tensors, want);
  const json m = Manifest(out);
  EXPECT_EQ(m["layers_written"], json({0, 1, 2, 3}));
  ASSERT_EQ(m["pruned"].size(), 6u);
  for (int L = 0; L < 6; ++L) {
    EXPECT_EQ(m["pruned"][L]["written"], L < 4) << L;
  }

  std::vector<engine::Intervention> ivs;
  for (int L = 0; L < 4; ++L)
    ivs.push_back(engine::Intervention::MaskHeads(L, {1}));
  auto base = MakeEngine(*sharded_, 1);
  auto mat = MakeEngine(out, 1);
  EXPECT_LE(RelDiff(Logits(mat.get()), Logits(base.get(), ivs)), 1e-5);
}

// A healed checkpoint against one edited independently here: q_proj rows of
// the pruned heads zero, o_proj = the heal (whose pruned columns are zero).
TEST_F(CheckpointEditorTest, HealedCheckpointEqualsIndependentEdit) {
  const std::string work = NewTempDir("healed");
  std::vector<float> heal_values;
  const std::string heal = MakeHeal(work, 3, {0, 3}, 17, &heal_values);
  EditPlan plan;
  plan.pruned = {{3, {0, 3}}};
  plan.heals = {{3, heal, "", "objects/xx/heal", ""}};
  const std::string out = work + "/out";
  auto r = MaterializeCheckpoint(Request(*base_, out, plan));
  ASSERT_THAT(r, IsOk());

  // The independent edit, written with SafetensorsWriter.
  auto ckpt = Checkpoint::Open(*base_);
  ASSERT_THAT(ckpt, IsOk());
  SafetensorsWriter w;
  for (const std::string& name : (*ckpt)->names()) {
    const TensorView* t = (*ckpt)->Find(name);
    std::vector<float> v(t->numel());
    std::memcpy(v.data(), t->data, t->nbytes);
    if (name == LayerTensor(3, "q_proj")) {
      for (int h : {0, 3}) {
        std::fill(v.begin() + h * 16 * kHidden,
                  v.begin() + (h + 1) * 16 * kHidden, 0.0f);
      }
    } else if (name == LayerTensor(3, "o_proj")) {
      v = heal_values;
    }
    ASSERT_THAT(w.Add(name, t->dtype, t->shape, v.data(), v.size() * 4),
                IsOk());
  }
  const std::string indep = work + "/independent";
  ASSERT_THAT(MakeDirs(indep), IsOk());
  ASSERT_THAT(w.WriteFile(indep + "/model.safetensors"), IsOk());
  ASSERT_THAT(CopyFile(*base_ + "/config.json", indep + "/config.json"),
              IsOk());

  auto a = MakeEngine(out, 1);
  auto b = MakeEngine(indep, 1);
  auto base = MakeEngine(*base_, 1);
  const std::vector<float> want = Logits(b.get());
  EXPECT_LE(RelDiff(Logits(a.get()), want), 1e-6);
  // The heal matters (it is not the masked base).
  EXPECT_GT(RelDiff(want, Logits(base.get(),
                                 {engine::Intervention::MaskHeads(3, {0, 3})})),
            1e-3);
  const json m = Manifest(out);
  ASSERT_EQ(m["heals"].size(), 1u);
  EXPECT_EQ(m["heals"][0]["artifact"]["path"], "objects/xx/heal");
  EXPECT_EQ(m["heals"][0]["artifact"]["sha256"], *Sha256File(heal));
}

TEST_F(CheckpointEditorTest, ManifestListsExactlyTheChangedTensors) {
  const std::string work = NewTempDir("manifest");
  // A heal of layer 4 that is byte-equal to the base's o_proj is an edit that
  // changes nothing: it must not be listed.
  auto ckpt = Checkpoint::Open(*sharded_);
  ASSERT_THAT(ckpt, IsOk());
  const TensorView* o4 = (*ckpt)->Find(LayerTensor(4, "o_proj"));
  ASSERT_NE(o4, nullptr);
  SafetensorsWriter same;
  ASSERT_THAT(same.Add("self_attn.o_proj.weight", StDtype::kF32, o4->shape,
                       o4->data, o4->nbytes),
              IsOk());
  ASSERT_THAT(same.WriteFile(work + "/same.safetensors"), IsOk());
  EditPlan plan;
  plan.pruned = {{1, {3}}};
  plan.heals = {{5, MakeHeal(work, 5, {}, 3), "", "", ""},
                {4, work + "/same.safetensors", "", "", ""}};
  const std::string out = work + "/out";
  auto r = MaterializeCheckpoint(Request(*sharded_, out, plan));
  ASSERT_THAT(r, IsOk());
  const std::vector<std::string> want = {LayerTensor(1, "o_proj"),
                                         LayerTensor(1, "q_proj"),
                                         LayerTensor(5, "o_proj")};
  EXPECT_EQ(r->changed_tensors, want);
  const json m = Manifest(out);
  EXPECT_EQ(m["changed_tensors"], json(want));
  EXPECT_EQ(m["canary"]["status"], "pending");
  EXPECT_EQ(m["base"]["fingerprint"], *ComputeModelFingerprint(*sharded_));

  // Every tensor: its recorded hash is the output's bytes; "changed" is true
  // exactly when the bytes differ from the base's.
  auto outc = Checkpoint::Open(out);
  ASSERT_THAT(outc, IsOk());
  EXPECT_EQ((*outc)->names(), (*ckpt)->names());
  EXPECT_EQ(m["num_tensors"], (*ckpt)->names().size());
  std::set<std::string> differ;
  for (const std::string& name : (*ckpt)->names()) {
    const TensorView* a = (*ckpt)->Find(name);
    const TensorView* b = (*outc)->Find(name);
    const std::string bytes(reinterpret_cast<const char*>(b->data), b->nbytes);
    EXPECT_EQ(m["tensors"][name]["sha256"], Sha256Hex(bytes)) << name;
    EXPECT_EQ(a->shape, b->shape);
    if (bytes != std::string(reinterpret_cast<const char*>(a->data), a->nbytes))
      differ.insert(name);
    EXPECT_EQ(m["tensors"][name]["changed"].get<bool>(), differ.count(name) > 0)
        << name;
  }
  EXPECT_EQ(differ, std::set<std::string>(want.begin(), want.end()));

  // Same shard split and index; a shard without a changed tensor is
  // byte-identical to the base's, as are the index and the copied files.
  auto names = ListDir(*sharded_);
  ASSERT_THAT(names, IsOk());
  int identical_shards = 0;
  for (const std::string& n : *names) {
    if (n == "config.json" || n == "tokenizer.json" ||
        n == "generation_config.json" || n == "model.safetensors.index.json") {
      EXPECT_EQ(ReadFile(out + "/" + n), ReadFile(*sharded_ + "/" + n)) << n;
    }
    if (n.find(".safetensors") != std::string::npos &&
        n.find("index") == std::string::npos) {
      ASSERT_TRUE(PathExists(out + "/" + n)) << n;
      EXPECT_EQ(*FileSize(out + "/" + n), *FileSize(*sharded_ + "/" + n)) << n;
      bool holds_changed = false;
      for (const auto& [tname, e] : m["tensors"].items()) {
        if (e["file"] == n && e["changed"].get<bool>()) holds_changed = true;
      }
      const bool same_bytes =
          ReadFile(out + "/" + n) == ReadFile(*sharded_ + "/" + n);
      EXPECT_EQ(same_bytes, !holds_changed) << n;
      identical_shards += same_bytes;
    }
  }
  EXPECT_GT(identical_shards, 0);
  auto out_names = ListDir(out);
  ASSERT_THAT(out_names, IsOk());
  std::vector<std::string> base_plus_manifest = *names;
  base_plus_manifest.push_back(kManifestFile);
  std::sort(base_plus_manifest.begin(), base_plus_manifest.end());
  EXPECT_EQ(*out_names, base_plus_manifest);
}

TEST_F(CheckpointEditorTest, FingerprintDiffersFromTheBase) {
  EditPlan plan;
  plan.pruned = {{0, {1}}};
  const std::string out = NewTempDir("fp_parent") + "/fp";
  auto r = MaterializeCheckpoint(Request(*base_, out, plan));
  ASSERT_THAT(r, IsOk());
  auto base_fp = ComputeModelFingerprint(*base_);
  auto out_fp = ComputeModelFingerprint(out);
  ASSERT_THAT(out_fp, IsOk());
  EXPECT_NE(*out_fp, *base_fp);
  EXPECT_EQ(*out_fp, r->fingerprint);
  EXPECT_EQ(r->base_fingerprint, *base_fp);
  EXPECT_EQ(Manifest(out)["fingerprint"], *out_fp);
  // The canary update rewrites the manifest only: the fingerprint stays.
  ASSERT_THAT(UpdateManifestCanary(out, "failed", "prompt 2: loops"), IsOk());
  EXPECT_EQ(Manifest(out)["canary"],
            json({{"status", "failed"}, {"detail", "prompt 2: loops"}}));
  EXPECT_EQ(*ComputeModelFingerprint(out), *out_fp);
  EXPECT_THAT(UpdateManifestCanary(out, "ok", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be pending, passed or failed")));
  EXPECT_THAT(UpdateManifestCanary(*base_, "passed", ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kManifestFile)));
}

// Canary tasks running at once on one checkpoint (threads here; processes
// take the same flock) all land: one entry per task key, none lost, and the
// aggregate covers all of them; the fingerprint stays.
TEST_F(CheckpointEditorTest, ConcurrentCanaryReportsAllLand) {
  EditPlan plan;
  plan.pruned = {{1, {0}}};
  const std::string out = NewTempDir("canary_parent") + "/canary";
  auto r = MaterializeCheckpoint(Request(*base_, out, plan));
  ASSERT_THAT(r, IsOk());
  constexpr int kTasks = 8, kRounds = 5;
  std::vector<std::thread> threads;
  std::vector<absl::Status> status(kTasks);
  for (int t = 0; t < kTasks; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds && status[t].ok(); ++round) {
        CanaryTaskReport report;
        report.task = "canary-shard" + std::to_string(t);
        report.cases = 2;
        report.passed = t == 3 ? 1 : 2;
        if (t == 3) report.failed_cases = {"case-b"};
        status[t] = RecordManifestCanary(out, report);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (const absl::Status& s : status) EXPECT_THAT(s, IsOk());
  const json canary = Manifest(out)["canary"];
  EXPECT_EQ(canary["tasks"].size(), static_cast<size_t>(kTasks));
  EXPECT_EQ(canary["status"], "failed");
  EXPECT_EQ(canary["detail"], "15/16 cases passed in 8 tasks; failed: case-b");
  EXPECT_EQ(canary["tasks"]["canary-shard3"]["status"], "failed");
  EXPECT_EQ(canary["tasks"]["canary-shard0"]["status"], "passed");
  EXPECT_EQ(*ComputeModelFingerprint(out), r->fingerprint);
  // A manual verdict replaces the whole canary object.
  ASSERT_THAT(UpdateManifestCanary(out, "passed", "by hand"), IsOk());
  EXPECT_EQ(Manifest(out)["canary"],
            json({{"status", "passed"}, {"detail", "by hand"}}));
  CanaryTaskReport bad;
  EXPECT_THAT(RecordManifestCanary(out, bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("empty task key")));
  bad.task = "x";
  bad.cases = 1;
  bad.passed = 2;
  EXPECT_THAT(
      RecordManifestCanary(out, bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 of 1 cases")));
  bad.passed = 1;
  EXPECT_THAT(RecordManifestCanary(*base_, bad),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kManifestFile)));
}

TEST_F(CheckpointEditorTest, RerunsGiveIdenticalBytes) {
  const std::string work = NewTempDir("rerun");
  EditPlan plan;
  plan.pruned = {{2, {1, 2}}, {4, {0}}};
  plan.heals = {{2, MakeHeal(work, 2, {1, 2}, 9), "", "", ""}};
  auto a = MaterializeCheckpoint(Request(*sharded_, work + "/a", plan));
  auto b = MaterializeCheckpoint(Request(*sharded_, work + "/b", plan));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->fingerprint, b->fingerprint);
  auto names = ListDir(work + "/a");
  ASSERT_THAT(names, IsOk());
  EXPECT_EQ(*names, *ListDir(work + "/b"));
  for (const std::string& n : *names) {
    EXPECT_EQ(ReadFile(work + "/a/" + n), ReadFile(work + "/b/" + n)) << n;
  }

  // Re-running into a complete result of the same edit keeps it.
  const std::string manifest_before = ReadFile(work + "/a/" + kManifestFile);
  auto again = MaterializeCheckpoint(Request(*sharded_, work + "/a", plan));
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(again->reused);
  EXPECT_EQ(again->bytes_written, 0u);
  EXPECT_EQ(again->fingerprint, a->fingerprint);
  EXPECT_EQ(again->changed_tensors, a->changed_tensors);
  EXPECT_EQ(ReadFile(work + "/a/" + kManifestFile), manifest_before);

  // A killed attempt's temp directory is removed by the next run.
  ASSERT_THAT(MakeDirs(work + "/.c.partial.abc123/junk"), IsOk());
  ASSERT_THAT(MaterializeCheckpoint(Request(*sharded_, work + "/c", plan)),
              IsOk());
  EXPECT_FALSE(PathExists(work + "/.c.partial.abc123"));
  auto entries = ListDir(work);
  ASSERT_THAT(entries, IsOk());
  EXPECT_THAT(*entries,
              ElementsAre("a", "b", "c", "heal_layer2_9.safetensors"));

  // Another edit into the same directory is refused, as is a directory
  // holding something else; a corrupted previous result is not reused.
  EditPlan other = plan;
  other.pruned[1].heads = {1};
  EXPECT_THAT(MaterializeCheckpoint(Request(*sharded_, work + "/a", other)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("different edit")));
  ASSERT_THAT(MakeDirs(work + "/busy"), IsOk());
  WriteFile(work + "/busy/notes.txt", "x");
  EXPECT_THAT(MaterializeCheckpoint(Request(*sharded_, work + "/busy", plan)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("exists and is not empty")));
  WriteFile(work + "/c/config.json", "{}");
  EXPECT_THAT(MaterializeCheckpoint(Request(*sharded_, work + "/c", plan)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("do not match it")));
}

TEST_F(CheckpointEditorTest, Bf16BaseTakesTheHealRoundedToNearestEven) {
  const std::string work = NewTempDir("bf16_work");
  std::vector<float> heal_values;
  const std::string heal = MakeHeal(work, 1, {2}, 4, &heal_values);
  EditPlan plan;
  plan.pruned = {{1, {2}}};
  plan.heals = {{1, heal, "", "", ""}};
  auto r = MaterializeCheckpoint(Request(*bf16_, work + "/out", plan));
  ASSERT_THAT(r, IsOk());
  auto c = Checkpoint::Open(work + "/out");
  ASSERT_THAT(c, IsOk());
  const TensorView* o = (*c)->Find(LayerTensor(1, "o_proj"));
  ASSERT_EQ(o->dtype, StDtype::kBF16);
  ASSERT_EQ(static_cast<size_t>(o->numel()), heal_values.size());
  for (size_t i = 0; i < heal_values.size(); ++i) {
    uint16_t got;
    std::memcpy(&got, o->data + 2 * i, 2);
    ASSERT_EQ(got, FloatToBf16(heal_values[i])) << i;
  }
  // The masked base in bf16 checkpoint form still loads.
  EXPECT_NE(MakeEngine(work + "/out", 1), nullptr);
}

TEST_F(CheckpointEditorTest, BadInputsNameWhatIsWrong) {
  const std::string work = NewTempDir("bad");
  auto run = [&](EditPlan plan) {
    return MaterializeCheckpoint(Request(*base_, work + "/out", plan));
  };
  EditPlan p;
  p.pruned = {{1, {0, 9}}};
  EXPECT_THAT(run(p),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("materialize.pruned[0].heads[1]: head "
                                 "9 is out of range [0, 4) of layer 1")));
  p.pruned = {{6, {0}}};
  EXPECT_THAT(run(p), StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("materialize.pruned[0].layer: layer 6 "
                                         "is out of range [0, 6)")));
  p.pruned = {{1, {0, 1, 2, 3}}};
  EXPECT_THAT(run(p), StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("all 4 heads of layer 1")));
  p.pruned = {{1, {0}}};
  p.layers = std::vector<int>{7};
  EXPECT_THAT(run(p), StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("materialize.layers[0]")));
  p.layers.reset();
  p.mode = "reshape";
  EXPECT_THAT(run(p), StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("materialize.mode: 'reshape'")));
  p.mode = "mask";
  // A heal of the wrong shape (a sliding layer's shape for a full layer).
  p.pruned = {{2, {0}}};
  p.heals = {{2, MakeHeal(work, 1, {0}, 5), "", "", ""}};
  EXPECT_THAT(
      run(p),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("materialize.heals[0] (layer 2): tensor "
                         "'self_attn.o_proj.weight' has shape [64, 64], "
                         "the checkpoint's "
                         "'model.layers.2.self_attn.o_proj.weight' is "
                         "[64, 128]")));
  // A heal fitted for another head set (pruned head's columns non-zero).
  p.pruned = {{1, {0, 1}}};
  p.heals = {{1, MakeHeal(work, 1, {0}, 6), "", "", ""}};
  EXPECT_THAT(run(p),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("(head 1) of 'self_attn.o_proj.weight'")));
  // A missing tensor and a file that is not safetensors.
  p.heals = {{1, MakeHeal(work, 1, {0, 1}, 7), "mlp.down_proj.weight", "", ""}};
  EXPECT_THAT(
      run(p),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("the artifact has no tensor 'mlp.down_proj.weight' "
                         "(it holds: self_attn.o_proj.weight)")));
  WriteFile(work + "/junk.safetensors", "not safetensors");
  p.heals = {{1, work + "/junk.safetensors", "", "", ""}};
  EXPECT_THAT(run(p), StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("materialize.heals[0] (layer 1)")));
  // The output may not overlap the base.
  EditPlan ok;
  ok.pruned = {{1, {0}}};
  EXPECT_THAT(MaterializeCheckpoint(Request(*base_, *base_ + "/sub", ok)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("overlaps the base model directory")));
  EXPECT_FALSE(PathExists(work + "/out"));
}

}  // namespace
}  // namespace sweepd::calib
