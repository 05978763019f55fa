// configs/sweeps/retrain_layer.yaml (seed 002's retrained layer) end to end on
// CPU: a tiny model made with `sweep-worker make-model`, a real `sweepd` with
// the shipped datasets as --data-root and an artifact store, one
// `sweep-worker` at TP 1; the example is loaded by the spec loader and
// submitted, and the sweep must end DONE: the base and re-initialised evals,
// the retrain task with its loss rows and retrain/layer0 artifact, and the
// eval-retrained stage derived from it with a replace_layer of that artifact,
// whose NLL is closer to the base than the re-initialised model's.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "client/spec_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/sweep_cluster.h"
#include "tests/testing/sweep_run.h"

namespace sweepd::testing {
namespace {

namespace v1 = ::sweepd::v1;

double Metric(const v1::TaskRecord& t, const std::string& name) {
  for (const v1::Metric& m : t.result().metrics()) {
    if (m.name() == name && (m.labels().count("category") == 0 ||
                             m.labels().at("category") == "all")) {
      return m.value();
    }
  }
  ADD_FAILURE() << "no metric " << name << " in " << t.task_key();
  return NAN;
}

TEST(RetrainExampleTest, SeedTwoRetrainedLayerRunsStageByStage) {
  auto dir = MakeTempDir("sweepd-retrain");
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto started = StartTinyArtifactCluster(*dir, "retrain-worker");
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<SweepCluster> cluster = std::move(started->cluster);

  auto spec =
      LoadSweepSpecFile(SourceDir() + "/configs/sweeps/retrain_layer.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  SweepRun run;
  ASSERT_NO_FATAL_FAILURE(
      RunSweepToEnd(*cluster, *spec, absl::Seconds(800), &run));

  std::map<std::string, std::vector<const v1::TaskRecord*>> by_stage;
  for (const v1::TaskRecord& t : run.tasks)
    by_stage[t.spec().stage()].push_back(&t);
  ASSERT_EQ(by_stage[""].size(), 2u);
  ASSERT_EQ(by_stage["retrain"].size(), 1u);
  ASSERT_EQ(by_stage["eval-retrained"].size(), 1u);
  const v1::TaskRecord& retrain = *by_stage["retrain"][0];
  EXPECT_LT(Metric(retrain, "retrain_final_loss"),
            Metric(retrain, "retrain_initial_loss"));
  ASSERT_EQ(retrain.result().artifacts_size(), 1);
  EXPECT_EQ(retrain.result().artifacts(0).name(), "retrain/layer0");
  const v1::TaskRecord& retrained = *by_stage["eval-retrained"][0];
  ASSERT_EQ(retrained.spec().interventions().interventions_size(), 1);
  EXPECT_EQ(retrained.spec()
                .interventions()
                .interventions(0)
                .replace_layer()
                .weights()
                .path(),
            retrain.result().artifacts(0).path());
  double base = NAN, reinit = NAN;
  for (const v1::TaskRecord* t : by_stage[""]) {
    (t->spec().interventions().interventions_size() == 0 ? base : reinit) =
        Metric(*t, "nll_mean");
  }
  EXPECT_LT(std::abs(Metric(retrained, "nll_mean") - base),
            std::abs(reinit - base));
}

}  // namespace
}  // namespace sweepd::testing
