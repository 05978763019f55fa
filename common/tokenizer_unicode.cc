// Implementation of common/tokenizer_unicode.h.
#include "common/tokenizer_unicode.h"

namespace sweepd::tokenizer_internal {

size_t FindInvalidUtf8(absl::string_view s) {
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const int len = DecodeUtf8(s, i, &cp);
    if (len == 0) return i;
    i += len;
  }
  return absl::string_view::npos;
}

bool IsValidUtf8(absl::string_view s) {
  return FindInvalidUtf8(s) == absl::string_view::npos;
}

std::vector<char32_t> ToCodePoints(absl::string_view s) {
  std::vector<char32_t> out;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const int len = DecodeUtf8(s, i, &cp);
    if (len == 0) {  // only reached for our own (validated) strings
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void AppendCodePoint(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

bool IsWhitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool IsWordChar(char32_t c) {
  if (c < 0x80) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
           (c >= 'a' && c <= 'z') || c == '_';
  }
  if (IsWhitespace(c)) return false;
  if (c >= 0xA1 && c <= 0xBF && c != 0xAA && c != 0xB5 && c != 0xBA)
    return false;
  if (c == 0xD7 || c == 0xF7) return false;
  if (c >= 0x2010 && c <= 0x2BFF)
    return false;  // punctuation, arrows, math, symbols
  if (c >= 0x3001 && c <= 0x3003) return false;  // CJK punctuation
  if (c >= 0x3008 && c <= 0x3011) return false;
  if (c >= 0xFF01 && c <= 0xFF0F) return false;    // full-width punctuation
  if (c >= 0x1F000 && c <= 0x1FAFF) return false;  // emoji and pictographs
  return true;
}

char32_t LastCodePoint(absl::string_view s) {
  if (s.empty()) return 0;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  char32_t cp = 0;
  return DecodeUtf8(s, i, &cp) ? cp : 0;
}

char32_t FirstCodePoint(absl::string_view s) {
  char32_t cp = 0;
  return (!s.empty() && DecodeUtf8(s, 0, &cp)) ? cp : 0;
}

size_t LeadingOffsetOfTrailingSpace(absl::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t i = end - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    char32_t cp;
    if (!DecodeUtf8(s, i, &cp) || !IsWhitespace(cp)) break;
    end = i;
  }
  return end;
}

size_t LengthOfLeadingSpace(absl::string_view s) {
  size_t i = 0;
  char32_t cp;
  while (i < s.size()) {
    const int len = DecodeUtf8(s, i, &cp);
    if (len == 0 || !IsWhitespace(cp)) break;
    i += len;
  }
  return i;
}

}  // namespace sweepd::tokenizer_internal
