// Gemma's chat format: renders a conversation of {role, content} text messages
// with Gemma's turn markers exactly as Gemma 3's `chat_template` (in its
// tokenizer_config.json) does under transformers' jinja2, and encodes it with
// an explicit BOS policy. docs/GENERATION.md, "Chat format", quotes the
// template and lists the rules; tests/common/chat_format_test checks token ids
// against a transformers `apply_chat_template` fixture when present.
//
// Pure functions; thread-safe (Tokenizer is); results owned by the caller.
#ifndef SWEEPD_COMMON_CHAT_FORMAT_H_
#define SWEEPD_COMMON_CHAT_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/tokenizer.h"

namespace sweepd {

struct ChatMessage {
  std::string role;  // "system" (first message only), "user", "assistant"
  std::string content;
};

struct ChatOptions {
  // Ends with "<start_of_turn>model\n" so the model writes the next turn.
  bool add_generation_prompt = true;
};

// The template's output WITHOUT its leading bos_token (that is the BOS
// policy's business, see EncodeGemmaChat). Rules, as the template:
//  - a first message with role "system" is not a turn: its content (untrimmed)
//    + "\n\n" is prepended to the first remaining turn's content; with no
//    remaining turn it is dropped;
//  - the remaining messages must alternate user / non-user starting with user
//    (else INVALID_ARGUMENT "Conversation roles must alternate
//    user/assistant/user/assistant/..." naming the message index);
//  - each is "<start_of_turn>" + role + "\n" + content.strip() +
//    "<end_of_turn>\n", role "assistant" written as "model", any other role
//    verbatim; strip() is Python's (Unicode whitespace, as jinja2's `trim`).
// INVALID_ARGUMENT for an empty conversation.
absl::StatusOr<std::string> FormatGemmaChat(
    absl::Span<const ChatMessage> messages, const ChatOptions& options);

// Encodes FormatGemmaChat's text. BosPolicy::kOn gives exactly the ids of
// transformers' apply_chat_template(..., tokenize=True) (whose template text
// starts with "<bos>" and is tokenized with add_special_tokens=False); kOff
// gives them without the BOS.
absl::StatusOr<std::vector<int32_t>> EncodeGemmaChat(
    const Tokenizer& tokenizer, absl::Span<const ChatMessage> messages,
    const ChatOptions& options, BosPolicy bos);

// Python's str.strip() with no argument: removes leading and trailing code
// points for which str.isspace() is true. Invalid UTF-8 bytes are kept as is.
std::string PythonStrip(const std::string& text);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_CHAT_FORMAT_H_
