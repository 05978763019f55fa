// Builders of TaskRecords for the report tests: eval and probe tasks in the
// shape docs/METRICS.md defines (StatusIs comes from
// tests/testing/status_matchers.h). Header-only; test code only.
#ifndef SWEEPD_TESTS_CLIENT_REPORT_REPORT_TEST_UTIL_H_
#define SWEEPD_TESTS_CLIENT_REPORT_REPORT_TEST_UTIL_H_

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "sweepd/v1/task.pb.h"
#include "tests/testing/status_matchers.h"

namespace sweepd::testing {

struct Op {
  std::string op;      // "skip", "zero", "reinit", "mask_heads"
  std::string layers;  // selector (for mask_heads: the layer index)
  uint64_t seed = 0;   // reinit seed
};

inline sweepd::v1::Metric MakeMetric(
    const std::string& name, double value,
    std::map<std::string, std::string> labels) {
  sweepd::v1::Metric m;
  m.set_name(name);
  m.set_value(value);
  for (auto& [k, v] : labels) (*m.mutable_labels())[k] = v;
  return m;
}

inline sweepd::v1::TaskRecord MakeTask(sweepd::v1::JobKind kind,
                                       const std::string& key,
                                       const std::string& dataset, int shard,
                                       int num_shards) {
  sweepd::v1::TaskRecord task;
  task.set_task_key(key);
  task.set_sweep_id("sw-test");
  task.set_state(sweepd::v1::TASK_STATE_DONE);
  auto* spec = task.mutable_spec();
  spec->set_kind(kind);
  spec->mutable_model()->set_path("tiny");
  spec->mutable_data()->mutable_dataset()->set_name(dataset);
  spec->mutable_data()->mutable_dataset()->set_path(dataset + ".txt");
  spec->mutable_data()->set_shard_index(shard);
  spec->mutable_data()->set_num_shards(num_shards);
  return task;
}

// An eval task over one shard with the given intervention set, reporting
// category "all".
inline sweepd::v1::TaskRecord MakeEval(const std::string& key,
                                       const std::string& dataset, int shard,
                                       int num_shards,
                                       const std::vector<Op>& ops,
                                       double nll_sum, double tokens) {
  sweepd::v1::TaskRecord task =
      MakeTask(sweepd::v1::JOB_KIND_EVAL, key, dataset, shard, num_shards);
  auto* spec = task.mutable_spec();
  spec->mutable_eval()->mutable_windowing()->set_context_length(512);
  for (const Op& op : ops) {
    auto* iv = spec->mutable_interventions()->add_interventions();
    if (op.op == "skip") iv->mutable_skip()->set_layers(op.layers);
    if (op.op == "zero") iv->mutable_zero()->set_layers(op.layers);
    if (op.op == "reinit") {
      iv->mutable_reinit()->set_layers(op.layers);
      iv->mutable_reinit()->set_seed(op.seed);
    }
    if (op.op == "mask_heads") {
      iv->mutable_mask_heads()->set_layer(std::stoi(op.layers));
      iv->mutable_mask_heads()->add_heads(0);
      iv->mutable_mask_heads()->add_heads(3);
    }
  }
  auto* result = task.mutable_result();
  *result->add_metrics() =
      MakeMetric("nll_sum", nll_sum, {{"category", "all"}});
  *result->add_metrics() = MakeMetric("tokens", tokens, {{"category", "all"}});
  *result->add_metrics() =
      MakeMetric("nll_mean", nll_sum / tokens, {{"category", "all"}});
  *result->add_metrics() =
      MakeMetric("ppl", std::exp(nll_sum / tokens), {{"category", "all"}});
  return task;
}

// Per-(layer, category) probe values of one shard.
struct ProbeValues {
  double bi = 0;
  double resid_norm = 0;
  double lens_rank = 0;
  double lens_top1 = 0;
};

struct ProbeShard {
  std::map<std::pair<int, std::string>, ProbeValues> cells;
  std::map<std::string, double> tokens;    // per category
  std::map<std::string, double> prompts;   // per category
  std::map<std::string, double> decision;  // per category
};

inline sweepd::v1::TaskRecord MakeProbe(const std::string& key,
                                        const std::string& dataset, int shard,
                                        int num_shards,
                                        const ProbeShard& values) {
  sweepd::v1::TaskRecord task =
      MakeTask(sweepd::v1::JOB_KIND_PROBE, key, dataset, shard, num_shards);
  task.mutable_spec()->mutable_probe()->mutable_windowing()->set_context_length(
      512);
  auto* result = task.mutable_result();
  for (const auto& [cell, v] : values.cells) {
    std::map<std::string, std::string> labels = {
        {"layer", std::to_string(cell.first)}, {"category", cell.second}};
    *result->add_metrics() = MakeMetric("bi", v.bi, labels);
    *result->add_metrics() = MakeMetric("resid_norm", v.resid_norm, labels);
    *result->add_metrics() = MakeMetric("lens_rank", v.lens_rank, labels);
    *result->add_metrics() = MakeMetric("lens_top1", v.lens_top1, labels);
  }
  for (const auto& [category, t] : values.tokens) {
    *result->add_metrics() = MakeMetric("tokens", t, {{"category", category}});
  }
  for (const auto& [category, p] : values.prompts) {
    *result->add_metrics() = MakeMetric("prompts", p, {{"category", category}});
  }
  for (const auto& [category, d] : values.decision) {
    *result->add_metrics() =
        MakeMetric("decision_layer", d, {{"category", category}});
  }
  return task;
}

// A generate task of one grid point: `prompts` prompts (ids "<category>-<i>"
// over the given categories in turn) with `n` samples each, temperature
// `temperature` (0 = greedy), zeroing `zero_layer` unless empty, in `stage`.
// Sample s of prompt p scores ((p * 7 + s * 3 + salt) % 10) / 10 and passes
// at 0.8 and above; its text names both.
inline sweepd::v1::TaskRecord MakeGenerate(
    const std::string& key, const std::string& stage,
    const std::string& zero_layer, double temperature, int prompts, int n,
    const std::vector<std::string>& categories, int salt) {
  sweepd::v1::TaskRecord task =
      MakeTask(sweepd::v1::JOB_KIND_GENERATE, key, "qa", 0, 1);
  auto* spec = task.mutable_spec();
  spec->set_stage(stage);
  auto* job = spec->mutable_generate();
  job->set_samples(n);
  job->set_temperature(temperature);
  for (int p = 0; p < prompts; ++p) {
    job->add_prompts(absl::StrCat("Prompt number ", p, " <b>&"));
  }
  if (!zero_layer.empty()) {
    spec->mutable_interventions()
        ->add_interventions()
        ->mutable_zero()
        ->set_layers(zero_layer);
  }
  spec->clear_data();
  for (int p = 0; p < prompts; ++p) {
    for (int s = 0; s < n; ++s) {
      auto* out = task.mutable_result()->add_samples();
      out->set_prompt_index(p);
      out->set_sample_index(s);
      const std::string& category = categories[p % categories.size()];
      out->set_prompt_id(absl::StrCat(category, "-", p));
      out->set_category(category);
      const double score = ((p * 7 + s * 3 + salt) % 10) / 10.0;
      out->set_text(absl::StrCat("Sample ", s, " of prompt ", p,
                                 ": \"quoted\" <tag> score ", score));
      out->set_num_tokens(8);
      out->set_finish_reason("length");
      out->set_has_score(true);
      out->set_score(score);
      out->set_pass(score >= 0.8);
    }
  }
  *task.mutable_result()->add_metrics() =
      MakeMetric("samples", prompts * n, {});
  return task;
}

// A canary task of four cases with the given BOS setting; case i passes when
// (i + bos_on) is even.
inline sweepd::v1::TaskRecord MakeCanary(const std::string& key, bool bos_on) {
  sweepd::v1::TaskRecord task =
      MakeTask(sweepd::v1::JOB_KIND_CANARY, key, "", 0, 1);
  auto* spec = task.mutable_spec();
  spec->clear_data();
  (*spec->mutable_params())["bos"].set_string_value(bos_on ? "on" : "off");
  auto* job = spec->mutable_canary();
  job->set_bos(bos_on ? "on" : "off");
  for (int i = 0; i < 4; ++i) {
    auto* c = job->add_cases();
    c->set_prompt(absl::StrCat("Canary prompt ", i));
    c->add_expect(absl::StrCat("answer", i));
    auto* out = task.mutable_result()->add_samples();
    out->set_prompt_index(i);
    out->set_prompt_id(absl::StrCat("case", i));
    const bool pass = (i + (bos_on ? 1 : 0)) % 2 == 0;
    out->set_text(pass ? absl::StrCat("... answer", i) : "unrelated text");
    out->set_has_score(true);
    out->set_score(pass ? 1 : 0);
    out->set_pass(pass);
  }
  return task;
}

// Seed 003's shape (first stage: N = 10 at temperature 1, stage "ban-both":
// the same with other scores, stage "greedy": one greedy sample), seed 002's
// eye test (baseline, zero:0, zero:3 sampled) and a canary with BOS on and
// off, 12 prompts over three categories.
inline std::vector<sweepd::v1::TaskRecord> GenerationSweep() {
  const std::vector<std::string> categories = {"addition", "multiplication",
                                               "word problem"};
  return {
      MakeGenerate("g-ban1", "", "", 1.0, 12, 10, categories, 0),
      MakeGenerate("g-ban2", "ban-both", "", 1.0, 12, 10, categories, 4),
      MakeGenerate("g-greedy", "greedy", "", 0.0, 12, 1, categories, 1),
      MakeGenerate("g-zero0", "", "0", 1.0, 12, 10, categories, 7),
      MakeGenerate("g-zero3", "", "3", 1.0, 12, 10, categories, 2),
      MakeCanary("c-on", true),
      MakeCanary("c-off", false),
  };
}

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_CLIENT_REPORT_REPORT_TEST_UTIL_H_
