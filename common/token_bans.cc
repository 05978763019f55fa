#include "common/token_bans.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sweepd {
namespace {

// True if `s` is well-formed UTF-8 (no overlongs, surrogates or values past
// U+10FFFF).
bool IsValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (int j = 1; j < len; ++j) {
      const unsigned char cc = static_cast<unsigned char>(s[i + j]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

}  // namespace

absl::StatusOr<TokenFamily> FindTokenFamily(
    const Tokenizer& tokenizer, absl::Span<const std::string> needles,
    const TokenFamilyOptions& options) {
  if (needles.empty()) {
    return absl::InvalidArgumentError("token family: no strings to ban");
  }
  for (size_t i = 0; i < needles.size(); ++i) {
    if (needles[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token family: string ", i, " is empty (it would ban every token)"));
    }
    if (!IsValidUtf8(needles[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("token family: string ", i, " is not valid UTF-8"));
    }
  }
  TokenFamily family;
  family.needle_counts.assign(needles.size(), 0);
  const int32_t vocab = tokenizer.vocab_size();
  for (int32_t id = 0; id < vocab; ++id) {
    if (!tokenizer.IdToToken(id).has_value()) continue;
    if (!options.include_special && tokenizer.IsSpecial(id)) continue;
    const int32_t one[] = {id};
    auto text = tokenizer.Decode(one, /*skip_special=*/false);
    if (!text.ok()) {
      return Annotate(text.status(), absl::StrCat("token family: id ", id));
    }
    bool hit = false;
    for (size_t i = 0; i < needles.size(); ++i) {
      if (absl::StrContains(*text, needles[i])) {
        ++family.needle_counts[i];
        hit = true;
      }
    }
    if (hit) family.ids.push_back(id);
  }
  return family;
}

}  // namespace sweepd
