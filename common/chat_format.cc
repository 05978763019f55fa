#include "common/chat_format.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sweepd {
namespace {

// Python's str.isspace() code points (bidirectional class WS, B or S, or
// general category Zs).
bool IsPythonSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) ||
         cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Decodes the code point starting at `i` (its byte length into *len); an
// invalid sequence reads as a one-byte non-space.
uint32_t CodePointAt(const std::string& s, size_t i, size_t* len) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80             ? 1
             : (c & 0xE0) == 0xC0 ? 2
             : (c & 0xF0) == 0xE0 ? 3
             : (c & 0xF8) == 0xF0 ? 4
                                  : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return 0xFFFFFFFF;
  }
  uint32_t cp = n == 1 ? c : c & (0x7F >> n);
  for (size_t j = 1; j < n; ++j) {
    const unsigned char cc = static_cast<unsigned char>(s[i + j]);
    if ((cc & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFFFFFF;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  *len = n;
  return cp;
}

}  // namespace

std::string PythonStrip(const std::string& text) {
  // Walk code points once, remembering where the first and last non-space
  // code points are.
  size_t begin = text.size(), end = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t len;
    const uint32_t cp = CodePointAt(text, i, &len);
    if (!IsPythonSpace(cp)) {
      if (begin == text.size()) begin = i;
      end = i + len;
    }
    i += len;
  }
  if (begin >= end) return "";
  return text.substr(begin, end - begin);
}

absl::StatusOr<std::string> FormatGemmaChat(
    absl::Span<const ChatMessage> messages, const ChatOptions& options) {
  if (messages.empty()) {
    return absl::InvalidArgumentError("chat: the conversation has no messages");
  }
  std::string first_user_prefix;
  size_t start = 0;
  if (messages[0].role == "system") {
    first_user_prefix = messages[0].content + "\n\n";
    start = 1;
  }
  std::string out;
  for (size_t i = start; i < messages.size(); ++i) {
    const size_t index0 = i - start;
    const ChatMessage& m = messages[i];
    if ((m.role == "user") != (index0 % 2 == 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat: message ", i, " has role '", m.role,
                       "': Conversation roles must alternate "
                       "user/assistant/user/assistant/..."));
    }
    const std::string& role = m.role == "assistant" ? "model" : m.role;
    absl::StrAppend(&out, "<start_of_turn>", role, "\n",
                    index0 == 0 ? first_user_prefix : "",
                    PythonStrip(m.content), "<end_of_turn>\n");
  }
  if (options.add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

absl::StatusOr<std::vector<int32_t>> EncodeGemmaChat(
    const Tokenizer& tokenizer, absl::Span<const ChatMessage> messages,
    const ChatOptions& options, BosPolicy bos) {
  ASSIGN_OR_RETURN(std::string text, FormatGemmaChat(messages, options));
  auto ids = tokenizer.Encode(text, bos);
  if (!ids.ok())
    return Annotate(ids.status(), "chat: encoding the conversation");
  return ids;
}

}  // namespace sweepd
