// The calibration sections of a sweep report (client/calibration_report.h)
// from fabricated records of seed 001's pipeline: the heatmap cells pooled
// over shards by tokens with pruned heads marked, the heal table, the
// perplexity of the base, the masked base and a materialized checkpoint
// against the base (worked out by hand), and the rendered page.
#include "client/calibration_report.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "client/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

void Add(v1::TaskRecord* r, const std::string& name, double value,
         const std::map<std::string, std::string>& labels) {
  v1::Metric* m = r->mutable_result()->add_metrics();
  m->set_name(name);
  m->set_value(value);
  for (const auto& [k, v] : labels) (*m->mutable_labels())[k] = v;
}

v1::TaskRecord Done(v1::JobKind kind, const std::string& stage) {
  v1::TaskRecord r;
  r.set_state(v1::TASK_STATE_DONE);
  r.set_sweep_id("sw-calib");
  r.mutable_spec()->set_kind(kind);
  r.mutable_spec()->set_stage(stage);
  return r;
}

v1::TaskRecord Importance(double tokens, const std::vector<double>& layer0) {
  v1::TaskRecord r = Done(v1::JOB_KIND_HEAD_IMPORTANCE, "");
  Add(&r, "head_importance_tokens", tokens, {{"dataset", "calib"}});
  for (size_t h = 0; h < layer0.size(); ++h) {
    Add(&r, "head_nll_delta", layer0[h],
        {{"layer", "0"}, {"head", std::to_string(h)}, {"dataset", "calib"}});
  }
  return r;
}

v1::TaskRecord Eval(const std::string& stage, const std::string& model,
                    const std::string& fingerprint, double nll_sum,
                    double tokens, bool masked = false) {
  v1::TaskRecord r = Done(v1::JOB_KIND_EVAL, stage);
  r.mutable_spec()->mutable_model()->set_path("/models/" + model);
  r.mutable_spec()->mutable_model()->set_fingerprint(fingerprint);
  r.mutable_spec()->mutable_data()->mutable_dataset()->set_name("calib");
  if (masked) {
    auto* m = r.mutable_spec()
                  ->mutable_interventions()
                  ->add_interventions()
                  ->mutable_mask_heads();
    m->set_layer(0);
    m->add_heads(1);
  }
  Add(&r, "nll_sum", nll_sum, {{"category", "all"}});
  Add(&r, "tokens", tokens, {{"category", "all"}});
  return r;
}

std::vector<v1::TaskRecord> Pipeline() {
  std::vector<v1::TaskRecord> tasks = {Importance(100, {0.4, 0.1}),
                                       Importance(300, {0.0, 0.5})};
  v1::TaskRecord heal = Done(v1::JOB_KIND_HEAL, "heal");
  heal.mutable_spec()->mutable_heal()->set_layer(0);
  heal.mutable_spec()->mutable_heal()->add_heads_removed(0);
  Add(&heal, "heal_residual_rel", 0.02,
      {{"layer", "0"}, {"split", "calibration"}});
  Add(&heal, "heal_residual_rel", 0.05, {{"layer", "0"}, {"split", "heldout"}});
  Add(&heal, "heal_lambda", 0.125, {});
  Add(&heal, "heal_kept_heads", 1, {});
  Add(&heal, "heal_solver", 1, {{"solver", "cholesky"}});
  tasks.push_back(heal);
  v1::TaskRecord mat = Done(v1::JOB_KIND_MATERIALIZE, "materialize");
  auto* pruned = mat.mutable_spec()->mutable_materialize()->add_pruned();
  pruned->set_layer(0);
  pruned->add_heads(0);
  Add(&mat, "materialized_model", 1,
      {{"path", "tiny-he1"}, {"fingerprint", "fp-pruned"}});
  tasks.push_back(mat);
  // Base: two shards, ppl = exp(300 / 200) = e^1.5.
  tasks.push_back(Eval("eval-base", "tiny", "fp-base", 100, 100));
  tasks.push_back(Eval("eval-base", "tiny", "fp-base", 200, 100));
  tasks.push_back(Eval("eval-masked", "tiny", "fp-base", 320, 200, true));
  tasks.push_back(Eval("eval-all", "tiny-he1", "fp-pruned", 310, 200));
  return tasks;
}

TEST(CalibrationReportTest, HeatmapHealsAndPerplexityDeltas) {
  const CalibrationReport r = BuildCalibrationReport(Pipeline());
  EXPECT_EQ(r.importance_tasks, 2);
  ASSERT_THAT(r.importance, SizeIs(2));
  EXPECT_DOUBLE_EQ(r.importance[0].delta, (0.4 * 100 + 0.0 * 300) / 400);
  EXPECT_TRUE(r.importance[0].pruned);
  EXPECT_DOUBLE_EQ(r.importance[1].delta, (0.1 * 100 + 0.5 * 300) / 400);
  EXPECT_FALSE(r.importance[1].pruned);
  EXPECT_EQ(r.num_heads, 2);
  ASSERT_THAT(r.heals, SizeIs(1));
  EXPECT_EQ(*r.heals[0].residual_calibration, 0.02);
  EXPECT_EQ(*r.heals[0].residual_heldout, 0.05);
  EXPECT_EQ(*r.heals[0].lambda, 0.125);
  EXPECT_EQ(*r.heals[0].kept_heads, 1);
  EXPECT_EQ(r.heals[0].solver, "cholesky");
  EXPECT_EQ(r.heals[0].heads_removed, "0");
  ASSERT_THAT(r.perplexity, SizeIs(3));
  std::map<std::string, const CheckpointPerplexity*> by_stage;
  for (const auto& p : r.perplexity) by_stage[p.stage] = &p;
  const double base = std::exp(1.5);
  EXPECT_NEAR(by_stage["eval-base"]->ppl, base, 1e-9);
  EXPECT_EQ(by_stage["eval-base"]->condition, "base");
  EXPECT_NEAR(*by_stage["eval-base"]->delta_pct, 0.0, 1e-9);
  EXPECT_NEAR(by_stage["eval-masked"]->ppl, std::exp(1.6), 1e-9);
  EXPECT_THAT(by_stage["eval-masked"]->condition, HasSubstr("mask_heads"));
  EXPECT_NEAR(*by_stage["eval-masked"]->delta_pct,
              100 * (std::exp(1.6) / base - 1), 1e-9);
  EXPECT_EQ(by_stage["eval-all"]->condition, "materialized");
  EXPECT_EQ(by_stage["eval-all"]->model, "tiny-he1");
  EXPECT_NEAR(*by_stage["eval-all"]->delta_pct,
              100 * (std::exp(1.55) / base - 1), 1e-9);
  EXPECT_TRUE(r.notes.empty());
}

TEST(CalibrationReportTest, PageHasTheSectionsAndNoLayerStudy) {
  auto data = BuildReportData(Pipeline(), ReportOptions());
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_FALSE(data->layer_study);
  EXPECT_FALSE(data->calibration.empty());
  const std::vector<std::string> ids = ReportChartIds(*data);
  EXPECT_THAT(ids, ::testing::ElementsAre("chart-head-importance",
                                          "chart-heal-residuals"));
  ReportFragment f = RenderReportFragment(*data);
  EXPECT_THAT(f.body_html, HasSubstr("id=\"table-heal\""));
  EXPECT_THAT(f.body_html, HasSubstr("id=\"table-ppl-delta\""));
  EXPECT_THAT(f.body_html, HasSubstr("tiny-he1"));
  EXPECT_THAT(f.specs_json, HasSubstr("\"pruned\":\"×\""));
  EXPECT_THAT(f.body_html, Not(HasSubstr("chart-ablation")));
}

TEST(CalibrationReportTest, NotACalibrationSweep) {
  std::vector<v1::TaskRecord> evals = {Eval("", "tiny", "fp-base", 100, 100)};
  EXPECT_FALSE(IsCalibrationSweep(evals));
  EXPECT_TRUE(BuildCalibrationReport(evals).empty());
  std::vector<v1::TaskRecord> no_base = Pipeline();
  no_base.erase(no_base.begin() + 4, no_base.begin() + 6);
  EXPECT_THAT(BuildCalibrationReport(no_base).notes,
              ::testing::ElementsAre(HasSubstr("no eval of the base model")));
}

}  // namespace
}  // namespace sweepd
