// The hand-written Gemma-shaped tokenizer.json of the tokenizer tests
// (tests/common/tokenizer_test.cc) and the `sweep-worker tokenize` command
// tests (tests/worker/tokenize_command_test.cc). Header-only; test code only.
#ifndef SWEEPD_TESTS_COMMON_TOKENIZER_TEST_JSON_H_
#define SWEEPD_TESTS_COMMON_TOKENIZER_TEST_JSON_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace sweepd::testing {

// Gemma-shaped tokenizer with a tiny vocabulary:
//   0 <pad> 1 <eos> 2 <bos> 3 <unk> 4 <start_of_turn> (special) 5 "\n" (added)
//   6 <0x41> ('A') 7 <0xC3> 8 <0xA9> (the two bytes of 'é')
//   9 ▁ 10 a 11 b 12 c 13 ab 14 bc 15 ▁a 16 ▁ab 17 abc
// merges (rank order): "a b" -> ab, "b c" -> bc, "▁ a" -> ▁a, "▁a b" -> ▁ab,
// "ab c" -> abc
inline nlohmann::json BaseJson() {
  using Json = nlohmann::json;
  Json vocab = Json::object();
  const std::vector<std::string> tokens = {"<pad>",
                                           "<eos>",
                                           "<bos>",
                                           "<unk>",
                                           "<start_of_turn>",
                                           "\n",
                                           "<0x41>",
                                           "<0xC3>",
                                           "<0xA9>",
                                           "\xE2\x96\x81",
                                           "a",
                                           "b",
                                           "c",
                                           "ab",
                                           "bc",
                                           "\xE2\x96\x81"
                                           "a",
                                           "\xE2\x96\x81"
                                           "ab",
                                           "abc"};
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  const auto added = [](int id, const std::string& content, bool special) {
    return Json{
        {"id", id},          {"content", content}, {"single_word", false},
        {"lstrip", false},   {"rstrip", false},    {"normalized", false},
        {"special", special}};
  };
  Json j;
  j["version"] = "1.0";
  j["added_tokens"] =
      Json::array({added(0, "<pad>", true), added(1, "<eos>", true),
                   added(2, "<bos>", true), added(3, "<unk>", true),
                   added(4, "<start_of_turn>", true), added(5, "\n", false)});
  j["normalizer"] = {{"type", "Replace"},
                     {"pattern", {{"String", " "}}},
                     {"content", "\xE2\x96\x81"}};
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"String", " "}}},
                        {"behavior", "MergedWithPrevious"},
                        {"invert", false}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       Json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"special_tokens",
       {{"<bos>", {{"id", "<bos>"}, {"ids", Json::array({2})}}}}}};
  j["decoder"] = {
      {"type", "Sequence"},
      {"decoders", Json::array({{{"type", "Replace"},
                                 {"pattern", {{"String", "\xE2\x96\x81"}}},
                                 {"content", " "}},
                                {{"type", "ByteFallback"}},
                                {{"type", "Fuse"}}})}};
  j["model"] = {
      {"type", "BPE"},
      {"dropout", nullptr},
      {"unk_token", "<unk>"},
      {"fuse_unk", true},
      {"byte_fallback", true},
      {"vocab", vocab},
      {"merges", Json::array({Json::array({"a", "b"}), Json::array({"b", "c"}),
                              Json::array({"\xE2\x96\x81", "a"}),
                              Json::array({"\xE2\x96\x81"
                                           "a",
                                           "b"}),
                              Json::array({"ab", "c"})})}};
  return j;
}

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_COMMON_TOKENIZER_TEST_JSON_H_
