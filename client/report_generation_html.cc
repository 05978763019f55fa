// HTML of the generation sections of a sweep report
// (client/generation_report.h): best-of-k charts with bootstrap bands, seed
// 003's category tables, the canary table and seed 002's eye-test tables. Chart
// list: docs/REPORTS.md.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/generation_report.h"
#include "client/report_page.h"
#include "nlohmann/json.hpp"

namespace sweepd::report_internal {
namespace {

using json = nlohmann::json;

// Eye-test cells show at most this many bytes of a sample.
constexpr size_t kEyeTestChars = 600;

std::string Fixed(const std::optional<double>& v) {
  return v ? absl::StrFormat("%.3f", *v) : "&mdash;";
}

// The first `n` bytes of `text`, not cutting a UTF-8 character.
std::string Clip(const std::string& text, size_t n) {
  if (text.size() <= n) return text;
  size_t end = n;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) {
    --end;
  }
  return text.substr(0, end) + " …";
}

// One chart per estimator: the mean over prompts vs k, one line per grid
// point, its bootstrap interval as a band.
void AddBestOfKCharts(const GenerationReport& r, Page* page) {
  struct Estimator {
    const char* id;
    const char* title;
    const char* axis;
    const MeanWithInterval AggregatePoint::*field;
  };
  const Estimator estimators[] = {
      {"chart-bok-pass", "Oracle pass@k (unbiased, Chen et al. 2021)", "pass@k",
       &AggregatePoint::pass_at_k},
      {"chart-bok-score", "Expected best verifier score of k samples",
       "expected best score", &AggregatePoint::best_score},
      {"chart-bok-selected",
       "Accuracy of the verifier-selected sample of k samples",
       "selected-sample accuracy", &AggregatePoint::selected_pass},
  };
  int64_t max_k = 1;
  for (const PointBestOfK& p : r.best_of_k) {
    max_k = std::max<int64_t>(max_k, static_cast<int64_t>(p.curve.size()));
  }
  for (const Estimator& e : estimators) {
    json values = json::array();
    for (const PointBestOfK& p : r.best_of_k) {
      for (const AggregatePoint& a : p.curve) {
        const MeanWithInterval& m = a.*(e.field);
        values.push_back({{"point", p.point.Label()},
                          {"k", a.k},
                          {"prompts", a.num_prompts},
                          {"mean", m.mean},
                          {"lower", m.lower},
                          {"upper", m.upper}});
      }
    }
    json x = {{"field", "k"},
              {"type", "quantitative"},
              {"title", "k (samples drawn)"},
              {"scale", {{"domain", json::array({1, max_k})}}},
              {"axis", {{"tickMinStep", 1}, {"format", "d"}}}};
    json color = {
        {"field", "point"}, {"type", "nominal"}, {"title", "grid point"}};
    json band = {{"mark", {{"type", "area"}, {"opacity", 0.18}}},
                 {"encoding",
                  {{"x", x},
                   {"y", {{"field", "lower"}, {"type", "quantitative"}}},
                   {"y2", {{"field", "upper"}}},
                   {"color", color}}}};
    json line = {
        {"mark", {{"type", "line"}, {"point", true}, {"tooltip", true}}},
        {"encoding",
         {{"x", x},
          {"y",
           {{"field", "mean"}, {"type", "quantitative"}, {"title", e.axis}}},
          {"color", color},
          {"tooltip", json::array({{{"field", "point"}},
                                   {{"field", "k"}},
                                   {{"field", "mean"}, {"format", ".4f"}},
                                   {{"field", "lower"}, {"format", ".4f"}},
                                   {{"field", "upper"}, {"format", ".4f"}},
                                   {{"field", "prompts"}}})}}}};
    json spec = BaseSpec(e.title);
    spec["data"] = {{"values", values}};
    spec["layer"] = json::array({band, line});
    page->AddChart(e.id, spec);
  }
}

void AddCategoryTables(const GenerationReport& r, Page* page) {
  for (size_t t = 0; t < r.categories.size(); ++t) {
    const CategoryTable& table = r.categories[t];
    absl::StrAppend(&page->body, "<table class=\"data\" id=\"table-bok-", t,
                    "\"><caption>",
                    table.category == "all" ? "All prompts" : "Category ",
                    table.category == "all" ? "" : Escape(table.category),
                    "</caption>\n<tr><th rowspan=\"2\">selection</th>");
    for (size_t c = 0; c < r.best_of_k.size(); ++c) {
      absl::StrAppend(&page->body, "<th colspan=\"2\">",
                      Escape(r.best_of_k[c].point.Label()), " (",
                      table.prompts[c], " prompts)</th>");
    }
    absl::StrAppend(&page->body, "</tr>\n<tr>");
    for (size_t c = 0; c < r.best_of_k.size(); ++c) {
      absl::StrAppend(&page->body, "<th>mean score</th><th>accuracy</th>");
    }
    absl::StrAppend(&page->body, "</tr>\n");
    for (const SelectionRow& row : table.rows) {
      absl::StrAppend(&page->body, "<tr><td>", Escape(row.selection), "</td>");
      for (size_t c = 0; c < row.score.size(); ++c) {
        absl::StrAppend(&page->body, "<td>", Fixed(row.score[c]), "</td><td>",
                        Fixed(row.accuracy[c]), "</td>");
      }
      absl::StrAppend(&page->body, "</tr>\n");
    }
    absl::StrAppend(&page->body, "</table>\n");
  }
}

void AddCanaryTable(const CanaryTable& table, Page* page) {
  page->Heading("Canary",
                "Greedy continuations of known prompts; a case passes when "
                "every expected substring appears. Columns: grid points "
                "(BOS on / off).");
  absl::StrAppend(&page->body,
                  "<table class=\"data\" id=\"table-canary\"><tr><th>case</th>"
                  "<th>prompt</th><th>expected</th>");
  for (const std::string& c : table.columns) {
    absl::StrAppend(&page->body, "<th>", Escape(c), "</th>");
  }
  absl::StrAppend(&page->body, "</tr>\n");
  for (const CanaryRow& row : table.rows) {
    std::vector<std::string> expect;
    for (const std::string& e : row.expect) expect.push_back(Escape(e));
    absl::StrAppend(&page->body, "<tr><td>", Escape(row.case_id),
                    "</td><td class=\"text\">", Escape(row.prompt),
                    "</td><td class=\"text\">", absl::StrJoin(expect, "<br>"),
                    "</td>");
    for (const std::optional<CanaryCell>& cell : row.cells) {
      if (!cell) {
        absl::StrAppend(&page->body, "<td>&mdash;</td>");
        continue;
      }
      absl::StrAppend(
          &page->body, "<td class=\"text ", cell->pass ? "pass" : "fail",
          "\"><b>", cell->pass ? "pass" : "fail", "</b><div class=\"sample\">",
          Escape(Clip(cell->text, kEyeTestChars)), "</div></td>");
    }
    absl::StrAppend(&page->body, "</tr>\n");
  }
  absl::StrAppend(&page->body, "<tr><th colspan=\"3\">passed</th>");
  for (int64_t passed : table.passed) {
    absl::StrAppend(&page->body, "<th>", passed, "/", table.rows.size(),
                    "</th>");
  }
  absl::StrAppend(&page->body, "</tr>\n</table>\n");
}

void AddEyeTests(const std::vector<EyeTestTable>& tables, Page* page) {
  page->Heading("Eye test: sampled continuations",
                "The first kept sample of each prompt, side by side per "
                "intervention (seed 002's eye test).");
  for (size_t t = 0; t < tables.size(); ++t) {
    const EyeTestTable& table = tables[t];
    absl::StrAppend(&page->body, "<table class=\"data eye\" id=\"table-eye-", t,
                    "\"><caption>", Escape(table.title),
                    "</caption><tr><th>prompt</th>");
    for (const std::string& c : table.columns) {
      absl::StrAppend(&page->body, "<th>", Escape(c), "</th>");
    }
    absl::StrAppend(&page->body, "</tr>\n");
    for (size_t r = 0; r < table.prompts.size(); ++r) {
      absl::StrAppend(&page->body, "<tr><td class=\"text\">",
                      Escape(table.prompts[r]), "</td>");
      for (const std::optional<std::string>& text : table.texts[r]) {
        absl::StrAppend(&page->body, "<td class=\"text\">",
                        text ? Escape(Clip(*text, kEyeTestChars)) : "&mdash;",
                        "</td>");
      }
      absl::StrAppend(&page->body, "</tr>\n");
    }
    absl::StrAppend(&page->body, "</table>\n");
  }
}

}  // namespace

void AddGenerationSections(const GenerationReport& r, Page* page) {
  if (r.empty()) return;
  if (r.generate_tasks > 0) {
    page->Heading(
        "Best of k",
        absl::StrFormat(
            "From the kept samples, for every k up to N: the mean over "
            "prompts (those with at least k scored samples) with its %g%% "
            "bootstrap interval (%d resamples of the prompts). Samples whose "
            "verifier errored are left out. docs/GENERATION.md has the "
            "estimators.",
            100 * r.bootstrap.level, r.bootstrap.resamples));
    if (!r.best_of_k.empty()) {
      AddBestOfKCharts(r, page);
      AddCategoryTables(r, page);
    }
  }
  if (r.canary) AddCanaryTable(*r.canary, page);
  if (!r.eye_tests.empty()) AddEyeTests(r.eye_tests, page);
}

}  // namespace sweepd::report_internal
