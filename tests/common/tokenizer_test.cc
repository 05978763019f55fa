// Unit tests of common/tokenizer.h and common/tokenizer_gen.h on small
// hand-written tokenizer.json files (tests/common/tokenizer_test_json.h) whose
// expected ids were worked out by hand from the BPE rules (lowest merge rank
// first, leftmost on ties). The comparison with an independent implementation
// is tests/tokenizer/tokenizer_npm_test.cc.
#include "common/tokenizer.h"

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/tokenizer_gen.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/tokenizer_test_json.h"

namespace sweepd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;
using ::sweepd::testing::BaseJson;

std::unique_ptr<Tokenizer> Load(const Json& j) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::FromJson(j.dump(), "test.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

std::vector<int32_t> Ids(const Tokenizer& t, const std::string& text,
                         BosPolicy bos = BosPolicy::kOff) {
  absl::StatusOr<std::vector<int32_t>> ids = t.Encode(text, bos);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(TokenizerTest, MergesApplyInRankOrder) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  // "abc": a+b (rank 0) beats b+c (rank 1), then ab+c (rank 4) -> abc.
  EXPECT_THAT(Ids(*t, "abc"), ElementsAre(17));
  // "bc" alone: b+c.
  EXPECT_THAT(Ids(*t, "bc"), ElementsAre(14));
  // " abc" -> ▁ a b c: a+b (0) first, then ▁+a is no longer possible; ▁ stays
  // alone, ab+c (4) -> abc.
  EXPECT_THAT(Ids(*t, " abc"), ElementsAre(9, 17));
  // " a b": ▁+a (2) -> ▁a, then ▁ b stays (no "▁ b" merge).
  EXPECT_THAT(Ids(*t, " a b"), ElementsAre(15, 9, 11));
}

TEST(TokenizerTest, TiesGoToTheLeftmostPair) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  // "abab": two "a b" candidates of equal rank: both merge (left first) -> ab
  // ab.
  EXPECT_THAT(Ids(*t, "abab"), ElementsAre(13, 13));
  // "aab": "a a" is no merge; "a b" at position 1 -> a ab.
  EXPECT_THAT(Ids(*t, "aab"), ElementsAre(10, 13));
  // "abcbc": a+b first -> ab c b c; then b+c (1) at the right -> ab c bc; then
  // ab+c -> abc bc.
  EXPECT_THAT(Ids(*t, "abcbc"), ElementsAre(17, 14));
}

TEST(TokenizerTest, ByteFallbackAndUnk) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  // 'é' is not in the vocab but its bytes C3 A9 are.
  EXPECT_THAT(Ids(*t, "a\xC3\xA9"), ElementsAre(10, 7, 8));
  // 'A' (0x41) has a byte token; 'Z' (0x5A) has none -> <unk>; two in a row
  // fuse.
  EXPECT_THAT(Ids(*t, "AZ"), ElementsAre(6, 3));
  EXPECT_THAT(Ids(*t, "ZZa"), ElementsAre(3, 10));
  Json no_fuse = BaseJson();
  no_fuse["model"]["fuse_unk"] = false;
  auto t2 = Load(no_fuse);
  ASSERT_NE(t2, nullptr);
  EXPECT_THAT(Ids(*t2, "ZZa"), ElementsAre(3, 3, 10));
}

TEST(TokenizerTest, NoFallbackAndNoUnkIsAnError) {
  Json j = BaseJson();
  j["model"]["unk_token"] = nullptr;
  auto t = Load(j);
  ASSERT_NE(t, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids = t->Encode("aZ", BosPolicy::kOff);
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(ids.status().message()), HasSubstr("'Z'"));
}

TEST(TokenizerTest, BosPolicyIsExplicit) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->bos_id(), 2);
  EXPECT_EQ(t->eos_id(), 1);
  EXPECT_EQ(t->pad_id(), 0);
  EXPECT_EQ(t->unk_id(), 3);
  EXPECT_THAT(Ids(*t, "ab", BosPolicy::kOn), ElementsAre(2, 13));
  EXPECT_THAT(Ids(*t, "ab", BosPolicy::kOff), ElementsAre(13));
  EXPECT_THAT(Ids(*t, "", BosPolicy::kOn), ElementsAre(2));
  EXPECT_THAT(Ids(*t, "", BosPolicy::kOff), ElementsAre());
  // "<bos>" typed in the text is the added token, whatever the policy.
  EXPECT_THAT(Ids(*t, "<bos>ab", BosPolicy::kOn), ElementsAre(2, 2, 13));
}

TEST(TokenizerTest, BosWithoutBosTokenFails) {
  Json j = BaseJson();
  j["post_processor"] = nullptr;
  j["model"]["vocab"].erase("<bos>");
  j["model"]["vocab"]["<s0>"] = 2;
  j["added_tokens"][2]["content"] = "<s0>";
  auto t = Load(j);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->bos_id(), -1);
  absl::StatusOr<std::vector<int32_t>> ids = t->Encode("ab", BosPolicy::kOn);
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(ids.status().message()), HasSubstr("BOS"));
}

TEST(TokenizerTest, AddedTokensSplitTheTextLongestFirst) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Ids(*t, "ab<start_of_turn>c\nab"), ElementsAre(13, 4, 12, 5, 13));
  // A prefix of an added token is ordinary text.
  EXPECT_THAT(Ids(*t, "<start"), ::testing::Not(::testing::Contains(4)));
}

TEST(TokenizerTest, LstripAndRstripSwallowWhitespace) {
  Json j = BaseJson();
  j["added_tokens"][4]["lstrip"] = true;
  j["added_tokens"][4]["rstrip"] = true;
  auto t = Load(j);
  ASSERT_NE(t, nullptr);
  // The spaces around the token vanish (they would be ▁ = 9 otherwise).
  EXPECT_THAT(Ids(*t, "ab  <start_of_turn>  c"), ElementsAre(13, 4, 12));
  auto plain = Load(BaseJson());
  ASSERT_NE(plain, nullptr);
  EXPECT_THAT(Ids(*plain, "ab <start_of_turn> c"),
              ElementsAre(13, 9, 4, 9, 12));
}

TEST(TokenizerTest, SingleWordTokensOnlyMatchWholeWords) {
  Json j = BaseJson();
  j["added_tokens"][4]["single_word"] = true;
  auto t = Load(j);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Ids(*t, "a <start_of_turn> b"), ::testing::Contains(4));
  EXPECT_THAT(Ids(*t, "a<start_of_turn>b"),
              ::testing::Not(::testing::Contains(4)));
}

TEST(TokenizerTest, NormalizedAddedTokensMatchAfterNormalization) {
  Json j = BaseJson();
  // An added token " c" that is normalized: matches "▁c" in the normalized
  // text.
  j["added_tokens"].push_back({{"id", 18},
                               {"content", " c"},
                               {"single_word", false},
                               {"lstrip", false},
                               {"rstrip", false},
                               {"normalized", true},
                               {"special", false}});
  j["model"]["vocab"][" c"] = 18;
  auto t = Load(j);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Ids(*t, "ab c"), ElementsAre(13, 18));
}

TEST(TokenizerTest, LegacyStringMergesAreAccepted) {
  Json j = BaseJson();
  Json merges = Json::array();
  for (const Json& m : j["model"]["merges"]) {
    merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  j["model"]["merges"] = merges;
  auto t = Load(j);
  ASSERT_NE(t, nullptr);
  // ▁ a b c ▁ a b a b: the rank-0 "a b" merges win before "▁ a" can form.
  EXPECT_THAT(Ids(*t, " abc abab"), ElementsAre(9, 17, 9, 13, 13));
}

TEST(TokenizerTest, DecodeReassemblesBytesAndSpaces) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  const std::string text = "ab c\n\xC3\xA9<start_of_turn> a";
  const std::vector<int32_t> ids = Ids(*t, text);
  absl::StatusOr<std::string> decoded = t->Decode(ids, /*skip_special=*/false);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, text);
  decoded = t->Decode(ids, /*skip_special=*/true);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "ab c\n\xC3\xA9 a");
  // A lone continuation byte is not UTF-8: one U+FFFD per byte, as `tokenizers`
  // does.
  decoded = t->Decode({10, 8, 8, 11}, false);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded,
            "a\xEF\xBF\xBD\xEF\xBF\xBD"
            "b");
}

TEST(TokenizerTest, DecodeRejectsUnknownIds) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  absl::StatusOr<std::string> decoded = t->Decode({10, 99}, false);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()),
              HasSubstr("99 at position 1"));
}

TEST(TokenizerTest, InvalidUtf8InputIsRejected) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids =
      t->Encode("ab\xFF", BosPolicy::kOff);
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids.status().message()), HasSubstr("byte offset 2"));
}

TEST(TokenizerTest, LookupsAndSpecialFlags) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 18);
  EXPECT_EQ(t->TokenToId("abc"), 17);
  EXPECT_EQ(t->TokenToId("zzz"), std::nullopt);
  EXPECT_EQ(t->IdToToken(15),
            "\xE2\x96\x81"
            "a");
  EXPECT_EQ(t->IdToToken(18), std::nullopt);
  EXPECT_TRUE(t->IsSpecial(4));
  EXPECT_FALSE(t->IsSpecial(5));
}

TEST(TokenizerTest, ConcurrentEncodesAgree) {
  auto t = Load(BaseJson());
  ASSERT_NE(t, nullptr);
  const std::vector<int32_t> want = Ids(*t, " abc abab\nbc");
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < 2000; ++i) {
        auto ids = t->Encode(i % 2 ? " abc abab\nbc" : "abc", BosPolicy::kOff);
        if (i % 2 && (!ids.ok() || *ids != want)) ++mismatches[k];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// Malformed files: the error names the source and the field.

void ExpectLoadError(const Json& j, const std::string& field_text) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::FromJson(j.dump(), "bad.json");
  ASSERT_FALSE(t.ok()) << "expected an error mentioning " << field_text;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("bad.json"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr(field_text));
}

TEST(TokenizerErrorsTest, NotJson) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::FromJson("{\"model\": ", "x.json");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()),
              HasSubstr("x.json: not valid JSON"));
}

TEST(TokenizerErrorsTest, MissingFile) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromFile(
      ::testing::TempDir() + "/does_not_exist/tokenizer.json");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()),
              HasSubstr("does_not_exist/tokenizer.json"));
}

TEST(TokenizerErrorsTest, FieldErrors) {
  Json j = BaseJson();
  j.erase("model");
  ExpectLoadError(j, "'model'");

  j = BaseJson();
  j["model"]["type"] = "Unigram";
  ExpectLoadError(j, "model.type");

  j = BaseJson();
  j["model"]["vocab"]["zz"] = "seven";
  ExpectLoadError(j, "model.vocab[\"zz\"]");

  j = BaseJson();
  j["model"]["vocab"]["zz"] = 10;  // id of "a"
  ExpectLoadError(j, "also used by");

  j = BaseJson();
  j["model"]["merges"][3] = Json::array({"a", "q"});
  ExpectLoadError(j, "model.merges[3]");

  j = BaseJson();
  j["model"]["merges"][1] = "a b c";
  ExpectLoadError(j, "model.merges[1]");

  j = BaseJson();
  j["model"]["merges"][0] =
      Json::array({"b", "a"});  // "ba" is not in the vocab
  ExpectLoadError(j, "merged token 'ba'");

  j = BaseJson();
  j["model"]["unk_token"] = "<nope>";
  ExpectLoadError(j, "model.unk_token");

  j = BaseJson();
  j["model"]["dropout"] = 0.1;
  ExpectLoadError(j, "model.dropout");

  j = BaseJson();
  j["normalizer"] = {{"type", "NFKC"}};
  ExpectLoadError(j, "normalizer.type");

  j = BaseJson();
  j["normalizer"]["pattern"] = {{"Regex", "\\s"}};
  ExpectLoadError(j, "normalizer.pattern");

  j = BaseJson();
  j["pre_tokenizer"]["behavior"] = "Sideways";
  ExpectLoadError(j, "pre_tokenizer.behavior");

  j = BaseJson();
  j["decoder"]["decoders"][1] = {{"type", "ByteLevel"}};
  ExpectLoadError(j, "decoder.decoders[1].type");

  j = BaseJson();
  j["added_tokens"][4]["id"] = 10;  // id of "a"
  ExpectLoadError(j, "added_tokens[4].id");

  j = BaseJson();
  j["added_tokens"][2]["special"] = "yes";
  ExpectLoadError(j, "added_tokens[2].special");

  j = BaseJson();
  j["post_processor"]["single"][1] = {
      {"SpecialToken", {{"id", "<eos>"}, {"type_id", 0}}}};
  ExpectLoadError(j, "post_processor.single[1]");
}

// Found by tests/fuzz/tokenizer_fuzzer: a one-entry vocabulary with id ~3e8
// made FromJson allocate ~10 GB for its id tables.
TEST(TokenizerErrorsTest, IdsFarBeyondTheEntryCountAreRefused) {
  Json j = BaseJson();
  j["model"]["vocab"]["zz"] = 333333333;
  ExpectLoadError(j, "model.vocab[\"zz\"]");

  j = BaseJson();
  j["added_tokens"][0]["id"] = 1 << 29;
  ExpectLoadError(j, "added_tokens[0].id");

  // A bounded gap is still accepted.
  j = BaseJson();
  j["model"]["vocab"]["zz"] = 1000;
  EXPECT_TRUE(Tokenizer::FromJson(j.dump(), "gap.json").ok());
}

// ---------------------------------------------------------------------------------------------
// Generator.

TEST(TokenizerGenTest, GeneratesExactVocabSizeDeterministically) {
  absl::StatusOr<std::string> a = GenerateTokenizerJson(512);
  absl::StatusOr<std::string> b = GenerateTokenizerJson(512);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b);
  const Json j = Json::parse(*a);
  EXPECT_EQ(j["model"]["vocab"].size(), 512u);
  EXPECT_EQ(j["model"]["vocab"]["<0x00>"], 7);
  EXPECT_EQ(j["model"]["vocab"]["<0xFF>"], 262);
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::FromJson(*a, "generated");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 512);
  EXPECT_EQ((*t)->pad_id(), 0);
  EXPECT_EQ((*t)->eos_id(), 1);
  EXPECT_EQ((*t)->bos_id(), 2);
  EXPECT_EQ((*t)->unk_id(), 3);
}

TEST(TokenizerGenTest, CommonWordsAreShortAndEverythingRoundTrips) {
  absl::StatusOr<std::string> json = GenerateTokenizerJson(512);
  ASSERT_TRUE(json.ok());
  auto t = Tokenizer::FromJson(*json, "generated");
  ASSERT_TRUE(t.ok());
  // " the" is one token; " model" at most two.
  EXPECT_EQ(Ids(**t, " the").size(), 1u);
  EXPECT_LE(Ids(**t, " model").size(), 2u);
  const std::string text =
      "<start_of_turn>user\nThe model reads 東京 😀 text.<end_of_turn>\n";
  const std::vector<int32_t> ids = Ids(**t, text, BosPolicy::kOn);
  EXPECT_EQ(ids[0], 2);
  EXPECT_EQ(ids[1], 4);
  absl::StatusOr<std::string> decoded =
      (*t)->Decode(ids, /*skip_special=*/false);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "<bos>" + text);
}

TEST(TokenizerGenTest, PadsLargeVocabulariesWithUnusedTokens) {
  absl::StatusOr<std::string> json = GenerateTokenizerJson(262144);
  ASSERT_TRUE(json.ok());
  auto t = Tokenizer::FromJson(*json, "generated");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 262144);
  EXPECT_TRUE((*t)->TokenToId("<unused0>").has_value());
}

TEST(TokenizerGenTest, RejectsTooSmallVocab) {
  absl::StatusOr<std::string> json = GenerateTokenizerJson(100);
  EXPECT_EQ(json.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(json.status().message()),
              HasSubstr("vocab_size 100"));
}

}  // namespace
}  // namespace sweepd
