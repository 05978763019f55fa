#include "worker/jobs/windowing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sweepd {
namespace {

absl::StatusOr<int64_t> ReadInt(const nlohmann::json& obj, const char* key,
                                const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    try {
      size_t used = 0;
      const std::string s = it->get<std::string>();
      int64_t v = std::stoll(s, &used);
      if (used == s.size()) return v;
    } catch (const std::exception&) {
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ".", key, ": expected an integer, got ", it->dump()));
}

}  // namespace

absl::StatusOr<Windowing> ParseWindowing(const nlohmann::json& windowing,
                                         const std::string& field) {
  Windowing w;
  if (windowing.is_null()) return w;
  if (!windowing.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected an object, got ", windowing.dump()));
  }
  absl::StatusOr<int64_t> ctx = ReadInt(windowing, "context_length", field);
  if (!ctx.ok()) return ctx.status();
  absl::StatusOr<int64_t> stride = ReadInt(windowing, "stride", field);
  if (!stride.ok()) return stride.status();
  const int64_t context_length = *ctx == 0 ? kDefaultContextLength : *ctx;
  const int64_t stride_value = *stride == 0 ? context_length : *stride;
  if (context_length < 2 || context_length > (int64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".context_length must be in [2, 1048576], got ",
                     context_length));
  }
  if (stride_value < 1 || stride_value > context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".stride must be in [1, context_length=", context_length,
        "], got ", stride_value));
  }
  w.context_length = static_cast<int>(context_length);
  w.stride = static_cast<int>(stride_value);
  std::string bos = "on";
  auto it = windowing.find("bos");
  if (it != windowing.end() && !it->is_null()) {
    if (!it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".bos: expected \"on\" or \"off\", got ", it->dump()));
    }
    if (!it->get<std::string>().empty()) bos = it->get<std::string>();
  }
  if (bos == "on") {
    w.bos = BosPolicy::kOn;
  } else if (bos == "off") {
    w.bos = BosPolicy::kOff;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".bos must be \"on\" or \"off\", got \"", bos, "\""));
  }
  return w;
}

std::vector<TokenWindow> MakeWindows(int64_t num_tokens,
                                     const Windowing& windowing) {
  std::vector<TokenWindow> windows;
  if (num_tokens < 2) return windows;
  int64_t begin = 0;
  int64_t scored_until = 1;  // token 0 is never scored
  while (true) {
    TokenWindow w;
    w.begin = begin;
    w.end = std::min<int64_t>(begin + windowing.context_length, num_tokens);
    w.score_begin = scored_until;
    windows.push_back(w);
    scored_until = w.end;
    if (w.end == num_tokens) break;
    begin = std::min<int64_t>(begin + windowing.stride, w.end - 1);
  }
  return windows;
}

}  // namespace sweepd
