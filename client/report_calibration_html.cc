// HTML of the calibration sections of a sweep report
// (client/calibration_report.h): the head importance heatmap, the heal
// residuals per layer (chart and table) and the perplexity of each evaluated
// checkpoint against the base. Chart list: docs/REPORTS.md.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/calibration_report.h"
#include "client/report_page.h"
#include "nlohmann/json.hpp"

namespace sweepd::report_internal {
namespace {

using json = nlohmann::json;

std::string Opt(const std::optional<double>& v, const char* format) {
  return v ? absl::StrFormat(format, *v) : "&mdash;";
}

void AddImportance(const CalibrationReport& r, Page* page) {
  if (r.importance.empty()) return;
  page->Heading("Head importance",
                "Leave-one-out NLL delta (nats per token) of masking each "
                "attention head alone, pooled over shards weighted by tokens; "
                "pruned heads are marked ×.");
  json values = json::array();
  int layers = 0;
  for (const HeadImportanceCell& c : r.importance) {
    values.push_back({{"layer", c.layer},
                      {"head", c.head},
                      {"delta", c.delta},
                      {"pruned", c.pruned ? "×" : ""}});
    layers = std::max(layers, c.layer + 1);
  }
  json spec = BaseSpec("NLL delta per head (layer × head)");
  spec["height"] = std::max(120, std::min(900, 14 * layers));
  spec["data"] = {{"values", values}};
  json x = {{"field", "head"}, {"type", "ordinal"}, {"title", "head"}};
  json y = {{"field", "layer"}, {"type", "ordinal"}, {"title", "layer"}};
  spec["layer"] = json::array(
      {{{"mark", "rect"},
        {"encoding",
         {{"x", x},
          {"y", y},
          {"color",
           {{"field", "delta"},
            {"type", "quantitative"},
            {"title", "Δ NLL"},
            {"scale", {{"scheme", "viridis"}}}}},
          {"tooltip", json::array({{{"field", "layer"}},
                                   {{"field", "head"}},
                                   {{"field", "delta"}, {"format", ".5f"}},
                                   {{"field", "pruned"}}})}}}},
       {{"mark", {{"type", "text"}, {"color", "white"}}},
        {"encoding", {{"x", x}, {"y", y}, {"text", {{"field", "pruned"}}}}}}});
  page->AddChart("chart-head-importance", spec);
}

void AddHeals(const CalibrationReport& r, Page* page) {
  if (r.heals.empty()) return;
  page->Heading("Heal residuals",
                "Relative residual ‖X_kept O′ − Y‖ / ‖Y‖ of each layer's ridge "
                "refit of o_proj, on the calibration Grams and on the held-out "
                "ones.");
  json values = json::array();
  for (const HealRow& h : r.heals) {
    if (h.residual_calibration) {
      values.push_back({{"layer", h.layer},
                        {"split", "calibration"},
                        {"residual", *h.residual_calibration}});
    }
    if (h.residual_heldout) {
      values.push_back({{"layer", h.layer},
                        {"split", "heldout"},
                        {"residual", *h.residual_heldout}});
    }
  }
  if (!values.empty()) {
    json spec = BaseSpec("Relative heal residual per layer");
    spec["data"] = {{"values", values}};
    spec["mark"] = "bar";
    spec["encoding"] = {
        {"x", {{"field", "layer"}, {"type", "ordinal"}, {"title", "layer"}}},
        {"xOffset", {{"field", "split"}}},
        {"y",
         {{"field", "residual"},
          {"type", "quantitative"},
          {"title", "relative residual"}}},
        {"color", {{"field", "split"}, {"type", "nominal"}}},
        {"tooltip", json::array({{{"field", "layer"}},
                                 {{"field", "split"}},
                                 {{"field", "residual"}, {"format", ".4%"}}})}};
    page->AddChart("chart-heal-residuals", spec);
  }
  absl::StrAppend(&page->body,
                  "<table class=\"data\" id=\"table-heal\"><tr><th>layer</th>"
                  "<th>heads removed</th><th>kept heads</th><th>residual "
                  "(calibration)</th><th>residual (held-out)</th><th>λ</th>"
                  "<th>solver</th></tr>\n");
  for (const HealRow& h : r.heals) {
    absl::StrAppend(
        &page->body, "<tr><td>", h.layer, "</td><td>", Escape(h.heads_removed),
        "</td><td>",
        h.kept_heads ? absl::StrCat(*h.kept_heads) : std::string("&mdash;"),
        "</td><td>", Opt(h.residual_calibration, "%.4f"), "</td><td>",
        Opt(h.residual_heldout, "%.4f"), "</td><td>", Opt(h.lambda, "%.4g"),
        "</td><td>", Escape(h.solver), "</td></tr>\n");
  }
  absl::StrAppend(&page->body, "</table>\n");
}

void AddPerplexity(const CalibrationReport& r, Page* page) {
  if (r.perplexity.empty()) return;
  page->Heading("Perplexity of the pruned checkpoints",
                "Perplexity pooled over shards (exp of Σ NLL / Σ tokens) of "
                "every evaluated checkpoint and condition, and its change "
                "against the base model without interventions on the same "
                "dataset.");
  absl::StrAppend(&page->body,
                  "<table class=\"data\" id=\"table-ppl-delta\"><tr>"
                  "<th>dataset</th><th>stage</th><th>model</th>"
                  "<th>condition</th><th>tokens</th><th>ppl</th>"
                  "<th>Δppl</th></tr>\n");
  for (const CheckpointPerplexity& p : r.perplexity) {
    absl::StrAppend(&page->body, "<tr><td>", Escape(p.dataset), "</td><td>",
                    Escape(p.stage.empty() ? "(first)" : p.stage), "</td><td>",
                    Escape(p.model), "</td><td>", Escape(p.condition),
                    "</td><td>", p.tokens, "</td><td>",
                    absl::StrFormat("%.4f", p.ppl), "</td><td>",
                    p.delta_pct ? absl::StrFormat("%+.2f%%", *p.delta_pct)
                                : std::string("&mdash;"),
                    "</td></tr>\n");
  }
  absl::StrAppend(&page->body, "</table>\n");
}

}  // namespace

void AddCalibrationSections(const CalibrationReport& report, Page* page) {
  if (report.empty()) return;
  AddImportance(report, page);
  AddHeals(report, page);
  AddPerplexity(report, page);
}

}  // namespace sweepd::report_internal
