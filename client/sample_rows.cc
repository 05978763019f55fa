// Kept samples as tidy rows. See sample_rows.h.
#include "client/sample_rows.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

constexpr size_t kTableTextChars = 60;

std::string Number(double v) { return absl::StrFormat("%.10g", v); }

// The first `n` bytes of `text` without cutting a UTF-8 character, line
// breaks shown as "\n".
std::string Excerpt(const std::string& text, size_t n) {
  std::string cut = text;
  if (cut.size() > n) {
    size_t end = n;
    while (end > 0 && (static_cast<unsigned char>(cut[end]) & 0xC0) == 0x80) {
      --end;
    }
    cut = cut.substr(0, end) + "...";
  }
  return absl::StrReplaceAll(cut, {{"\r", "\\r"}, {"\n", "\\n"}, {"\t", " "}});
}

}  // namespace

std::string GridPoint::Label() const {
  std::vector<std::string> parts;
  if (!stage.empty()) parts.push_back(stage);
  parts.push_back(interventions.empty() ? "baseline" : interventions);
  if (!params.empty()) parts.push_back(params);
  return absl::StrJoin(parts, " · ");
}

GridPoint GridPointOf(const v1::TaskSpec& spec) {
  return GridPoint{spec.stage(), InterventionSummary(spec.interventions()),
                   ParamsSummary(spec)};
}

std::vector<SampleRecord> CollectSamples(
    const std::vector<v1::TaskRecord>& records) {
  std::vector<SampleRecord> out;
  for (const v1::TaskRecord& r : records) {
    if (r.state() != v1::TASK_STATE_DONE) continue;
    if (r.result().samples().empty()) continue;
    SampleRecord base;
    base.task_key = r.task_key();
    base.task_index = r.spec().index();
    base.kind = JobKindLabel(r.spec().kind());
    base.point = GridPointOf(r.spec());
    if (r.spec().has_data() && !r.spec().data().dataset().name().empty()) {
      base.dataset = absl::StrCat(r.spec().data().dataset().name(), "#",
                                  r.spec().data().shard_index());
    }
    base.seed = r.spec().seed();
    for (const v1::Sample& s : r.result().samples()) {
      SampleRecord row = base;
      row.prompt_index = s.prompt_index();
      row.sample_index = s.sample_index();
      row.prompt_id = s.prompt_id();
      row.category = s.category();
      row.text = s.text();
      row.num_tokens = s.num_tokens();
      row.finish_reason = s.finish_reason();
      row.logprob_sum = s.logprob_sum();
      row.has_score = s.has_score();
      row.score = s.score();
      row.pass = s.pass();
      row.verifier_error = s.verifier_error();
      out.push_back(std::move(row));
    }
  }
  return out;
}

void WriteSamples(const std::vector<SampleRecord>& samples, ResultFormat format,
                  std::ostream& out) {
  if (format == ResultFormat::kJson) {
    nlohmann::json array = nlohmann::json::array();
    for (const SampleRecord& s : samples) {
      nlohmann::json o;
      o["task_key"] = s.task_key;
      o["index"] = s.task_index;
      o["stage"] = s.point.stage;
      o["interventions"] = s.point.interventions;
      o["params"] = s.point.params;
      o["seed"] = s.seed;
      o["dataset"] = s.dataset;
      o["prompt_id"] = s.prompt_id;
      o["category"] = s.category;
      o["sample_index"] = s.sample_index;
      o["num_tokens"] = s.num_tokens;
      o["finish_reason"] = s.finish_reason;
      o["logprob_sum"] = std::isfinite(s.logprob_sum)
                             ? nlohmann::json(s.logprob_sum)
                             : nlohmann::json(nullptr);
      o["score"] = s.has_score && std::isfinite(s.score)
                       ? nlohmann::json(s.score)
                       : nlohmann::json(nullptr);
      o["pass"] =
          s.has_score ? nlohmann::json(s.pass) : nlohmann::json(nullptr);
      o["verifier_error"] = s.verifier_error;
      o["text"] = s.text;
      array.push_back(std::move(o));
    }
    out << array.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
    return;
  }
  const bool table = format == ResultFormat::kTable;
  const std::vector<std::string> header = {
      "task_key",    "index",        "stage",      "interventions",
      "params",      "seed",         "dataset",    "prompt_id",
      "category",    "sample_index", "num_tokens", "finish_reason",
      "logprob_sum", "score",        "pass",       "verifier_error",
      "text"};
  std::vector<std::vector<std::string>> cells;
  cells.reserve(samples.size());
  for (const SampleRecord& s : samples) {
    cells.push_back(
        {table ? s.task_key.substr(0, 12) : s.task_key,
         absl::StrCat(s.task_index), s.point.stage, s.point.interventions,
         s.point.params, absl::StrCat(s.seed), s.dataset, s.prompt_id,
         s.category, absl::StrCat(s.sample_index), absl::StrCat(s.num_tokens),
         s.finish_reason,
         table ? absl::StrFormat("%.4g", s.logprob_sum) : Number(s.logprob_sum),
         s.has_score
             ? (table ? absl::StrFormat("%.4g", s.score) : Number(s.score))
             : "",
         s.has_score ? (s.pass ? "true" : "false") : "",
         table ? Excerpt(s.verifier_error, kTableTextChars) : s.verifier_error,
         table ? Excerpt(s.text, kTableTextChars) : s.text});
  }
  if (table) {
    if (samples.empty()) {
      out << "(no samples)\n";
      return;
    }
    out << FormatTable(header, cells);
    return;
  }
  WriteCsv(header, cells, out);
}

}  // namespace sweepd
