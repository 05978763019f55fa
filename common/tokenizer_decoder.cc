// Implementation of common/tokenizer_decoder.h.
#include "common/tokenizer_decoder.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "common/tokenizer_unicode.h"

namespace sweepd::tokenizer_internal {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string> ApplyByteFallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  out.reserve(tokens.size());
  std::string bytes;
  const auto flush = [&] {
    if (bytes.empty()) return;
    if (IsValidUtf8(bytes)) {
      out.push_back(bytes);
    } else {
      std::string replacement;
      for (size_t i = 0; i < bytes.size(); ++i)
        AppendCodePoint(0xFFFD, &replacement);
      out.push_back(std::move(replacement));
    }
    bytes.clear();
  };
  for (std::string& t : tokens) {
    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
        HexValue(t[3]) >= 0 && HexValue(t[4]) >= 0) {
      bytes.push_back(static_cast<char>(HexValue(t[3]) * 16 + HexValue(t[4])));
      continue;
    }
    flush();
    out.push_back(std::move(t));
  }
  flush();
  return out;
}

}  // namespace

absl::Status DecoderChain::Parse(const Json& node, const std::string& field,
                                 const FieldReader& reader) {
  present_ = true;
  return ParseStep(node, field, reader);
}

absl::Status DecoderChain::ParseStep(const Json& node, const std::string& field,
                                     const FieldReader& reader) {
  if (!node.is_object())
    return reader.Error(field, "expected an object or null");
  ASSIGN_OR_RETURN(std::string type, reader.String(node, field, "type"));
  Step step;
  if (type == "Sequence") {
    return reader.ForEach(node, field, "decoders",
                          [&](const Json& item, const std::string& path) {
                            return ParseStep(item, path, reader);
                          });
  } else if (type == "Replace") {
    step.kind = Step::Kind::kReplace;
    ASSIGN_OR_RETURN(step.pattern, reader.StringPattern(node, field));
    ASSIGN_OR_RETURN(step.content, reader.String(node, field, "content"));
  } else if (type == "ByteFallback") {
    step.kind = Step::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Step::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Step::Kind::kStrip;
    ASSIGN_OR_RETURN(std::string content,
                     reader.String(node, field, "content"));
    const std::vector<char32_t> cps = ToCodePoints(content);
    if (cps.size() != 1)
      return reader.Error(field + ".content", "expected one character");
    step.strip_char = cps[0];
    ASSIGN_OR_RETURN(int64_t start, reader.Int(node, field, "start"));
    ASSIGN_OR_RETURN(int64_t stop, reader.Int(node, field, "stop"));
    if (start < 0 || stop < 0)
      return reader.Error(field, "start and stop must be >= 0");
    step.strip_start = static_cast<int>(start);
    step.strip_stop = static_cast<int>(stop);
  } else {
    return reader.Error(
        field + ".type",
        absl::StrCat("decoder type '", type,
                     "' is not supported (supported: Replace, ByteFallback, "
                     "Fuse, Strip, Sequence)"));
  }
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

std::string DecoderChain::StripToken(const std::string& token,
                                     const Step& step) {
  const std::vector<char32_t> cps = ToCodePoints(token);
  size_t begin = 0;
  while (begin < cps.size() && begin < static_cast<size_t>(step.strip_start) &&
         cps[begin] == step.strip_char) {
    ++begin;
  }
  size_t end = cps.size();
  size_t removed = 0;
  while (end > begin && removed < static_cast<size_t>(step.strip_stop) &&
         cps[end - 1] == step.strip_char) {
    --end;
    ++removed;
  }
  std::string out;
  for (size_t i = begin; i < end; ++i) AppendCodePoint(cps[i], &out);
  return out;
}

std::string DecoderChain::Decode(std::vector<std::string> tokens) const {
  if (!present_) return absl::StrJoin(tokens, " ");
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kReplace:
        for (std::string& t : tokens)
          t = absl::StrReplaceAll(t, {{step.pattern, step.content}});
        break;
      case Step::Kind::kByteFallback:
        tokens = ApplyByteFallback(std::move(tokens));
        break;
      case Step::Kind::kFuse: {
        std::string fused = absl::StrJoin(tokens, "");
        tokens.clear();
        tokens.push_back(std::move(fused));
        break;
      }
      case Step::Kind::kStrip:
        for (std::string& t : tokens) t = StripToken(t, step);
        break;
    }
  }
  return absl::StrJoin(tokens, "");
}

}  // namespace sweepd::tokenizer_internal
