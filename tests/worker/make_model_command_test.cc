// Tests of `sweep-worker make-model` (worker/make_model_command.h): its flags,
// usage errors and exit codes, and one tiny model written end to end.
#include "worker/make_model_command.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string TinyConfig() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return std::string(d != nullptr ? d : ".") +
         "/configs/models/gemma4-tiny.json";
}

class MakeModelCommandTest : public ::testing::Test {
 protected:
  int Run(const std::vector<std::string>& args) {
    out_.str("");
    err_.str("");
    return RunMakeModelCommand(args, out_, err_);
  }
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(MakeModelCommandTest, WritesAModelDirectory) {
  const std::string dir = ::testing::TempDir() + "/make_model_command_test";
  // A repeated flag keeps its last value; --flag=value works too.
  EXPECT_EQ(
      Run({"--config", TinyConfig(), "--seed", "9", "--seed=1", "--out", dir}),
      0)
      << err_.str();
  EXPECT_EQ(out_.str(),
            "wrote " + dir + " (config.json, safetensors, tokenizer.json)\n");
  EXPECT_EQ(err_.str(), "");
  for (const char* file :
       {"config.json", "model.safetensors", "tokenizer.json"}) {
    EXPECT_TRUE(std::ifstream(dir + "/" + file).good()) << file;
  }
}

TEST_F(MakeModelCommandTest, HelpPrintsTheUsage) {
  EXPECT_EQ(Run({"--help"}), 0);
  EXPECT_THAT(out_.str(), StartsWith("usage: sweep-worker make-model --config "
                                     "FILE --seed N --out DIR"));
  EXPECT_EQ(err_.str(), "");
}

TEST_F(MakeModelCommandTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Run({"--config", TinyConfig(), "--out", "/tmp/x"}), 2);
  EXPECT_THAT(err_.str(),
              HasSubstr("make-model: --config, --seed and --out are required"));
  EXPECT_THAT(err_.str(), HasSubstr("usage: sweep-worker make-model"));

  EXPECT_EQ(Run({"--config", TinyConfig(), "--out", "/tmp/x", "--seed"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("make-model: flag --seed needs a value"));

  EXPECT_EQ(Run({"--frobnicate", "1", "--config", TinyConfig()}), 2);
  EXPECT_THAT(err_.str(), StartsWith("make-model: unknown flag --frobnicate"));

  EXPECT_EQ(Run({"--config", TinyConfig(), "--out", "/tmp/x", "--seed", "-1"}),
            2);
  EXPECT_EQ(err_.str(),
            "make-model: --seed must be a non-negative integer, got -1\n");

  EXPECT_EQ(Run({"--config", TinyConfig(), "--out", "/tmp/x", "--seed", "1",
                 "--shard-bytes", "lots"}),
            2);
  EXPECT_EQ(
      err_.str(),
      "make-model: --shard-bytes must be a non-negative integer, got lots\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(MakeModelCommandTest, RuntimeErrorsExitOne) {
  const std::string dir = ::testing::TempDir() + "/make_model_command_bad";
  EXPECT_EQ(Run({"--config", TinyConfig(), "--seed", "1", "--out", dir,
                 "--dtype", "float16"}),
            1);
  EXPECT_THAT(err_.str(), HasSubstr("--dtype must be float32 or bfloat16"));
  EXPECT_EQ(Run({"--config", dir + "/no-such-config.json", "--seed", "1",
                 "--out", dir}),
            1);
  EXPECT_THAT(err_.str(), StartsWith("make-model: "));
}

}  // namespace
}  // namespace sweepd
