// Tests of `sweep-worker tokenize` (worker/tokenize_command.h) on the
// hand-written tokenizer of tests/common/tokenizer_test_json.h.
#include "worker/tokenize_command.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/tokenizer_test_json.h"

namespace sweepd {
namespace {

using ::sweepd::testing::BaseJson;
using ::testing::HasSubstr;

class TokenizeCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "/tokenize_cli_test_tokenizer.json";
    std::ofstream out(path_, std::ios::binary);
    out << BaseJson().dump();
  }
  int Run(const std::vector<std::string>& args, const std::string& stdin_text) {
    std::istringstream in(stdin_text);
    out_.str("");
    err_.str("");
    return RunTokenizeCommand(args, in, out_, err_);
  }
  std::string path_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(TokenizeCommandTest, EncodesWithAndWithoutBos) {
  EXPECT_EQ(Run({"--tokenizer", path_}, "abc ab"), 0) << err_.str();
  EXPECT_EQ(out_.str(), "[2, 17, 9, 13]\n");
  EXPECT_EQ(Run({"--tokenizer=" + path_, "--bos", "off"}, "abc ab\n"), 0)
      << err_.str();
  EXPECT_EQ(out_.str(), "[17, 9, 13, 5]\n");
}

TEST_F(TokenizeCommandTest, Decodes) {
  EXPECT_EQ(Run({"--tokenizer", path_, "--decode"}, "[2, 17, 16, 7, 8]"), 0)
      << err_.str();
  EXPECT_EQ(out_.str(), "<bos>abc ab\xC3\xA9");
  EXPECT_EQ(
      Run({"--tokenizer", path_, "--decode", "--skip-special"}, "[2, 17]"), 0);
  EXPECT_EQ(out_.str(), "abc");
}

TEST_F(TokenizeCommandTest, ReportsErrors) {
  EXPECT_EQ(Run({"--bos", "on"}, ""), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--tokenizer FILE is required"));
  EXPECT_EQ(Run({"--tokenizer", path_, "--bos", "maybe"}, ""), 2);
  EXPECT_THAT(err_.str(), HasSubstr("'on' or 'off'"));
  EXPECT_EQ(Run({"--tokenizer", path_, "--frobnicate"}, ""), 2);
  EXPECT_THAT(err_.str(), HasSubstr("unknown argument '--frobnicate'"));
  EXPECT_EQ(Run({"--tokenizer", path_ + ".missing"}, "x"), 1);
  EXPECT_THAT(err_.str(), HasSubstr(".missing"));
  EXPECT_EQ(Run({"--tokenizer", path_, "--decode"}, "[1, \"x\"]"), 1);
  EXPECT_THAT(err_.str(), HasSubstr("element 1"));
  EXPECT_EQ(Run({"--tokenizer", path_, "--decode"}, "[1, 500]"), 1);
  EXPECT_THAT(err_.str(), HasSubstr("500"));
}

TEST(TokenizeMainTest, UsesArgvAfterTheSubcommandName) {
  // --help prints usage and returns the usage-error status without touching
  // stdin.
  char name[] = "tokenize";
  char help[] = "--help";
  char* argv[] = {name, help};
  EXPECT_EQ(TokenizeMain(2, argv), 2);
}

}  // namespace
}  // namespace sweepd
