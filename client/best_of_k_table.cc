// Best-of-k curves per grid point. See best_of_k_table.h.
#include "client/best_of_k_table.h"

#include <cmath>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

struct PromptAccum {
  PromptBestOfK out;
  std::vector<ScoredSample> scored;
};

struct PointAccum {
  std::vector<PromptAccum> prompts;     // first appearance order
  std::map<std::string, size_t> by_id;  // prompt_id -> index in prompts
};

std::string Number(double v) { return absl::StrFormat("%.10g", v); }

}  // namespace

absl::StatusOr<std::vector<PointBestOfK>> ComputeBestOfKTable(
    const std::vector<SampleRecord>& samples, const BootstrapOptions& options,
    const std::function<bool(const SampleRecord&)>& keep) {
  if (options.resamples < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bootstrap resamples must be >= 1, got ", options.resamples));
  }
  if (!(options.level > 0 && options.level < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bootstrap level must be in (0, 1), got ", options.level));
  }
  std::map<GridPoint, PointAccum> points;
  for (const SampleRecord& s : samples) {
    if (keep && !keep(s)) continue;
    PointAccum& point = points[s.point];
    auto [it, inserted] =
        point.by_id.emplace(s.prompt_id, point.prompts.size());
    if (inserted) {
      point.prompts.emplace_back();
      point.prompts.back().out.prompt_id = s.prompt_id;
      point.prompts.back().out.category = s.category;
    }
    PromptAccum& prompt = point.prompts[it->second];
    if (!s.verifier_error.empty()) {
      ++prompt.out.verifier_errors;
      continue;
    }
    if (!s.has_score) {
      ++prompt.out.unscored;
      continue;
    }
    if (!std::isfinite(s.score)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", s.task_key, ", prompt ", s.prompt_id, ", sample ",
          s.sample_index, ": non-finite score ", s.score));
    }
    prompt.scored.push_back({s.score, s.pass});
    if (s.sample_index == 0 && !prompt.out.has_first_sample) {
      prompt.out.has_first_sample = true;
      prompt.out.first_sample_score = s.score;
      prompt.out.first_sample_pass = s.pass;
    }
  }

  std::vector<PointBestOfK> out;
  for (auto& [key, accum] : points) {
    PointBestOfK point;
    point.point = key;
    std::vector<std::vector<ScoredSample>> scored_prompts;
    for (PromptAccum& p : accum.prompts) {
      PromptBestOfK& row = p.out;
      row.samples = static_cast<int64_t>(p.scored.size());
      point.verifier_errors += row.verifier_errors;
      point.unscored += row.unscored;
      if (!p.scored.empty()) {
        double sum = 0;
        for (const ScoredSample& s : p.scored) {
          sum += s.score;
          row.passes += s.pass;
        }
        row.mean_score = sum / p.scored.size();
        ASSIGN_OR_RETURN(row.curve, ComputeBestOfKCurve(p.scored));
        ++point.prompts;
        point.samples += row.samples;
        point.max_samples = std::max(point.max_samples, row.samples);
        scored_prompts.push_back(std::move(p.scored));
      }
      point.per_prompt.push_back(std::move(row));
    }
    if (!scored_prompts.empty()) {
      ASSIGN_OR_RETURN(point.curve, AggregateBestOfK(scored_prompts, options));
    }
    out.push_back(std::move(point));
  }
  return out;
}

void WriteBestOfK(const std::vector<PointBestOfK>& points, bool per_prompt,
                  double level, ResultFormat format, std::ostream& out) {
  const bool table = format == ResultFormat::kTable;
  const bool json = format == ResultFormat::kJson;
  // One output row: point, prompt, k and the three estimators.
  struct Row {
    const PointBestOfK* point;
    std::string prompt;
    std::string category;
    int64_t k = 0;  // 0: no curve
    int64_t prompts = 0;
    int64_t samples = 0;
    const MeanWithInterval* intervals[3] = {nullptr, nullptr, nullptr};
    double values[3] = {0, 0, 0};
    int64_t verifier_errors = 0;
    int64_t unscored = 0;
  };
  std::vector<Row> rows;
  for (const PointBestOfK& p : points) {
    if (p.curve.empty()) {
      rows.push_back(
          {&p, "all", "", 0, 0, 0, {}, {}, p.verifier_errors, p.unscored});
    }
    for (const AggregatePoint& a : p.curve) {
      Row r{&p,
            "all",
            "",
            a.k,
            a.num_prompts,
            0,
            {},
            {},
            p.verifier_errors,
            p.unscored};
      for (const PromptBestOfK& q : p.per_prompt) {
        if (q.samples >= a.k) r.samples += q.samples;
      }
      r.intervals[0] = &a.pass_at_k;
      r.intervals[1] = &a.best_score;
      r.intervals[2] = &a.selected_pass;
      for (int i = 0; i < 3; ++i) r.values[i] = r.intervals[i]->mean;
      rows.push_back(r);
    }
  }
  if (per_prompt) {
    for (const PointBestOfK& p : points) {
      for (const PromptBestOfK& q : p.per_prompt) {
        if (q.samples == 0) {
          rows.push_back({&p,
                          q.prompt_id,
                          q.category,
                          0,
                          1,
                          0,
                          {},
                          {},
                          q.verifier_errors,
                          q.unscored});
        }
        for (int64_t k = 1; k <= q.samples; ++k) {
          Row r{&p, q.prompt_id, q.category,        k,         1, q.samples,
                {}, {},          q.verifier_errors, q.unscored};
          r.values[0] = q.curve.pass_at_k[k - 1];
          r.values[1] = q.curve.best_score[k - 1];
          r.values[2] = q.curve.selected_pass[k - 1];
          rows.push_back(r);
        }
      }
    }
  }

  static constexpr const char* kNames[3] = {"pass_at_k", "best_score",
                                            "selected_pass"};
  if (json) {
    nlohmann::json array = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json o;
      o["stage"] = r.point->point.stage;
      o["interventions"] = r.point->point.interventions;
      o["params"] = r.point->point.params;
      o["prompt"] = r.prompt;
      o["category"] = r.category;
      o["k"] = r.k > 0 ? nlohmann::json(r.k) : nlohmann::json(nullptr);
      o["prompts"] = r.prompts;
      o["samples"] = r.samples;
      for (int i = 0; i < 3; ++i) {
        const std::string name = kNames[i];
        o[name] =
            r.k > 0 ? nlohmann::json(r.values[i]) : nlohmann::json(nullptr);
        o[name + "_lower"] = r.intervals[i] != nullptr
                                 ? nlohmann::json(r.intervals[i]->lower)
                                 : nlohmann::json(nullptr);
        o[name + "_upper"] = r.intervals[i] != nullptr
                                 ? nlohmann::json(r.intervals[i]->upper)
                                 : nlohmann::json(nullptr);
      }
      o["verifier_errors"] = r.verifier_errors;
      o["unscored"] = r.unscored;
      array.push_back(std::move(o));
    }
    out << array.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
    return;
  }

  std::vector<std::string> header = {"stage",   "interventions", "params",
                                     "prompt",  "category",      "k",
                                     "prompts", "samples"};
  for (const char* name : kNames) {
    header.push_back(name);
    if (!table) {
      header.push_back(absl::StrCat(name, "_lower"));
      header.push_back(absl::StrCat(name, "_upper"));
    }
  }
  header.push_back("verifier_errors");
  header.push_back("unscored");
  std::vector<std::vector<std::string>> cells;
  for (const Row& r : rows) {
    std::vector<std::string> c = {r.point->point.stage,
                                  r.point->point.interventions,
                                  r.point->point.params,
                                  r.prompt,
                                  r.category,
                                  r.k > 0 ? absl::StrCat(r.k) : "",
                                  absl::StrCat(r.prompts),
                                  absl::StrCat(r.samples)};
    for (int i = 0; i < 3; ++i) {
      const MeanWithInterval* ci = r.intervals[i];
      if (table) {
        std::string cell =
            r.k > 0 ? absl::StrFormat("%.4f", r.values[i]) : std::string();
        if (ci != nullptr) {
          absl::StrAppend(
              &cell, absl::StrFormat(" [%.4f, %.4f]", ci->lower, ci->upper));
        }
        c.push_back(cell);
      } else {
        c.push_back(r.k > 0 ? Number(r.values[i]) : "");
        c.push_back(ci != nullptr ? Number(ci->lower) : "");
        c.push_back(ci != nullptr ? Number(ci->upper) : "");
      }
    }
    c.push_back(absl::StrCat(r.verifier_errors));
    c.push_back(absl::StrCat(r.unscored));
    cells.push_back(std::move(c));
  }
  if (table) {
    if (rows.empty()) {
      out << "(no samples)\n";
      return;
    }
    out << absl::StrFormat(
        "best-of-k from kept samples; \"all\" = mean over prompts with n >= k "
        "[%g%% bootstrap interval];\nsamples with a verifier error are left "
        "out (verifier_errors), unscored = no verifier verdict\n",
        100 * level);
    out << FormatTable(header, cells);
    return;
  }
  WriteCsv(header, cells, out);
}

}  // namespace sweepd
