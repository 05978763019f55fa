#include "common/tokenizer_gen.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

using OrderedJson = nlohmann::ordered_json;

constexpr char kVocabSlot[] = "@@vocab@@";
constexpr char kSpaceMarker[] = "\xE2\x96\x81";  // U+2581 "▁"

// Training text: plain English prose plus a little code and numbers, so that
// the merges give common words, punctuation and digits short encodings.
constexpr char kCorpus[] = R"(The quick brown fox jumps over the lazy dog.
A model reads a sequence of tokens and predicts the next token at every position.
The coordinator hands out tasks to the workers, and each worker runs the model on its GPU.
When a worker finishes a task, it reports the result, and the result is stored exactly once.
This is the first sentence of the second paragraph, and it is not very long.
We measure the loss of the model on the text, then we change one layer and measure it again.
If the loss goes up, the layer was important; if it stays the same, the layer was not needed.
The attention heads of each layer look at the previous tokens in the sequence.
There are many layers in the model, and every layer has its own weights.
In the morning the weather was cold, but in the afternoon the sun came out and it was warm.
She said that they would come back to the house in the evening, after the meeting.
He asked what time it was, and they told him that it was about seven o'clock.
People often think that numbers like 1, 2, 3, 10, 100 and 2024 are easy to read.
The price was $19.99, the distance was 42 km, and the result was 3.14159.
for (int i = 0; i < n; ++i) { sum += values[i]; }
def main(args): return run(args.input, args.output)
if (status.ok()) { return value; } else { return error; }
print("Hello, world!")
The user can ask a question, and the model will answer with a short response.
What is the meaning of this word? Where does it come from? How is it used?
It is important to test the code before it is used in production.
All of the results are written to a table, one row for each task and each seed.
The first layer and the last layer are different from the layers in the middle.
Some words appear very often: the, of, and, to, in, is, it, that, was, for, on, with, as.
Other words are rare, and they are split into several smaller pieces by the tokenizer.
The tokenizer turns text into numbers, and the decoder turns the numbers back into text.
Thank you for reading this text; it was written to train a very small vocabulary.
)";

std::vector<std::string> SplitChars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    const size_t len = b < 0x80         ? 1
                       : (b >> 5) == 6  ? 2
                       : (b >> 4) == 14 ? 3
                                        : 4;
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> GenerateTokenizerJson(int vocab_size) {
  if (vocab_size < kMinGeneratedVocabSize ||
      vocab_size > kMaxGeneratedVocabSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GenerateTokenizerJson: vocab_size ", vocab_size, " is outside [",
        kMinGeneratedVocabSize, ", ", kMaxGeneratedVocabSize, "]"));
  }

  std::vector<std::string> vocab;          // id -> token
  std::map<std::string, int> token_to_id;  // for membership
  OrderedJson added_tokens = OrderedJson::array();
  const auto add_token = [&](const std::string& token) {
    token_to_id.emplace(token, static_cast<int>(vocab.size()));
    vocab.push_back(token);
    return static_cast<int>(vocab.size()) - 1;
  };
  const auto add_added_token = [&](const std::string& token, bool special) {
    const int id = add_token(token);
    added_tokens.push_back(OrderedJson{{"id", id},
                                       {"content", token},
                                       {"single_word", false},
                                       {"lstrip", false},
                                       {"rstrip", false},
                                       {"normalized", false},
                                       {"special", special}});
  };
  for (const char* special : {"<pad>", "<eos>", "<bos>", "<unk>",
                              "<start_of_turn>", "<end_of_turn>"}) {
    add_added_token(special, true);
  }
  add_added_token("\n", false);
  for (int b = 0; b < 256; ++b) add_token(absl::StrFormat("<0x%02X>", b));

  // Words of the normalized corpus: each line is a section (the "\n" added
  // token splits the input), and inside a section a word is "▁" plus the
  // letters up to the next "▁".
  std::map<std::string, int> word_counts;
  std::map<std::string, int> char_counts;
  for (absl::string_view line :
       absl::StrSplit(kCorpus, '\n', absl::SkipEmpty())) {
    const std::string normalized =
        absl::StrReplaceAll(line, {{" ", kSpaceMarker}});
    std::string word;
    for (const std::string& ch : SplitChars(normalized)) {
      ++char_counts[ch];
      if (ch == kSpaceMarker && !word.empty()) {
        ++word_counts[word];
        word.clear();
      }
      word += ch;
    }
    if (!word.empty()) ++word_counts[word];
  }

  // Single characters, most frequent first (ties by text), while they fit.
  std::vector<std::pair<int, std::string>> chars;
  for (const auto& [ch, count] : char_counts) chars.push_back({-count, ch});
  std::sort(chars.begin(), chars.end());
  for (const auto& [neg_count, ch] : chars) {
    if (static_cast<int>(vocab.size()) >= vocab_size) break;
    add_token(ch);
  }

  // BPE training: repeatedly merge the most frequent adjacent pair (ties:
  // smallest pair).
  std::vector<std::pair<std::vector<std::string>, int>> words;
  for (const auto& [word, count] : word_counts)
    words.push_back({SplitChars(word), count});
  OrderedJson merges = OrderedJson::array();
  while (static_cast<int>(vocab.size()) < vocab_size) {
    std::map<std::pair<std::string, std::string>, int> pair_counts;
    for (const auto& [symbols, count] : words) {
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        if (token_to_id.count(symbols[i]) == 0 ||
            token_to_id.count(symbols[i + 1]) == 0) {
          continue;
        }
        pair_counts[{symbols[i], symbols[i + 1]}] += count;
      }
    }
    const std::pair<std::string, std::string>* best = nullptr;
    int best_count = 1;  // a pair must occur at least twice to be worth a merge
    for (const auto& [pair, count] : pair_counts) {
      if (count > best_count) {
        best = &pair;
        best_count = count;
      }
    }
    if (best == nullptr) break;
    const std::string left = best->first;
    const std::string right = best->second;
    const std::string merged = left + right;
    merges.push_back(OrderedJson::array({left, right}));
    if (token_to_id.count(merged) == 0) add_token(merged);
    for (auto& [symbols, count] : words) {
      std::vector<std::string> next;
      next.reserve(symbols.size());
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == left &&
            symbols[i + 1] == right) {
          next.push_back(merged);
          ++i;
        } else {
          next.push_back(symbols[i]);
        }
      }
      symbols = std::move(next);
    }
  }

  // Pad with unused tokens (Gemma reserves thousands of <unusedN> the same
  // way).
  for (int n = 0; static_cast<int>(vocab.size()) < vocab_size; ++n) {
    add_added_token(absl::StrCat("<unused", n, ">"), false);
  }

  OrderedJson root = OrderedJson::object();
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = std::move(added_tokens);
  root["normalizer"] = {{"type", "Replace"},
                        {"pattern", {{"String", " "}}},
                        {"content", kSpaceMarker}};
  root["pre_tokenizer"] = {{"type", "Split"},
                           {"pattern", {{"String", " "}}},
                           {"behavior", "MergedWithPrevious"},
                           {"invert", false}};
  const OrderedJson bos_item = {
      {"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}};
  root["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       OrderedJson::array(
           {bos_item, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", OrderedJson::array(
                   {bos_item,
                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                    {{"SpecialToken", {{"id", "<bos>"}, {"type_id", 1}}}},
                    {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
      {"special_tokens",
       {{"<bos>", {{"id", "<bos>"}, {"ids", {2}}, {"tokens", {"<bos>"}}}}}}};
  root["decoder"] = {
      {"type", "Sequence"},
      {"decoders", OrderedJson::array({{{"type", "Replace"},
                                        {"pattern", {{"String", kSpaceMarker}}},
                                        {"content", " "}},
                                       {{"type", "ByteFallback"}},
                                       {{"type", "Fuse"}}})}};
  root["model"] = {{"type", "BPE"},
                   {"dropout", nullptr},
                   {"unk_token", "<unk>"},
                   {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr},
                   {"fuse_unk", true},
                   {"byte_fallback", true},
                   {"ignore_merges", false},
                   {"vocab", kVocabSlot},
                   {"merges", std::move(merges)}};
  // The vocabulary is written by hand, in id order: ordered_json's object
  // inserts are linear, which would make a 262144-entry vocabulary quadratic.
  std::string vocab_text = "{";
  for (size_t id = 0; id < vocab.size(); ++id) {
    absl::StrAppend(&vocab_text, id == 0 ? "\n" : ",\n", "      ",
                    OrderedJson(vocab[id]).dump(), ": ", id);
  }
  vocab_text += "\n    }";
  std::string text = root.dump(2);
  const std::string slot = OrderedJson(kVocabSlot).dump();
  const size_t at = text.find(slot);
  text.replace(at, slot.size(), vocab_text);
  return text;
}

}  // namespace sweepd
