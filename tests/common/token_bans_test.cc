// Tests of common/token_bans.h on a hand-written tiny vocabulary; the sizes of
// the real Gemma 3 families are checked in tests/tokenizer/token_bans_npm_test.
#include "common/token_bans.h"

#include <memory>
#include <string>
#include <vector>

#include "common/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/tokenizer_test_json.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

using ::sweepd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The tokenizer tests' vocabulary (ids 0-17, see tokenizer_test_json.h) plus
// quote-bearing tokens:
//   18 "  19 ▁"  20 a'  21 “  22 <0x22> (the byte of ")  23 <0xE2> (lead byte
//   of “)  24 '"  25 <q"> (special added token)
std::unique_ptr<Tokenizer> QuoteTokenizer() {
  nlohmann::json j = ::sweepd::testing::BaseJson();
  auto& vocab = j["model"]["vocab"];
  vocab["\""] = 18;
  vocab["\xE2\x96\x81\""] = 19;
  vocab["a'"] = 20;
  vocab["\xE2\x80\x9C"] = 21;
  vocab["<0x22>"] = 22;
  vocab["<0xE2>"] = 23;
  vocab["'\""] = 24;
  vocab["<q\">"] = 25;
  j["added_tokens"].push_back({{"id", 25},
                               {"content", "<q\">"},
                               {"single_word", false},
                               {"lstrip", false},
                               {"rstrip", false},
                               {"normalized", false},
                               {"special", true}});
  auto tok = Tokenizer::FromJson(j.dump(), "quote_tokenizer.json");
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

TEST(TokenBansTest, DoubleQuoteFamily) {
  auto tok = QuoteTokenizer();
  ASSERT_NE(tok, nullptr);
  auto family = FindTokenFamily(*tok, {"\""});
  ASSERT_TRUE(family.ok()) << family.status();
  // The byte token <0x22> decodes to '"' and is in the family; the special
  // <q"> is not (control tokens are never banned by default).
  EXPECT_THAT(family->ids, ElementsAre(18, 19, 22, 24));
  EXPECT_EQ(family->size(), 4);
  EXPECT_THAT(family->needle_counts, ElementsAre(4));
}

TEST(TokenBansTest, UnionOfFamiliesIsSortedAndCountedOnce) {
  auto tok = QuoteTokenizer();
  ASSERT_NE(tok, nullptr);
  auto family = FindTokenFamily(*tok, {"\"", "'"});
  ASSERT_TRUE(family.ok()) << family.status();
  EXPECT_THAT(family->ids, ElementsAre(18, 19, 20, 22, 24));
  EXPECT_THAT(family->needle_counts, ElementsAre(4, 2));
}

TEST(TokenBansTest, LoneLeadByteDoesNotMatchAMultiByteCharacter) {
  auto tok = QuoteTokenizer();
  ASSERT_NE(tok, nullptr);
  auto family = FindTokenFamily(*tok, {"\xE2\x80\x9C"});  // “
  ASSERT_TRUE(family.ok()) << family.status();
  // <0xE2> (id 23) alone decodes to U+FFFD, not to “.
  EXPECT_THAT(family->ids, ElementsAre(21));
}

TEST(TokenBansTest, SpecialTokensOnlyWhenAsked) {
  auto tok = QuoteTokenizer();
  ASSERT_NE(tok, nullptr);
  TokenFamilyOptions opts;
  opts.include_special = true;
  auto family = FindTokenFamily(*tok, {"<"}, opts);
  ASSERT_TRUE(family.ok()) << family.status();
  // <pad> <eos> <bos> <unk> <start_of_turn> and <q"> are special; the byte
  // tokens decode to bytes, not to "<0x..>".
  EXPECT_THAT(family->ids, ElementsAre(0, 1, 2, 3, 4, 25));
  auto without = FindTokenFamily(*tok, {"<"});
  ASSERT_TRUE(without.ok());
  EXPECT_TRUE(without->ids.empty());
  // A leading "▁" decodes to a space.
  auto spaces = FindTokenFamily(*tok, {" \""});
  ASSERT_TRUE(spaces.ok());
  EXPECT_THAT(spaces->ids, ElementsAre(19));
}

TEST(TokenBansTest, RejectsBadNeedles) {
  auto tok = QuoteTokenizer();
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(FindTokenFamily(*tok, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no strings to ban")));
  EXPECT_THAT(FindTokenFamily(*tok, {"\"", ""}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("string 1 is empty")));
  EXPECT_THAT(FindTokenFamily(*tok, {"\xE2\x80"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("string 0 is not valid UTF-8")));
}

}  // namespace
}  // namespace sweepd
