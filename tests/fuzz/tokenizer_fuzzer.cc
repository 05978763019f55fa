// libFuzzer target for tokenizer.json loading (common/tokenizer.h
// Tokenizer::FromJson). When the input parses, a short fixed text is encoded
// (with and without BOS) and the ids decoded (with and without special
// tokens). Checks nothing crashes and that every encoded id is below
// vocab_size() and decodes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::unique_ptr<sweepd::Tokenizer>> tok =
      sweepd::Tokenizer::FromJson(json, "fuzz-tokenizer");
  if (!tok.ok()) return 0;
  const sweepd::Tokenizer& t = **tok;
  static constexpr absl::string_view kTexts[] = {
      "Hello, world!\n  The quick brown fox", "<bos>a\xc3\xa9\xe2\x82\xac b",
      ""};
  for (absl::string_view text : kTexts) {
    for (sweepd::BosPolicy bos :
         {sweepd::BosPolicy::kOff, sweepd::BosPolicy::kOn}) {
      absl::StatusOr<std::vector<int32_t>> ids = t.Encode(text, bos);
      if (!ids.ok()) continue;
      for (int32_t id : *ids) {
        if (id < 0 || id >= t.vocab_size()) std::abort();
      }
      for (bool skip : {false, true}) {
        absl::StatusOr<std::string> back = t.Decode(*ids, skip);
        if (!back.ok()) std::abort();
      }
    }
  }
  // Ids outside the vocabulary are refused, not read out of bounds.
  const std::vector<int32_t> bad = {-1, t.vocab_size(), 0};
  if (t.Decode(bad, false).ok()) std::abort();
  return 0;
}
