// Tests of `sweep-worker materialize` (worker/materialize_command.h) on a tiny
// model written by `sweep-worker make-model`: the JSON it prints, the manifest,
// an idempotent re-run, a heal file, the layer selector, and usage / runtime
// errors with their exit codes. End to end with `sweep-worker dump-logits`:
// the materialized checkpoint's logits equal the base's masked forward.
#include "worker/materialize_command.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/dump_logits_command.h"
#include "worker/make_model_command.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
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

std::string NewTempDir(const std::string& name) {
  std::string tmp = ::testing::TempDir();  // may end in '/'
  while (tmp.size() > 1 && tmp.back() == '/') tmp.pop_back();
  const std::string dir = tmp + "/materialize_command_test_" +
                          std::to_string(getpid()) + "_" + name;
  EXPECT_TRUE(RemoveAll(dir).ok());
  EXPECT_TRUE(MakeDirs(dir).ok());
  return dir;
}

// The tiny Gemma 4 model (6 layers s s f s s f, 4 heads, head_dim 16 / 32 on
// full layers) with larger weights, so that masking a head moves the logits
// well above float32 noise; written by the make-model command.
std::string MakeTinyModel() {
  const std::string work = NewTempDir("base_cfg");
  json cfg =
      json::parse(ReadFile(SourceDir() + "/configs/models/gemma4-tiny.json"));
  cfg["initializer_range"] = 0.3;
  std::ofstream(work + "/config.json") << cfg.dump();
  const std::string dir = NewTempDir("base");
  std::ostringstream out, err;
  EXPECT_EQ(RunMakeModelCommand({"--config", work + "/config.json", "--seed",
                                 "11", "--out", dir},
                                out, err),
            0)
      << err.str();
  return dir;
}

// A heal file for `layer`: random F32 o_proj [hidden, heads * head_dim] with
// the pruned heads' columns zero.
std::string MakeHealFile(const std::string& dir, int layer, int head_dim,
                         const std::vector<int>& pruned) {
  const int64_t cols = kHeads * head_dim;
  std::vector<float> v(kHidden * cols);
  std::mt19937 rng(17);
  std::normal_distribution<float> n(0.0f, 0.3f);
  for (float& x : v) x = n(rng);
  for (int64_t r = 0; r < kHidden; ++r) {
    for (int h : pruned) {
      for (int64_t c = h * head_dim; c < (h + 1) * head_dim; ++c) {
        v[r * cols + c] = 0.0f;
      }
    }
  }
  SafetensorsWriter w;
  EXPECT_TRUE(w.Add("self_attn.o_proj.weight", StDtype::kF32, {kHidden, cols},
                    v.data(), v.size() * 4)
                  .ok());
  // The heal job's statistics, carried into the manifest.
  w.SetMetadata("heal_residual_rel_calibration", "0.125");
  w.SetMetadata("heal_lambda", "0.5");
  const std::string path =
      dir + "/heal" + std::to_string(layer) + ".safetensors";
  EXPECT_TRUE(w.WriteFile(path).ok());
  return path;
}

std::vector<float> ReadLogits(const std::string& file) {
  auto f = SafetensorsFile::Open(file);
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return {};
  const TensorView* t = (*f)->Find("logits");
  EXPECT_NE(t, nullptr);
  if (t == nullptr) return {};
  std::vector<float> v(t->nbytes / 4);
  std::memcpy(v.data(), t->data, t->nbytes);
  return v;
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

std::string LayerTensor(int layer, const std::string& what) {
  return "model.layers." + std::to_string(layer) + ".self_attn." + what +
         ".weight";
}

class MaterializeCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { base_ = new std::string(MakeTinyModel()); }
  static void TearDownTestSuite() { delete base_; }

  int Run(const std::vector<std::string>& args) {
    out_.str("");
    err_.str("");
    return RunMaterializeCommand(args, out_, err_);
  }
  int DumpLogits(const std::vector<std::string>& args) {
    std::ostringstream out, err;
    const int rc = RunDumpLogitsCommand(args, out, err);
    EXPECT_EQ(rc, 0) << err.str();
    return rc;
  }

  static std::string* base_;
  std::ostringstream out_;
  std::ostringstream err_;
};
std::string* MaterializeCommandTest::base_ = nullptr;

TEST_F(MaterializeCommandTest, WritesTheCheckpointAndReusesItOnReRun) {
  const std::string out = NewTempDir("masked") + "/model";
  ASSERT_EQ(Run({"--base", *base_, "--out", out, "--prune", "1:2,0", "--prune",
                 "2:3", "--threads", "2"}),
            0)
      << err_.str();
  EXPECT_EQ(err_.str(), "");
  const json first = json::parse(out_.str());
  EXPECT_EQ(first["out"], out);
  EXPECT_EQ(first["manifest"], out + "/sweepd_manifest.json");
  EXPECT_EQ(first["tensors_changed"], 4);  // q_proj and o_proj of 1 and 2
  EXPECT_EQ(first["reused"], false);
  EXPECT_GT(first["bytes_written"].get<double>(), 0);
  EXPECT_NE(first["fingerprint"], first["base_fingerprint"]);

  const json m = json::parse(ReadFile(out + "/sweepd_manifest.json"));
  EXPECT_EQ(m["fingerprint"], first["fingerprint"]);
  EXPECT_EQ(m["canary"]["status"], "pending");
  std::vector<std::string> changed = m["changed_tensors"];
  EXPECT_EQ(changed, (std::vector<std::string>{
                         LayerTensor(1, "o_proj"), LayerTensor(1, "q_proj"),
                         LayerTensor(2, "o_proj"), LayerTensor(2, "q_proj")}));
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    EXPECT_TRUE(PathExists(out + "/" + f)) << f;
  }

  // The same edit again (heads in another order, relative to nothing new):
  // the complete result is kept.
  ASSERT_EQ(Run({"--base", *base_, "--out", out, "--prune", "2:3", "--prune",
                 "1:0,2"}),
            0)
      << err_.str();
  const json again = json::parse(out_.str());
  EXPECT_EQ(again["reused"], true);
  EXPECT_EQ(again["bytes_written"], 0);
  EXPECT_EQ(again["fingerprint"], first["fingerprint"]);

  // Another edit into the same directory is refused, naming it.
  EXPECT_EQ(Run({"--base", *base_, "--out", out, "--prune", "1:1"}), 1);
  EXPECT_THAT(err_.str(), StartsWith("materialize: "));
  EXPECT_THAT(err_.str(), HasSubstr("different edit"));
}

TEST_F(MaterializeCommandTest, LogitsEqualTheMaskedForwardOfTheBase) {
  const std::string work = NewTempDir("logits");
  const std::string out = work + "/model";
  ASSERT_EQ(Run({"--base", *base_, "--out", out, "--prune", "1:0,2", "--prune",
                 "2:3"}),
            0)
      << err_.str();
  ASSERT_EQ(DumpLogits({"--model", *base_, "--out", work + "/plain.st"}), 0);
  ASSERT_EQ(DumpLogits({"--model", *base_, "--out", work + "/masked.st",
                        "--mask", "1:0,2", "--mask", "2:3"}),
            0);
  ASSERT_EQ(DumpLogits({"--model", out, "--out", work + "/mat.st"}), 0);
  const std::vector<float> plain = ReadLogits(work + "/plain.st");
  const std::vector<float> masked = ReadLogits(work + "/masked.st");
  const std::vector<float> mat = ReadLogits(work + "/mat.st");
  ASSERT_FALSE(mat.empty());
  // The edit matters, and the materialized model is the masked base.
  EXPECT_GT(RelDiff(masked, plain), 1e-3);
  EXPECT_LE(RelDiff(mat, masked), 1e-5);
}

TEST_F(MaterializeCommandTest, HealFileAndLayerSelector) {
  const std::string work = NewTempDir("heal");
  // Layer 2 is a full layer (head_dim 32); layer 4 is outside --layers.
  const std::string heal = MakeHealFile(work, 2, 32, {1});
  ASSERT_EQ(Run({"--base", *base_, "--out", work + "/model", "--prune", "2:1",
                 "--prune", "4:0", "--heal", "2:" + heal, "--layers", "0-3"}),
            0)
      << err_.str();
  EXPECT_EQ(json::parse(out_.str())["tensors_changed"], 2);
  const json m = json::parse(ReadFile(work + "/model/sweepd_manifest.json"));
  EXPECT_EQ(m["layers_written"], json({0, 1, 2, 3}));
  ASSERT_EQ(m["heals"].size(), 1u);
  EXPECT_EQ(m["heals"][0]["layer"], 2);
  EXPECT_EQ(m["heals"][0]["artifact"]["path"], heal);
  EXPECT_EQ(m["heals"][0]["metadata"],
            json({{"heal_residual_rel_calibration", "0.125"},
                  {"heal_lambda", "0.5"}}));

  // A heal fitted for another head set (column of the pruned head 0 non-zero)
  // is rejected, naming the --heal.
  EXPECT_EQ(Run({"--base", *base_, "--out", work + "/bad", "--prune", "2:0",
                 "--heal", "2:" + heal}),
            1);
  EXPECT_THAT(err_.str(), HasSubstr("materialize.heals[0] (layer 2)"));
  EXPECT_THAT(err_.str(), HasSubstr("head 0"));
  EXPECT_FALSE(PathExists(work + "/bad"));
}

TEST_F(MaterializeCommandTest, RelativeOutIsMadeAbsolute) {
  const std::string work = NewTempDir("relative");
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  ASSERT_EQ(chdir(work.c_str()), 0);
  const int rc =
      Run({"--base", *base_, "--out", "rel/model", "--prune", "0:1"});
  ASSERT_EQ(chdir(cwd), 0);
  ASSERT_EQ(rc, 0) << err_.str();
  EXPECT_EQ(json::parse(out_.str())["out"], work + "/rel/model");
  EXPECT_TRUE(PathExists(work + "/rel/model/sweepd_manifest.json"));
}

TEST_F(MaterializeCommandTest, HelpAndUsageErrorsExitTwo) {
  EXPECT_EQ(Run({"--help"}), 0);
  EXPECT_THAT(out_.str(),
              StartsWith("usage: sweep-worker materialize --base DIR --out "
                         "DIR"));

  EXPECT_EQ(Run({"--out", "/tmp/x", "--prune", "0:1"}), 2);
  EXPECT_THAT(err_.str(),
              StartsWith("materialize: --base and --out are required"));

  EXPECT_EQ(Run({"--base", *base_, "--out", "/tmp/x"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("materialize: nothing to do"));

  EXPECT_EQ(Run({"--base", *base_, "--out", "/tmp/x", "--frobnicate", "1"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("materialize: unknown flag --frobnicate"));

  for (const char* bad : {"1", "1:", "a:1", "1:2,x", "1:2:3"}) {
    EXPECT_EQ(Run({"--base", *base_, "--out", "/tmp/x", "--prune", bad}), 2)
        << bad;
    EXPECT_EQ(err_.str(), std::string("materialize: --prune wants L:H,H,..., "
                                      "got '") +
                              bad + "'\n");
  }
  EXPECT_EQ(Run({"--base", *base_, "--out", "/tmp/x", "--heal", "file"}), 2);
  EXPECT_EQ(err_.str(), "materialize: --heal wants L:FILE, got 'file'\n");

  EXPECT_EQ(Run({"--base", *base_, "--out", "/tmp/x", "--prune", "0:1",
                 "--layers", "0-9"}),
            2);
  EXPECT_THAT(err_.str(), StartsWith("materialize: --layers: "));

  EXPECT_EQ(Run({"--base", *base_, "--out", "/tmp/x", "--prune", "0:1",
                 "--threads", "-1"}),
            2);
  EXPECT_THAT(err_.str(), StartsWith("materialize: --threads must be >= 0"));
}

TEST_F(MaterializeCommandTest, RuntimeErrorsExitOneAndNameWhatIsWrong) {
  const std::string work = NewTempDir("errors");
  EXPECT_EQ(
      Run({"--base", work + "/nope", "--out", work + "/a", "--prune", "0:1"}),
      1);
  EXPECT_THAT(err_.str(), StartsWith("materialize: "));
  EXPECT_THAT(err_.str(), HasSubstr(work + "/nope"));

  EXPECT_EQ(Run({"--base", *base_, "--out", work + "/b", "--prune", "1:9"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("materialize.pruned[0]"));
  EXPECT_THAT(err_.str(), HasSubstr("head 9 is out of range"));
  EXPECT_FALSE(PathExists(work + "/b"));

  // An occupied directory that is not a materialized checkpoint.
  ASSERT_TRUE(MakeDirs(work + "/c").ok());
  std::ofstream(work + "/c/notes.txt") << "mine\n";
  EXPECT_EQ(Run({"--base", *base_, "--out", work + "/c", "--prune", "0:1"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("has no sweepd_manifest.json"));
  EXPECT_EQ(ReadFile(work + "/c/notes.txt"), "mine\n");

  EXPECT_EQ(Run({"--base", *base_, "--out", work + "/d", "--heal",
                 "2:" + work + "/missing.safetensors"}),
            1);
  EXPECT_THAT(err_.str(), HasSubstr("missing.safetensors"));
}

}  // namespace
}  // namespace sweepd
