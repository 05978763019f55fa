// Tests of `sweep-worker dump-logits` (worker/dump_logits_command.h) on a
// tiny model written by `sweep-worker make-model`: the file it writes (tensors,
// shapes, BOS, metadata), determinism in the token seed, a mask that changes
// the logits, and usage / runtime errors with their exit codes.
#include "worker/dump_logits_command.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/make_model_command.h"
#include "worker/materialize_command.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string TinyConfig() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return std::string(d != nullptr ? d : ".") +
         "/configs/models/gemma4-tiny.json";
}

std::string NewTempDir(const std::string& name) {
  std::string tmp = ::testing::TempDir();  // may end in '/'
  while (tmp.size() > 1 && tmp.back() == '/') tmp.pop_back();
  const std::string dir = tmp + "/dump_logits_command_test_" +
                          std::to_string(getpid()) + "_" + name;
  EXPECT_TRUE(RemoveAll(dir).ok());
  EXPECT_TRUE(MakeDirs(dir).ok());
  return dir;
}

template <typename T>
std::vector<T> Values(const SafetensorsFile& f, const std::string& name) {
  const TensorView* t = f.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  std::vector<T> v(t->nbytes / sizeof(T));
  std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}

class DumpLogitsCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::string(NewTempDir("model"));
    std::ostringstream out, err;
    EXPECT_EQ(RunMakeModelCommand(
                  {"--config", TinyConfig(), "--seed", "3", "--out", *model_},
                  out, err),
              0)
        << err.str();
  }
  static void TearDownTestSuite() { delete model_; }

  int Run(const std::vector<std::string>& args) {
    out_.str("");
    err_.str("");
    return RunDumpLogitsCommand(args, out_, err_);
  }

  static std::string* model_;
  std::ostringstream out_;
  std::ostringstream err_;
};
std::string* DumpLogitsCommandTest::model_ = nullptr;

TEST_F(DumpLogitsCommandTest, WritesTokensAndLogits) {
  const std::string work = NewTempDir("writes");
  const std::string file = work + "/a.safetensors";
  ASSERT_EQ(Run({"--model", *model_, "--out", file, "--batch", "3", "--seq",
                 "10", "--mask", "1:0,3"}),
            0)
      << err_.str();
  EXPECT_EQ(out_.str(),
            "wrote " + file + " (input_ids [3, 10], logits [3, 10, 512])\n");
  EXPECT_EQ(err_.str(), "");
  auto f = SafetensorsFile::Open(file);
  ASSERT_TRUE(f.ok()) << f.status();
  const TensorView* ids = (*f)->Find("input_ids");
  const TensorView* logits = (*f)->Find("logits");
  ASSERT_NE(ids, nullptr);
  ASSERT_NE(logits, nullptr);
  EXPECT_EQ(ids->dtype, StDtype::kI64);
  EXPECT_EQ(ids->shape, (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(logits->dtype, StDtype::kF32);
  EXPECT_EQ(logits->shape, (std::vector<int64_t>{3, 10, 512}));
  const std::vector<int64_t> tokens = Values<int64_t>(**f, "input_ids");
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(tokens[b * 10], 2) << "BOS first in row " << b;
    for (int s = 0; s < 10; ++s) {
      EXPECT_GE(tokens[b * 10 + s], 0);
      EXPECT_LT(tokens[b * 10 + s], 512);
    }
  }
  for (float x : Values<float>(**f, "logits")) ASSERT_TRUE(std::isfinite(x));
  EXPECT_EQ((*f)->metadata().at("model"), *model_);
  EXPECT_EQ((*f)->metadata().at("interventions"), "mask_heads 1:0,3");
  EXPECT_EQ((*f)->metadata().at("dtype"), "float32");
}

TEST_F(DumpLogitsCommandTest, TokenSeedDecidesTheTokensAndMaskTheLogits) {
  const std::string work = NewTempDir("seed");
  ASSERT_EQ(Run({"--model", *model_, "--out", work + "/a"}), 0) << err_.str();
  ASSERT_EQ(Run({"--model", *model_, "--out", work + "/b"}), 0) << err_.str();
  ASSERT_EQ(
      Run({"--model", *model_, "--out", work + "/c", "--token-seed", "6"}), 0)
      << err_.str();
  ASSERT_EQ(Run({"--model", *model_, "--out", work + "/m", "--mask", "0:1"}), 0)
      << err_.str();
  auto a = SafetensorsFile::Open(work + "/a");
  auto b = SafetensorsFile::Open(work + "/b");
  auto c = SafetensorsFile::Open(work + "/c");
  auto m = SafetensorsFile::Open(work + "/m");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && m.ok());
  EXPECT_EQ(Values<int64_t>(**a, "input_ids"),
            Values<int64_t>(**b, "input_ids"));
  EXPECT_EQ(Values<float>(**a, "logits"), Values<float>(**b, "logits"));
  EXPECT_NE(Values<int64_t>(**a, "input_ids"),
            Values<int64_t>(**c, "input_ids"));
  EXPECT_EQ(Values<int64_t>(**a, "input_ids"),
            Values<int64_t>(**m, "input_ids"));
  EXPECT_NE(Values<float>(**a, "logits"), Values<float>(**m, "logits"));
}

TEST_F(DumpLogitsCommandTest, TokensFromAFile) {
  const std::string work = NewTempDir("tokens");
  // I32 tokens [1, 5] without BOS are taken as they are.
  const std::vector<int32_t> ids = {7, 8, 9, 10, 511};
  SafetensorsWriter w;
  ASSERT_TRUE(
      w.Add("input_ids", StDtype::kI32, {1, 5}, ids.data(), ids.size() * 4)
          .ok());
  ASSERT_TRUE(w.WriteFile(work + "/ids").ok());
  ASSERT_EQ(Run({"--model", *model_, "--tokens", work + "/ids", "--out",
                 work + "/a"}),
            0)
      << err_.str();
  auto a = SafetensorsFile::Open(work + "/a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(Values<int64_t>(**a, "input_ids"),
            (std::vector<int64_t>{7, 8, 9, 10, 511}));
  EXPECT_EQ((*a)->Find("logits")->shape, (std::vector<int64_t>{1, 5, 512}));
  EXPECT_EQ((*a)->metadata().at("tokens"), work + "/ids");

  // A dump's own input_ids reproduce it.
  ASSERT_EQ(
      Run({"--model", *model_, "--out", work + "/b", "--token-seed", "9"}), 0);
  ASSERT_EQ(
      Run({"--model", *model_, "--out", work + "/c", "--tokens", work + "/b"}),
      0)
      << err_.str();
  auto b = SafetensorsFile::Open(work + "/b");
  auto c = SafetensorsFile::Open(work + "/c");
  ASSERT_TRUE(b.ok() && c.ok());
  EXPECT_EQ(Values<float>(**b, "logits"), Values<float>(**c, "logits"));
  EXPECT_EQ((*b)->metadata().at("tokens"), "random, token seed 9");

  EXPECT_EQ(Run({"--model", *model_, "--out", work + "/x", "--tokens",
                 work + "/b", "--seq", "4"}),
            2);
  EXPECT_THAT(err_.str(), StartsWith("dump-logits: --tokens takes the tokens"));

  const std::vector<int64_t> bad = {2, 512};
  SafetensorsWriter wb;
  ASSERT_TRUE(
      wb.Add("input_ids", StDtype::kI64, {1, 2}, bad.data(), bad.size() * 8)
          .ok());
  ASSERT_TRUE(wb.WriteFile(work + "/bad").ok());
  EXPECT_EQ(Run({"--model", *model_, "--out", work + "/x", "--tokens",
                 work + "/bad"}),
            1);
  EXPECT_EQ(err_.str(),
            "dump-logits: --tokens: input_ids[0, 1] = 512 is outside the "
            "vocabulary [0, 512)\n");
  EXPECT_EQ(Run({"--model", *model_, "--out", work + "/x", "--tokens",
                 work + "/a", "--mask", "0:1"}),
            0);  // a dump also holds input_ids
  EXPECT_EQ(Run({"--model", *model_, "--out", work + "/x", "--tokens",
                 work + "/none"}),
            1);
  EXPECT_THAT(err_.str(), StartsWith("dump-logits: --tokens: "));
}

// --mask + --replace-layer dump the masked-and-healed forward of the base,
// which equals the forward of the checkpoint materialized with that prune and
// heal (float32 base: the heal is stored as is).
TEST_F(DumpLogitsCommandTest, ReplaceLayerDumpsTheHealedForward) {
  const std::string work = NewTempDir("replace");
  auto base = Checkpoint::Open(*model_);
  ASSERT_TRUE(base.ok()) << base.status();
  const TensorView* o = nullptr;
  for (const std::string& name : (*base)->names()) {
    if (absl::EndsWith(name, ".layers.1.self_attn.o_proj.weight")) {
      o = (*base)->Find(name);
    }
  }
  ASSERT_NE(o, nullptr);
  ASSERT_EQ(o->dtype, StDtype::kF32);
  const int64_t hidden = o->shape[0], D = o->shape[1];
  std::vector<float> w(hidden * D);
  std::memcpy(w.data(), o->data, o->nbytes);
  const int64_t hd = D / 4;  // gemma4-tiny: 4 heads
  for (int64_t r = 0; r < hidden; ++r) {
    for (int64_t c = 0; c < D; ++c) {
      w[r * D + c] = c < hd ? 0.0f : w[r * D + c] * 1.25f + 0.01f;
    }
  }
  SafetensorsWriter writer;
  ASSERT_TRUE(writer
                  .Add("self_attn.o_proj.weight", StDtype::kF32, {hidden, D},
                       w.data(), w.size() * sizeof(float))
                  .ok());
  const std::string heal = work + "/heal.safetensors";
  ASSERT_TRUE(writer.WriteFile(heal).ok());
  std::ostringstream mout, merr;
  ASSERT_EQ(RunMaterializeCommand({"--base", *model_, "--out", work + "/mat",
                                   "--prune", "1:0", "--heal", "1:" + heal},
                                  mout, merr),
            0)
      << merr.str();
  ASSERT_EQ(Run({"--model", work + "/mat", "--out", work + "/m"}), 0)
      << err_.str();
  ASSERT_EQ(Run({"--model", *model_, "--out", work + "/b", "--mask", "1:0",
                 "--replace-layer", "1:" + heal}),
            0)
      << err_.str();
  ASSERT_EQ(Run({"--model", *model_, "--out", work + "/k", "--mask", "1:0"}), 0)
      << err_.str();
  auto m = SafetensorsFile::Open(work + "/m");
  auto b = SafetensorsFile::Open(work + "/b");
  auto k = SafetensorsFile::Open(work + "/k");
  ASSERT_TRUE(m.ok() && b.ok() && k.ok());
  EXPECT_EQ((*b)->metadata().at("interventions"),
            "mask_heads 1:0; replace_layer 1:" + heal);
  const std::vector<float> lm = Values<float>(**m, "logits");
  const std::vector<float> lb = Values<float>(**b, "logits");
  const std::vector<float> lk = Values<float>(**k, "logits");
  ASSERT_EQ(lm.size(), lb.size());
  double max_diff = 0, max_masked_diff = 0;
  for (size_t i = 0; i < lm.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(double{lm[i]} - lb[i]));
    max_masked_diff =
        std::max(max_masked_diff, std::fabs(double{lm[i]} - lk[i]));
  }
  EXPECT_LT(max_diff, 1e-4);
  EXPECT_GT(max_masked_diff, 1e-3);  // the heal matters
  EXPECT_EQ(Run({"--model", *model_, "--out", work + "/x", "--replace-layer",
                 "one:" + heal}),
            2);
  EXPECT_THAT(err_.str(), HasSubstr("--replace-layer wants L:FILE"));
}

TEST_F(DumpLogitsCommandTest, HelpAndUsageErrorsExitTwo) {
  EXPECT_EQ(Run({"--help"}), 0);
  EXPECT_THAT(out_.str(),
              StartsWith("usage: sweep-worker dump-logits --model DIR --out "
                         "FILE"));

  EXPECT_EQ(Run({"--out", "/tmp/x"}), 2);
  EXPECT_THAT(err_.str(),
              StartsWith("dump-logits: --model and --out are required"));

  EXPECT_EQ(Run({"--model", *model_, "--out", "/tmp/x", "--bogus", "1"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("dump-logits: unknown flag --bogus"));

  EXPECT_EQ(Run({"--model", *model_, "--out", "/tmp/x", "--batch", "0"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("dump-logits: --batch and --seq must be "
                                     ">= 1 with batch x seq <= 65536, got 0 x "
                                     "24"));
  EXPECT_EQ(Run({"--model", *model_, "--out", "/tmp/x", "--seq", "70000"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("got 2 x 70000"));

  EXPECT_EQ(Run({"--model", *model_, "--out", "/tmp/x", "--tp", "0"}), 2);
  EXPECT_EQ(err_.str(), "dump-logits: --tp must be >= 1, got 0\n");

  EXPECT_EQ(Run({"--model", *model_, "--out", "/tmp/x", "--mask", "3"}), 2);
  EXPECT_EQ(err_.str(), "dump-logits: --mask wants L:H,H,..., got '3'\n");

  EXPECT_EQ(Run({"--model", *model_, "--out", "/tmp/x", "--dtype", "int8"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("dump-logits: --dtype: "));
}

TEST_F(DumpLogitsCommandTest, RuntimeErrorsExitOne) {
  const std::string work = NewTempDir("errors");
  EXPECT_EQ(Run({"--model", work + "/nope", "--out", work + "/x"}), 1);
  EXPECT_THAT(err_.str(), StartsWith("dump-logits: "));
  EXPECT_THAT(err_.str(), HasSubstr(work + "/nope"));

  EXPECT_EQ(Run({"--model", *model_, "--out", work + "/x", "--mask", "1:7"}),
            1);
  EXPECT_THAT(err_.str(), StartsWith("dump-logits: "));
  EXPECT_THAT(err_.str(), HasSubstr("7"));
  EXPECT_FALSE(PathExists(work + "/x"));

  EXPECT_EQ(Run({"--model", *model_, "--out", work + "/no/such/dir/x"}), 1);
  EXPECT_THAT(err_.str(), StartsWith("dump-logits: "));
}

}  // namespace
}  // namespace sweepd
