// Tokenizer-internal UTF-8 and character-class helpers (common/tokenizer.h's
// implementation only): decoding one code point, finding ill-formed input,
// Unicode White_Space and the `\w` approximation used by single_word added
// tokens, and the whitespace runs that lstrip/rstrip swallow. They mirror what
// the `tokenizers` library does in Rust (char::is_whitespace, regex `\w`).
//
// Stateless free functions on borrowed string_views; results are owned by the
// caller. Thread-safe. (The rest of sweepd validates UTF-8 with
// common/utf8.h; the tokenizer keeps these, the rules it was cross-checked
// with.)
#ifndef SWEEPD_COMMON_TOKENIZER_UNICODE_H_
#define SWEEPD_COMMON_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace sweepd::tokenizer_internal {

// Length of the well-formed UTF-8 sequence starting at s[i] (1..4), writing its
// code point to *cp; 0 if the bytes there are not well-formed UTF-8 (overlong,
// surrogate, truncated, > 10FFFF). Inline: the BPE model calls it per
// character.
inline int DecodeUtf8(absl::string_view s, size_t i, char32_t* cp) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  int len;
  char32_t c;
  char32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, c = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, c = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, c = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (int k = 1; k < len; ++k) {
    const unsigned char b = byte(i + k);
    if ((b & 0xC0) != 0x80) return 0;
    c = (c << 6) | (b & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  *cp = c;
  return len;
}

// Byte offset of the first ill-formed sequence, or npos.
size_t FindInvalidUtf8(absl::string_view s);
bool IsValidUtf8(absl::string_view s);

// The code points of `s`; an ill-formed byte becomes U+FFFD (only reached for
// strings the tokenizer validated itself).
std::vector<char32_t> ToCodePoints(absl::string_view s);
// Appends the UTF-8 encoding of `c` to *out.
void AppendCodePoint(char32_t c, std::string* out);

// Unicode White_Space (what `\s` matches in Rust's regex and
// char::is_whitespace).
bool IsWhitespace(char32_t c);
// `\w` for single_word added tokens: exact for ASCII; outside ASCII every
// non-space character except the common punctuation and symbol blocks counts as
// a word character (an approximation of Unicode
// Alphabetic|Mark|Digit|Connector_Punctuation).
bool IsWordChar(char32_t c);

// First and last code point of `s`; 0 if `s` is empty or ill-formed there.
char32_t FirstCodePoint(absl::string_view s);
char32_t LastCodePoint(absl::string_view s);

// Start of the run of whitespace that ends `s` (s.size() if none).
size_t LeadingOffsetOfTrailingSpace(absl::string_view s);
// Length of the run of whitespace that starts `s`.
size_t LengthOfLeadingSpace(absl::string_view s);

}  // namespace sweepd::tokenizer_internal

#endif  // SWEEPD_COMMON_TOKENIZER_UNICODE_H_
