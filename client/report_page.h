// Internal to the report renderer (client/report_html.cc and
// client/report_generation_html.cc): the page being built (HTML body plus the
// Vega-Lite spec of each chart div, in page order) and the small helpers both
// files use. Not a public API; header-only; values used by one thread.
#ifndef SWEEPD_CLIENT_REPORT_PAGE_H_
#define SWEEPD_CLIENT_REPORT_PAGE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/calibration_report.h"
#include "client/generation_report.h"
#include "nlohmann/json.hpp"

namespace sweepd::report_internal {

inline constexpr char kSchema[] =
    "https://vega.github.io/schema/vega-lite/v6.json";
inline constexpr int kWideChart = 860;

inline std::string Escape(const std::string& text) {
  return absl::StrReplaceAll(text, {{"&", "&amp;"},
                                    {"<", "&lt;"},
                                    {">", "&gt;"},
                                    {"\"", "&quot;"},
                                    {"'", "&#39;"}});
}

inline nlohmann::json BaseSpec(const std::string& title) {
  return nlohmann::json{
      {"$schema", kSchema},
      {"title", title},
      {"width", kWideChart},
      {"height", 260},
      {"config", {{"axis", {{"labelFontSize", 11}, {"titleFontSize", 12}}}}}};
}

// A chart spec keyed by its div id.
struct Chart {
  std::string id;
  nlohmann::json spec;
};

struct Page {
  std::vector<Chart> charts;
  std::string body;

  void Heading(const std::string& text, const std::string& blurb) {
    absl::StrAppend(&body, "<h2>", Escape(text), "</h2>\n");
    if (!blurb.empty())
      absl::StrAppend(&body, "<p class=\"blurb\">", Escape(blurb), "</p>\n");
  }
  void AddChart(const std::string& id, nlohmann::json spec) {
    absl::StrAppend(&body, "<div class=\"chart\" id=\"", id, "\"></div>\n");
    charts.push_back({id, std::move(spec)});
  }
  void Note(const std::string& text) {
    absl::StrAppend(&body, "<p class=\"note\">", Escape(text), "</p>\n");
  }
};

// The generation sections (client/report_generation_html.cc): the best-of-k
// charts, seed 003's category tables, the canary table and seed 002's
// eye-test tables. Adds nothing when `report` is empty.
void AddGenerationSections(const GenerationReport& report, Page* page);

// The calibration sections (client/report_calibration_html.cc): the head
// importance heatmap, the heal residuals and the perplexity of the pruned
// checkpoints. Adds nothing when `report` is empty.
void AddCalibrationSections(const CalibrationReport& report, Page* page);

}  // namespace sweepd::report_internal

#endif  // SWEEPD_CLIENT_REPORT_PAGE_H_
