// HTML rendering of the report model: one offline document with inlined Vega
// builds, inlined data, one Vega-Lite spec per chart and server-side tables.
// Chart list: docs/REPORTS.md.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "client/report.h"
#include "client/report_assets.h"
#include "client/report_page.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

using json = nlohmann::json;

constexpr const char* kAssetOrder[] = {"vega.min.js", "vega-lite.min.js",
                                       "vega-embed.min.js"};
using report_internal::BaseSpec;
using report_internal::Chart;
using report_internal::Escape;
using report_internal::kSchema;
using report_internal::Page;

// JSON that may sit inside <script>: '<', '>' and '&' only occur inside
// strings, where the \u escapes mean the same characters, so "</script>" or
// "<!--" can never appear.
std::string ScriptJson(const json& value) {
  const std::string text =
      value.dump(-1, ' ', false, json::error_handler_t::replace);
  return absl::StrReplaceAll(
      text, {{"<", "\\u003c"}, {">", "\\u003e"}, {"&", "\\u0026"}});
}

json Optional(const std::optional<double>& value) {
  if (!value || !std::isfinite(*value)) return nullptr;
  return *value;
}

std::string Num(const std::optional<double>& value,
                const char* format = "%.4g") {
  if (!value) return "&mdash;";
  return Escape(absl::StrFormat(format, *value));
}

std::string Pct(const std::optional<double>& value) {
  return Num(value, "%+.1f%%");
}

std::string Layers(const std::vector<int>& layers) {
  return layers.empty() ? "&mdash;" : absl::StrJoin(layers, ", ");
}

std::string VerdictClass(Verdict verdict) {
  switch (verdict) {
    case Verdict::kNeverTouch:
      return "never";
    case Verdict::kDrop:
      return "drop";
    case Verdict::kKeep:
      return "keep";
    case Verdict::kUnscored:
      break;
  }
  return "unscored";
}

std::string VerdictText(const LayerProfile& p) {
  if (p.verdict == Verdict::kDrop)
    return absl::StrCat("drop (k &ge; ", p.first_drop_k, ")");
  return VerdictName(p.verdict);
}

// Layer as a continuous axis (line charts): integer ticks only.
json LayerQuantAxis() {
  return json{{"field", "layer"},
              {"type", "quantitative"},
              {"title", "layer"},
              {"axis", {{"tickMinStep", 1}, {"format", "d"}}}};
}

json LayerAxis() {
  return json{{"field", "layer"}, {"type", "ordinal"}, {"title", "layer"}};
}

bool HasEval(const ReportData& data, EvalKind kind) {
  return std::any_of(data.evals.begin(), data.evals.end(),
                     [kind](const EvalRow& row) { return row.kind == kind; });
}

bool AnyProbe(const ReportData& data, std::optional<double> ProbeCell::*field) {
  return std::any_of(
      data.probe.begin(), data.probe.end(),
      [field](const ProbeCell& c) { return (c.*field).has_value(); });
}

bool AnyScore(const ReportData& data) {
  return std::any_of(data.layers.begin(), data.layers.end(),
                     [](const LayerProfile& p) { return p.score.has_value(); });
}

void AddSummary(const ReportData& data, Page* page) {
  const ReportOptions& o = data.options;
  absl::StrAppend(&page->body, "<table class=\"summary\">\n");
  auto row = [&](const std::string& key, const std::string& value_html) {
    absl::StrAppend(&page->body, "<tr><th>", Escape(key), "</th><td>",
                    value_html, "</td></tr>\n");
  };
  row("sweep", Escape(data.sweep_id.empty() ? "(none)" : data.sweep_id));
  if (data.layer_study) row("layers", absl::StrCat(data.num_layers));
  row("tasks", absl::StrCat(data.tasks_total, " total, ", data.tasks_done,
                            " done, ", data.tasks_failed, " failed, ",
                            data.tasks_unfinished, " unfinished"));
  const GenerationReport& g = data.generation;
  if (!g.empty()) {
    row("generation", Escape(absl::StrCat(
                          g.generate_tasks, " generate and ", g.canary_tasks,
                          " canary tasks done, ", g.samples, " kept samples")));
  }
  if (!data.categories.empty()) {
    row("probe categories", Escape(absl::StrJoin(data.categories, ", ")));
  }
  if (!data.layer_study) {
    absl::StrAppend(&page->body, "</table>\n");
    return;
  }
  row("safety score",
      Escape(absl::StrFormat(
          "%g·n(BI) + %g·n(BI var) + %g·n(max(Δppl, 0)); never touch: "
          "Δppl > %g%%; drop plans k = %s",
          o.weights.bi, o.weights.bi_var, o.weights.delta, o.critical_delta_pct,
          absl::StrJoin(o.drop_k, ", "))));
  row("ablation data",
      Escape(o.ablation_dataset.empty() ? "every evaluation dataset, pooled"
                                        : o.ablation_dataset));
  absl::StrAppend(&page->body, "</table>\n");
  if (!data.notes.empty()) {
    absl::StrAppend(&page->body, "<ul class=\"notes\">\n");
    for (const std::string& note : data.notes) {
      absl::StrAppend(&page->body, "<li>", Escape(note), "</li>\n");
    }
    absl::StrAppend(&page->body, "</ul>\n");
  }
  std::vector<const EvalRow*> baselines;
  for (const EvalRow& row : data.evals) {
    if (row.kind == EvalKind::kBaseline) baselines.push_back(&row);
  }
  if (!baselines.empty()) {
    absl::StrAppend(
        &page->body,
        "<table class=\"data\" id=\"table-baselines\"><caption>Baseline "
        "perplexity "
        "(no intervention)</caption><tr><th>dataset</th><th>ppl</th><th>scored "
        "tokens</th><th>shards</th></tr>\n");
    for (const EvalRow* row : baselines) {
      absl::StrAppend(&page->body, "<tr><td>", Escape(row->dataset),
                      "</td><td>", Num(row->ppl), "</td><td>",
                      Num(row->tokens, "%.0f"), "</td><td>", row->shards,
                      "</td></tr>\n");
    }
    absl::StrAppend(&page->body, "</table>\n");
  }
}

void AddPhaseA(const ReportData& data, Page* page) {
  page->Heading("Phase A: Block influence and activations",
                "BI_L = mean over tokens of 1 − cos(resid_in[L], "
                "resid_out[L]): how much layer "
                "L changes the residual stream. Low BI = the layer barely "
                "changes anything.");
  if (!AnyProbe(data, &ProbeCell::bi)) {
    page->Note(
        "No probe results in this sweep: block influence and residual norms "
        "omitted.");
    return;
  }
  json bi_values = json::array();
  for (const LayerProfile& p : data.layers) {
    if (!p.bi) continue;
    bi_values.push_back({{"layer", p.layer},
                         {"bi", *p.bi},
                         {"bi_var", Optional(p.bi_var)},
                         {"type", p.type.empty() ? "unknown" : p.type}});
  }
  json bi = BaseSpec("Block influence (BI) per layer");
  bi["data"] = {{"values", bi_values}};
  bi["mark"] = {{"type", "bar"}, {"tooltip", true}};
  bi["encoding"] = {
      {"x", LayerAxis()},
      {"y", {{"field", "bi"}, {"type", "quantitative"}, {"title", "BI"}}},
      {"color",
       {{"field", "type"}, {"type", "nominal"}, {"title", "attention"}}}};
  page->AddChart("chart-bi", bi);

  if (!data.categories.empty()) {
    json cells = json::array();
    for (const ProbeCell& c : data.probe) {
      if (c.category == "all" || !c.bi) continue;
      cells.push_back(
          {{"layer", c.layer}, {"category", c.category}, {"bi", *c.bi}});
    }
    json heat = BaseSpec("BI by category (layer × category)");
    heat["height"] = {{"step", 22}};
    heat["data"] = {{"values", cells}};
    heat["mark"] = {{"type", "rect"}, {"tooltip", true}};
    heat["encoding"] = {
        {"x", LayerAxis()},
        {"y",
         {{"field", "category"}, {"type", "nominal"}, {"title", "category"}}},
        {"color",
         {{"field", "bi"},
          {"type", "quantitative"},
          {"title", "BI"},
          {"scale", {{"type", "sqrt"}, {"scheme", "viridis"}}}}}};
    page->AddChart("chart-bi-heatmap", heat);
  } else {
    page->Note("No per-category probe rows: the BI heatmap is omitted.");
  }

  if (AnyProbe(data, &ProbeCell::resid_norm)) {
    json norms = json::array();
    for (const ProbeCell& c : data.probe) {
      if (!c.resid_norm) continue;
      norms.push_back({{"layer", c.layer},
                       {"category", c.category},
                       {"resid_norm", *c.resid_norm}});
    }
    json spec = BaseSpec("Residual stream norm evolution");
    spec["data"] = {{"values", norms}};
    spec["mark"] = {{"type", "line"}, {"point", true}, {"tooltip", true}};
    spec["encoding"] = {
        {"x", LayerQuantAxis()},
        {"y",
         {{"field", "resid_norm"},
          {"type", "quantitative"},
          {"title", "mean ‖resid_out‖₂"}}},
        {"color", {{"field", "category"}, {"type", "nominal"}}}};
    page->AddChart("chart-resid-norm", spec);
  } else {
    page->Note("No residual norm rows: the norm evolution chart is omitted.");
  }
}

void AddPhaseB(const ReportData& data, Page* page) {
  page->Heading(
      "Phase B: Logit lens — where decisions happen",
      "Each layer's residual goes through the final norm and the LM head (with "
      "the "
      "softcap); rank = number of vocabulary entries scoring above the target "
      "token (0 = top-1).");
  if (AnyProbe(data, &ProbeCell::lens_rank)) {
    json ranks = json::array();
    for (const ProbeCell& c : data.probe) {
      if (!c.lens_rank) continue;
      ranks.push_back({{"layer", c.layer},
                       {"category", c.category},
                       {"rank", *c.lens_rank},
                       {"rank_plus_1", *c.lens_rank + 1.0}});
    }
    json spec = BaseSpec("Average target token rank per layer (log scale)");
    spec["data"] = {{"values", ranks}};
    spec["mark"] = {{"type", "line"}, {"point", true}, {"tooltip", true}};
    spec["encoding"] = {
        {"x", LayerQuantAxis()},
        {"y",
         {{"field", "rank_plus_1"},
          {"type", "quantitative"},
          {"title", "mean target rank + 1 (1 = top-1)"},
          {"scale", {{"type", "log"}}}}},
        {"color", {{"field", "category"}, {"type", "nominal"}}}};
    page->AddChart("chart-lens-rank", spec);
  } else {
    page->Note("No logit-lens rows: the target rank chart is omitted.");
  }
  if (!data.decision_layers.empty()) {
    json values = json::array();
    for (const DecisionLayer& d : data.decision_layers) {
      values.push_back({{"category", d.category},
                        {"decision_layer", d.mean_layer},
                        {"prompts", d.prompts}});
    }
    json spec = BaseSpec("Decision layer per category");
    spec["width"] = {{"step", 60}};
    spec["description"] =
        "Mean layer at which the ground-truth token first enters top-1 (never "
        "= num_layers).";
    spec["data"] = {{"values", values}};
    spec["mark"] = {{"type", "bar"}, {"tooltip", true}};
    spec["encoding"] = {
        {"x",
         {{"field", "category"}, {"type", "nominal"}, {"title", "category"}}},
        {"y",
         {{"field", "decision_layer"},
          {"type", "quantitative"},
          {"title", "mean first top-1 layer"},
          {"scale",
           {{"domain", json::array({0, std::max(1, data.num_layers)})}}}}},
        {"color",
         {{"field", "category"}, {"type", "nominal"}, {"legend", nullptr}}}};
    page->AddChart("chart-decision", spec);
  } else {
    page->Note("No decision_layer rows: the decision layer chart is omitted.");
  }
}

void AddPhaseC(const ReportData& data, Page* page) {
  page->Heading("Phase C: Ablation — what breaks when a layer is removed",
                "ppl_delta_pct = 100·(ppl / ppl_baseline − 1) on the same "
                "dataset. Negative = "
                "removing the layer improves perplexity.");
  if (HasEval(data, EvalKind::kSingleSkip)) {
    json values = json::array();
    for (const EvalRow& row : data.evals) {
      if (row.kind != EvalKind::kSingleSkip || !row.ppl_delta_pct) continue;
      values.push_back(
          {{"layer", row.layers[0]},
           {"dataset", row.dataset},
           {"ppl", row.ppl},
           {"delta_pct", *row.ppl_delta_pct},
           {"critical", *row.ppl_delta_pct > data.options.critical_delta_pct}});
    }
    json bars = {
        {"mark", {{"type", "bar"}, {"tooltip", true}}},
        {"encoding",
         {{"x", LayerAxis()},
          {"xOffset", {{"field", "dataset"}}},
          {"y",
           {{"field", "delta_pct"},
            {"type", "quantitative"},
            {"title", "Δ perplexity, % (symlog scale)"},
            {"scale", {{"type", "symlog"}, {"constant", 10}}}}},
          {"color", {{"field", "dataset"}, {"type", "nominal"}}},
          {"stroke",
           {{"condition", {{"test", "datum.critical"}, {"value", "#c0392b"}}},
            {"value", nullptr}}},
          {"strokeWidth", {{"value", 2}}}}}};
    json threshold = {
        {"data",
         {{"values",
           json::array({{{"threshold", data.options.critical_delta_pct}}})}}},
        {"mark",
         {{"type", "rule"},
          {"color", "#c0392b"},
          {"strokeDash", json::array({4, 4})}}},
        {"encoding",
         {{"y", {{"field", "threshold"}, {"type", "quantitative"}}}}}};
    json spec = BaseSpec(
        "Single-layer ablation: perplexity delta (% change from baseline)");
    spec["data"] = {{"values", values}};
    spec["layer"] = json::array({bars, threshold});
    page->AddChart("chart-ablation", spec);
  } else {
    page->Note(
        "No single-layer ablations in this sweep: the ablation chart is "
        "omitted.");
  }
  if (HasEval(data, EvalKind::kBlockDrop)) {
    std::set<std::string> planned;
    for (const DropPlan& plan : data.drop_plans) {
      if (plan.feasible) planned.insert(absl::StrJoin(plan.layers, ","));
    }
    json values = json::array();
    for (const EvalRow& row : data.evals) {
      if (row.kind != EvalKind::kBlockDrop || !row.ppl_delta_pct) continue;
      values.push_back({{"k", static_cast<int>(row.layers.size())},
                        {"dataset", row.dataset},
                        {"layers", absl::StrJoin(row.layers, ",")},
                        {"ppl", row.ppl},
                        {"delta_pct", *row.ppl_delta_pct},
                        {"set", planned.count(absl::StrJoin(row.layers, ","))
                                    ? "drop plan"
                                    : "other set"}});
    }
    json line = {{"mark", {{"type", "line"}, {"opacity", 0.6}}},
                 {"encoding",
                  {{"x", {{"field", "k"}, {"type", "quantitative"}}},
                   {"y",
                    {{"field", "delta_pct"},
                     {"type", "quantitative"},
                     {"aggregate", "min"}}},
                   {"color", {{"field", "dataset"}, {"type", "nominal"}}}}}};
    json points = {
        {"mark",
         {{"type", "point"},
          {"filled", true},
          {"size", 80},
          {"tooltip", true}}},
        {"encoding",
         {{"x",
           {{"field", "k"},
            {"type", "quantitative"},
            {"title", "number of layers dropped"},
            {"axis", {{"tickMinStep", 1}}}}},
          {"y",
           {{"field", "delta_pct"},
            {"type", "quantitative"},
            {"title", "Δ perplexity, %"}}},
          {"color", {{"field", "dataset"}, {"type", "nominal"}}},
          {"shape",
           {{"field", "set"}, {"type", "nominal"}, {"title", "layer set"}}},
          {"tooltip",
           json::array({{{"field", "layers"}},
                        {{"field", "dataset"}},
                        {{"field", "ppl"}, {"format", ".4g"}},
                        {{"field", "delta_pct"}, {"format", "+.1f"}}})}}}};
    json spec = BaseSpec(
        "Block ablation: perplexity delta vs number of layers dropped");
    spec["data"] = {{"values", values}};
    spec["layer"] = json::array({line, points});
    page->AddChart("chart-block-drop", spec);
  } else {
    page->Note(
        "No multi-layer drops in this sweep: the block ablation chart is "
        "omitted.");
  }
}

void AddSynthesis(const ReportData& data, Page* page) {
  page->Heading("Synthesis: evidence-based drop plan",
                "Combined safety score (lower = safer to drop) from BI, "
                "cross-category BI "
                "variance and the single-layer ablation delta; docs/REPORTS.md "
                "has the formula.");
  if (AnyScore(data)) {
    json values = json::array();
    for (const LayerProfile& p : data.layers) {
      if (!p.score) continue;
      values.push_back({{"layer", p.layer},
                        {"score", *p.score},
                        {"verdict", VerdictName(p.verdict)},
                        {"delta_pct", Optional(p.ablation_delta_pct)},
                        {"bi", Optional(p.bi)}});
    }
    json spec =
        BaseSpec("Combined safety score per layer (lower = safer to drop)");
    spec["data"] = {{"values", values}};
    spec["mark"] = {{"type", "bar"}, {"tooltip", true}};
    spec["encoding"] = {
        {"x", LayerAxis()},
        {"y",
         {{"field", "score"},
          {"type", "quantitative"},
          {"title", "safety score"}}},
        {"color",
         {{"field", "verdict"},
          {"type", "nominal"},
          {"scale",
           {{"domain", json::array({"drop", "keep", "never touch"})},
            {"range", json::array({"#2e86de", "#95a5a6", "#c0392b"})}}}}}};
    page->AddChart("chart-safety", spec);
  } else {
    page->Note(
        "No layer has the inputs of the safety score: the score chart and drop "
        "plan are "
        "omitted.");
  }

  if (!data.drop_plans.empty() && AnyScore(data)) {
    absl::StrAppend(
        &page->body,
        "<table class=\"data\" id=\"table-drop-plan\"><caption>Drop plans (k "
        "lowest-score layers that are not never-touch)</caption><tr><th>k</th>"
        "<th>layers</th><th>measured ppl</th><th>measured Δppl</th></tr>\n");
    for (const DropPlan& plan : data.drop_plans) {
      absl::StrAppend(
          &page->body, "<tr><td>", plan.k, "</td><td>",
          plan.feasible ? Layers(plan.layers) : "not enough candidate layers",
          "</td><td>", Num(plan.measured_ppl), "</td><td>",
          plan.feasible && !plan.measured_delta_pct
              ? "not measured"
              : Pct(plan.measured_delta_pct),
          "</td></tr>\n");
    }
    absl::StrAppend(&page->body, "</table>\n");
    std::vector<int> never;
    for (const LayerProfile& p : data.layers) {
      if (p.critical) never.push_back(p.layer);
    }
    absl::StrAppend(&page->body, "<p>Never touch (single-layer Δppl &gt; ",
                    Num(data.options.critical_delta_pct, "%g"),
                    "%): ", never.empty() ? "none" : Layers(never), "</p>\n");
  }

  if (data.num_layers == 0) return;
  const bool has_types =
      std::any_of(data.layers.begin(), data.layers.end(),
                  [](const LayerProfile& p) { return !p.type.empty(); });
  absl::StrAppend(
      &page->body, "<table class=\"data\" id=\"table-profile\"><caption>All ",
      data.num_layers, " layers — complete profile</caption><tr><th>layer</th>",
      has_types ? "<th>type</th>" : "",
      "<th>BI</th><th>BI var</th><th>resid norm</th><th>lens rank</th>"
      "<th>ablation "
      "ppl</th><th>Δppl</th><th>score</th><th>verdict</th></tr>\n");
  for (const LayerProfile& p : data.layers) {
    absl::StrAppend(
        &page->body, "<tr class=\"", VerdictClass(p.verdict), "\"><td>",
        p.layer, "</td>",
        has_types ? absl::StrCat("<td>", Escape(p.type), "</td>") : "", "<td>",
        Num(p.bi), "</td><td>", Num(p.bi_var), "</td><td>", Num(p.resid_norm),
        "</td><td>", Num(p.lens_rank, "%.1f"), "</td><td>", Num(p.ablation_ppl),
        "</td><td>", Pct(p.ablation_delta_pct), "</td><td>",
        Num(p.score, "%.3f"), "</td><td>", VerdictText(p), "</td></tr>\n");
  }
  absl::StrAppend(&page->body, "</table>\n");
}

void AddDegeneration(const ReportData& data, Page* page) {
  if (!HasEval(data, EvalKind::kZero) && !HasEval(data, EvalKind::kReinit))
    return;
  page->Heading("Layer degeneration",
                "Perplexity with single layers zeroed (all weights but the "
                "post-attention / "
                "post-feedforward norms) or re-initialised, next to the "
                "unmodified model.");
  std::map<std::string, const EvalRow*> baseline_of;
  for (const EvalRow& row : data.evals) {
    if (row.kind == EvalKind::kBaseline) baseline_of[row.dataset] = &row;
  }
  json values = json::array();
  std::set<std::pair<std::string, std::string>> baseline_added;
  absl::StrAppend(
      &page->body,
      "<table class=\"data\" id=\"table-degeneration\"><caption>Perplexity per "
      "(layer, operation, "
      "dataset)</caption><tr><th>layers</th><th>operation</th>"
      "<th>dataset</th><th>ppl</th><th>baseline ppl</th><th>Δppl</th></tr>\n");
  for (const EvalRow& row : data.evals) {
    if (row.kind != EvalKind::kZero && row.kind != EvalKind::kReinit) continue;
    const std::string layers = absl::StrJoin(row.layers, ",");
    auto base = baseline_of.find(row.dataset);
    std::optional<double> base_ppl;
    if (base != baseline_of.end()) base_ppl = base->second->ppl;
    absl::StrAppend(&page->body, "<tr><td>", Escape(layers), "</td><td>",
                    Escape(row.intervention), "</td><td>", Escape(row.dataset),
                    "</td><td>", Num(row.ppl), "</td><td>", Num(base_ppl),
                    "</td><td>", Pct(row.ppl_delta_pct), "</td></tr>\n");
    const std::string layer_label = absl::StrCat("layer ", layers);
    values.push_back({{"layer", layer_label},
                      {"layer_index", row.layers.empty() ? 0 : row.layers[0]},
                      {"op", EvalKindName(row.kind)},
                      {"detail", row.intervention},
                      {"dataset", row.dataset},
                      {"ppl", row.ppl}});
    if (base_ppl && baseline_added.insert({layer_label, row.dataset}).second) {
      values.push_back({{"layer", layer_label},
                        {"layer_index", row.layers.empty() ? 0 : row.layers[0]},
                        {"op", "none"},
                        {"detail", "no modification"},
                        {"dataset", row.dataset},
                        {"ppl", *base_ppl}});
    }
  }
  absl::StrAppend(&page->body, "</table>\n");
  json spec = {
      {"$schema", kSchema},
      {"title", "Perplexity per layer, operation and dataset (log scale)"},
      {"data", {{"values", values}}},
      {"mark", {{"type", "bar"}, {"tooltip", true}}},
      {"width", {{"step", 26}}},
      {"height", 220},
      {"encoding",
       {{"column",
         {{"field", "layer"},
          {"type", "nominal"},
          {"title", nullptr},
          {"sort", {{"field", "layer_index"}, {"op", "min"}}}}},
        {"row",
         {{"field", "dataset"}, {"type", "nominal"}, {"title", nullptr}}},
        {"x",
         {{"field", "op"},
          {"type", "nominal"},
          {"title", nullptr},
          {"sort", json::array({"none", "zero", "reinit"})}}},
        {"y",
         {{"field", "ppl"},
          {"type", "quantitative"},
          {"title", "perplexity"},
          {"scale", {{"type", "log"}}}}},
        // Perplexity is >= 1: bars grow from 1, which a log scale can show (0
        // it cannot).
        {"y2", {{"datum", 1}}},
        {"color",
         {{"field", "op"},
          {"type", "nominal"},
          {"scale",
           {{"domain", json::array({"none", "zero", "reinit"})},
            {"range", json::array({"#7f8c8d", "#e67e22", "#8e44ad"})}}}}}}}};
  page->AddChart("chart-degeneration", spec);
}

void AddOther(const ReportData& data, Page* page) {
  if (!HasEval(data, EvalKind::kOther)) return;
  page->Heading("Other interventions", "");
  absl::StrAppend(
      &page->body,
      "<table class=\"data\" id=\"table-other\"><tr><th>intervention</th>"
      "<th>dataset</th><th>ppl</th><th>Δppl</th></tr>\n");
  for (const EvalRow& row : data.evals) {
    if (row.kind != EvalKind::kOther) continue;
    absl::StrAppend(&page->body, "<tr><td>", Escape(row.intervention),
                    "</td><td>", Escape(row.dataset), "</td><td>", Num(row.ppl),
                    "</td><td>", Pct(row.ppl_delta_pct), "</td></tr>\n");
  }
  absl::StrAppend(&page->body, "</table>\n");
}

Page BuildPage(const ReportData& data) {
  Page page;
  AddSummary(data, &page);
  if (data.layer_study) {
    AddPhaseA(data, &page);
    AddPhaseB(data, &page);
    AddPhaseC(data, &page);
    AddSynthesis(data, &page);
    AddDegeneration(data, &page);
  }
  report_internal::AddCalibrationSections(data.calibration, &page);
  report_internal::AddGenerationSections(data.generation, &page);
  AddOther(data, &page);
  return page;
}

constexpr char kStyle[] = R"css(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1000px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
.blurb { color: #555; } .note { color: #8a6d3b; background: #fcf8e3; padding: 6px 10px; }
.chart { margin: 16px 0; min-height: 40px; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
table.summary td { text-align: left; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
#table-degeneration td:nth-child(-n+3), #table-other td:nth-child(-n+2) { text-align: left; }
tr.never td { background: #fdecea; } tr.drop td { background: #eaf2fd; }
ul.notes { color: #555; }
td.text { text-align: left; vertical-align: top; white-space: pre-wrap; max-width: 320px;
          font-size: 12px; }
td.pass b { color: #1e8449; } td.fail b { color: #c0392b; }
div.sample { color: #444; margin-top: 2px; }
)css";

// Draws every chart and records the outcome for tests and for the reader.
constexpr char kDriver[] = R"js(
(function () {
  var status = window.__sweepdCharts = {};
  window.__sweepdErrors = [];
  window.addEventListener('error', function (e) { window.__sweepdErrors.push(String(e.message)); });
  var specs = JSON.parse(document.getElementById('sweepd-specs').textContent);
  var runs = Object.keys(specs).map(function (id) {
    status[id] = 'pending';
    return vegaEmbed('#' + id, specs[id], {actions: false, renderer: 'svg'})
      .then(function () { status[id] = 'ok'; })
      .catch(function (e) {
        status[id] = 'error: ' + (e && e.message ? e.message : String(e));
        var div = document.getElementById(id);
        div.textContent = 'Chart failed: ' + status[id];
        console.error('sweepd chart ' + id + ' failed:', e);
      });
  });
  window.__sweepdChartsDone = Promise.all(runs).then(function () { return status; });
})();
)js";

}  // namespace

std::vector<std::string> ReportChartIds(const ReportData& data) {
  std::vector<std::string> ids;
  for (const Chart& chart : BuildPage(data).charts) ids.push_back(chart.id);
  return ids;
}

ReportFragment RenderReportFragment(const ReportData& data) {
  Page page = BuildPage(data);
  json specs = json::object();
  for (const Chart& chart : page.charts) specs[chart.id] = chart.spec;
  return ReportFragment{std::move(page.body), specs.dump()};
}

absl::StatusOr<std::string> RenderReportHtml(const ReportData& data) {
  std::map<std::string, absl::string_view> assets;
  for (const EmbeddedFile& file : ReportAssets()) {
    assets[std::string(file.name)] =
        absl::string_view(file.contents.data(), file.contents.size());
  }
  std::string scripts;
  for (const char* name : kAssetOrder) {
    auto it = assets.find(name);
    if (it == assets.end() || it->second.empty()) {
      return absl::InternalError(absl::StrCat(
          "report asset ", name, " is not embedded in this binary"));
    }
    if (absl::StrContains(absl::AsciiStrToLower(std::string(it->second)),
                          "</script")) {
      return absl::InternalError(
          absl::StrCat("report asset ", name,
                       " contains \"</script\" and cannot be inlined"));
    }
    absl::StrAppend(&scripts, "<script>/* ", name, " */\n", it->second,
                    "\n</script>\n");
  }
  Page page = BuildPage(data);
  json specs = json::object();
  for (const Chart& chart : page.charts) specs[chart.id] = chart.spec;

  std::string html;
  html.reserve(scripts.size() + page.body.size() + 65536);
  absl::StrAppend(
      &html,
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
      "<meta name=\"generator\" content=\"sweepctl report\">\n<title>",
      Escape(data.title), "</title>\n<style>", kStyle, "</style>\n", scripts,
      "</head>\n<body>\n<h1>", Escape(data.title), "</h1>\n", page.body);
  absl::StrAppend(&html,
                  "<script type=\"application/json\" id=\"sweepd-specs\">",
                  ScriptJson(specs), "</script>\n<script>", kDriver,
                  "</script>\n</body>\n</html>\n");
  return html;
}

}  // namespace sweepd
