#include "worker/jobs/dataset.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset file ", path, ": cannot be opened (missing or unreadable)"));
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(
        absl::StrCat("dataset file ", path, ": read error"));
  }
  return out.str();
}

std::vector<std::string> SplitLines(const std::string& content) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    std::string line = content.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    start = end + 1;
  }
  return lines;
}

bool Capped(const std::vector<TextRecord>& records, int64_t max_records) {
  return max_records > 0 && static_cast<int64_t>(records.size()) >= max_records;
}

std::vector<TextRecord> ParseLines(const std::string& content,
                                   int64_t max_records) {
  std::vector<TextRecord> records;
  const std::vector<std::string> lines = SplitLines(content);
  for (size_t i = 0; i < lines.size() && !Capped(records, max_records); ++i) {
    if (absl::StripAsciiWhitespace(lines[i]).empty()) continue;
    TextRecord r;
    r.text = lines[i];
    r.line = static_cast<int64_t>(i) + 1;
    records.push_back(std::move(r));
  }
  return records;
}

std::vector<TextRecord> ParseParagraphs(const std::string& content,
                                        int64_t max_records) {
  std::vector<TextRecord> records;
  std::vector<std::string> paragraph;
  int64_t first_line = 0;
  auto flush = [&] {
    if (paragraph.empty()) return;
    TextRecord r;
    r.text = absl::StrJoin(paragraph, "\n");
    r.line = first_line;
    records.push_back(std::move(r));
    paragraph.clear();
  };
  const std::vector<std::string> lines = SplitLines(content);
  for (size_t i = 0; i < lines.size() && !Capped(records, max_records); ++i) {
    if (absl::StripAsciiWhitespace(lines[i]).empty()) {
      flush();
      continue;
    }
    if (paragraph.empty()) first_line = static_cast<int64_t>(i) + 1;
    paragraph.push_back(lines[i]);
  }
  if (!Capped(records, max_records)) flush();
  return records;
}

absl::Status ReadStringField(const nlohmann::json& obj, const char* key,
                             const std::string& where, std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": field \"", key, "\" must be a string, got ", it->dump()));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TextRecord>> ParseJsonl(const std::string& path,
                                                   const std::string& content,
                                                   int64_t max_records) {
  std::vector<TextRecord> records;
  const std::vector<std::string> lines = SplitLines(content);
  for (size_t i = 0; i < lines.size() && !Capped(records, max_records); ++i) {
    if (absl::StripAsciiWhitespace(lines[i]).empty()) continue;
    const std::string where = absl::StrCat(path, ":", i + 1);
    nlohmann::json obj = nlohmann::json::parse(lines[i], nullptr,
                                               /*allow_exceptions=*/false);
    if (obj.is_discarded() || !obj.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": not a JSON object"));
    }
    TextRecord r;
    r.line = static_cast<int64_t>(i) + 1;
    for (auto [key, out] :
         {std::pair<const char*, std::string*>{"text", &r.text},
          {"category", &r.category},
          {"prompt", &r.prompt},
          {"target", &r.target},
          {"reference", &r.reference}}) {
      absl::Status s = ReadStringField(obj, key, where, out);
      if (!s.ok()) return s;
    }
    // generate: `answer` is the reference's other usual name; `id` may be a
    // number.
    if (obj.contains("answer")) {
      if (obj.contains("reference")) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": a record has both \"reference\" and \"answer\""));
      }
      if (obj["answer"].is_number()) {
        r.reference = obj["answer"].dump();
      } else {
        absl::Status s = ReadStringField(obj, "answer", where, &r.reference);
        if (!s.ok()) return s;
      }
    }
    if (obj.contains("id")) {
      if (obj["id"].is_number_integer()) {
        r.id = obj["id"].dump();
      } else {
        absl::Status s = ReadStringField(obj, "id", where, &r.id);
        if (!s.ok()) return s;
      }
    }
    if (!obj.contains("text") && !obj.contains("prompt")) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": a record needs \"text\" or \"prompt\""));
    }
    if (r.category == "all") {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": category \"all\" is reserved for the aggregate"));
    }
    records.push_back(std::move(r));
  }
  return records;
}

}  // namespace

absl::StatusOr<TextSplit> ParseTextSplit(const std::string& name,
                                         const std::string& field) {
  if (name.empty() || name == "paragraph") return TextSplit::kParagraph;
  if (name == "line") return TextSplit::kLine;
  if (name == "file") return TextSplit::kFile;
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": must be \"paragraph\", \"line\" or \"file\", got \"", name,
      "\""));
}

const char* TextSplitName(TextSplit split) {
  switch (split) {
    case TextSplit::kParagraph:
      return "paragraph";
    case TextSplit::kLine:
      return "line";
    case TextSplit::kFile:
      return "file";
  }
  return "?";
}

absl::StatusOr<std::vector<TextRecord>> ReadRecords(const std::string& path,
                                                    int64_t max_records,
                                                    TextSplit split) {
  if (max_records < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset ", path, ": max_records must be >= 0, got ", max_records));
  }
  absl::StatusOr<std::string> content = ReadFile(path);
  if (!content.ok()) return content.status();
  if (absl::EndsWith(path, ".jsonl")) {
    if (split != TextSplit::kParagraph) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dataset ", path, ": split \"", TextSplitName(split),
          "\" applies to plain-text files; a JSONL file is one record per "
          "line"));
    }
    return ParseJsonl(path, *content, max_records);
  }
  switch (split) {
    case TextSplit::kParagraph:
      return ParseParagraphs(*content, max_records);
    case TextSplit::kLine:
      return ParseLines(*content, max_records);
    case TextSplit::kFile: {
      std::vector<TextRecord> records;
      if (!content->empty()) {
        TextRecord r;
        r.text = std::move(*content);
        r.line = 1;
        records.push_back(std::move(r));
      }
      return records;
    }
  }
  return absl::InternalError("unknown TextSplit");
}

std::pair<int64_t, int64_t> ShardRange(int64_t num_records, int shard_index,
                                       int num_shards) {
  return {num_records * shard_index / num_shards,
          num_records * (shard_index + 1) / num_shards};
}

absl::StatusOr<std::vector<TextRecord>> ReadShard(const DatasetShardRef& ref) {
  if (ref.num_shards < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.num_shards must be >= 1, got ", ref.num_shards));
  }
  if (ref.shard_index < 0 || ref.shard_index >= ref.num_shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.shard_index ", ref.shard_index, " outside [0, ",
                     ref.num_shards, ")"));
  }
  absl::StatusOr<std::vector<TextRecord>> all =
      ReadRecords(ref.path, ref.max_records, ref.split);
  if (!all.ok()) return all.status();
  auto [begin, end] = ShardRange(static_cast<int64_t>(all->size()),
                                 ref.shard_index, ref.num_shards);
  return std::vector<TextRecord>(std::make_move_iterator(all->begin() + begin),
                                 std::make_move_iterator(all->begin() + end));
}

}  // namespace sweepd
