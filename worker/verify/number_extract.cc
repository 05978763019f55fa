#include "worker/verify/number_extract.h"

#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sweepd::verify {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsWordByte(char c) {
  // Letters, digits, '_' and any byte of a multi-byte character (so "é5" is
  // a word, as is "x5").
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         (static_cast<unsigned char>(c) & 0x80) != 0;
}

// Rewrites \frac{a}{b} (and \dfrac, \tfrac) of plain signed integers to "a/b".
std::string RewriteLatexFractions(absl::string_view text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t skip = 0;
    for (absl::string_view cmd : {"\\frac{", "\\dfrac{", "\\tfrac{"}) {
      if (absl::StartsWith(text.substr(i), cmd)) skip = cmd.size();
    }
    if (skip > 0) {
      const size_t a_begin = i + skip;
      const size_t a_end = text.find('}', a_begin);
      if (a_end != absl::string_view::npos && a_end + 1 < text.size() &&
          text[a_end + 1] == '{') {
        const size_t b_begin = a_end + 2;
        const size_t b_end = text.find('}', b_begin);
        auto is_int = [](absl::string_view s) {
          s = absl::StripAsciiWhitespace(s);
          if (!s.empty() && s[0] == '-') s.remove_prefix(1);
          if (s.empty()) return false;
          for (char c : s) {
            if (!IsDigit(c)) return false;
          }
          return true;
        };
        if (b_end != absl::string_view::npos &&
            is_int(text.substr(a_begin, a_end - a_begin)) &&
            is_int(text.substr(b_begin, b_end - b_begin))) {
          absl::StrAppend(
              &out, " ",
              absl::StripAsciiWhitespace(text.substr(a_begin, a_end - a_begin)),
              "/",
              absl::StripAsciiWhitespace(text.substr(b_begin, b_end - b_begin)),
              " ");
          i = b_end + 1;
          continue;
        }
      }
    }
    out.push_back(text[i]);
    ++i;
  }
  return out;
}

size_t ScanDigits(absl::string_view t, size_t i) {
  while (i < t.size() && IsDigit(t[i])) ++i;
  return i;
}

// Parses the unsigned number starting at `i` (a digit, or '.' + digit) into
// *value; returns the index after it.
size_t ParseUnsigned(absl::string_view t, size_t i, double* value) {
  std::string digits;
  size_t j = ScanDigits(t, i);
  absl::StrAppend(&digits, t.substr(i, j - i));
  // Thousands separators: the first group has 1-3 digits, each next group
  // exactly 3 digits not followed by another digit.
  if (j - i >= 1 && j - i <= 3) {
    size_t k = j;
    while (k < t.size() && t[k] == ',' && ScanDigits(t, k + 1) == k + 4) {
      absl::StrAppend(&digits, t.substr(k + 1, 3));
      k += 4;
    }
    j = k;
  }
  bool integer = true;
  if (j + 1 < t.size() && t[j] == '.' && IsDigit(t[j + 1])) {
    const size_t k = ScanDigits(t, j + 1);
    absl::StrAppend(&digits, t.substr(j, k - j));
    j = k;
    integer = false;
  }
  if (j + 1 < t.size() && (t[j] == 'e' || t[j] == 'E')) {
    size_t k = j + 1;
    if (k < t.size() && (t[k] == '+' || t[k] == '-')) ++k;
    if (k < t.size() && IsDigit(t[k])) {
      const size_t end = ScanDigits(t, k);
      absl::StrAppend(&digits, t.substr(j, end - j));
      j = end;
      integer = false;
    }
  }
  *value = std::strtod(digits.c_str(), nullptr);
  if (integer && j + 1 < t.size() && t[j] == '/' && IsDigit(t[j + 1])) {
    const size_t end = ScanDigits(t, j + 1);
    const bool followed_by_dot_digit =
        end + 1 < t.size() && t[end] == '.' && IsDigit(t[end + 1]);
    const double denominator =
        std::strtod(std::string(t.substr(j + 1, end - j - 1)).c_str(), nullptr);
    if (denominator != 0 && !followed_by_dot_digit) {
      *value /= denominator;
      j = end;
    }
  }
  return j;
}

// The last \boxed{...} content, if any.
std::optional<std::string> LastBoxed(absl::string_view text) {
  const size_t at = text.rfind("\\boxed{");
  if (at == absl::string_view::npos) return std::nullopt;
  size_t i = at + 7;
  int depth = 1;
  const size_t begin = i;
  for (; i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) break;
  }
  return std::string(text.substr(begin, i - begin));
}

}  // namespace

std::vector<double> FindNumbers(absl::string_view raw) {
  const std::string rewritten = RewriteLatexFractions(raw);
  absl::string_view t = rewritten;
  std::vector<double> out;
  size_t i = 0;
  while (i < t.size()) {
    const bool starts =
        IsDigit(t[i]) || (t[i] == '.' && i + 1 < t.size() && IsDigit(t[i + 1]));
    const bool after_digit = i > 0 && IsDigit(t[i - 1]);
    if (!starts || after_digit) {
      ++i;
      continue;
    }
    // A minus sign directly before, itself not preceded by a word character.
    bool negative = false;
    if (i >= 1 && t[i - 1] == '-') {
      negative = i < 2 || !IsWordByte(t[i - 2]);
    } else if (i >= 3 && t.substr(i - 3, 3) == "\xE2\x88\x92") {  // U+2212
      negative = i < 4 || !IsWordByte(t[i - 4]);
    }
    double value = 0;
    i = ParseUnsigned(t, i, &value);
    out.push_back(negative ? -value : value);
  }
  return out;
}

std::optional<double> ExtractAnswerNumber(absl::string_view text) {
  if (std::optional<std::string> boxed = LastBoxed(text)) {
    const std::vector<double> numbers = FindNumbers(*boxed);
    if (!numbers.empty()) return numbers.back();
  }
  const size_t marker = text.rfind("####");
  if (marker != absl::string_view::npos) {
    const std::vector<double> numbers = FindNumbers(text.substr(marker + 4));
    if (!numbers.empty()) return numbers.front();
  }
  const std::vector<double> numbers = FindNumbers(text);
  if (numbers.empty()) return std::nullopt;
  return numbers.back();
}

}  // namespace sweepd::verify
