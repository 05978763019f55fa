// Shared set-up of the planner tests in tests/coordinator/planner_*_test.cc:
// temp directories and files, a safetensors writer, a tiny model directory
// (config.json + one shard), and the PlannerTest fixture (a model root with
// "tiny", 8 layers of 4 heads, and a data root with wiki.txt and probe.jsonl;
// Options() confines the planner to them). Test-only; each test owns the
// directories it makes. Thread-compatible.
#ifndef SWEEPD_TESTS_COORDINATOR_PLANNER_TEST_UTIL_H_
#define SWEEPD_TESTS_COORDINATOR_PLANNER_TEST_UTIL_H_

#include <sys/stat.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "coordinator/planner.h"
#include "gtest/gtest.h"

namespace sweepd::planner_test {

// A fresh directory under ::testing::TempDir().
std::string MakeTempDir();

// Writes `bytes` to `path` (truncating); a gtest failure when it cannot.
void WriteFile(const std::string& path, const std::string& bytes);

// A safetensors file: 8-byte little-endian header length, the JSON header, then
// `data`.
std::string Safetensors(const std::string& header, const std::string& data);

// Makes model directory `dir` with a config.json of `layers` and `heads`
// (inside "text_config" when `nested`) and model.safetensors of `header` and
// `data`.
void WriteModel(const std::string& dir, int layers, int heads,
                bool nested = false, const std::string& header = "{}",
                const std::string& data = "");

class PlannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir();
    model_root_ = root_ + "/models";
    data_root_ = root_ + "/data";
    ASSERT_EQ(mkdir(model_root_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(data_root_.c_str(), 0755), 0);
    WriteModel(model_root_ + "/tiny", /*layers=*/8, /*heads=*/4);
    WriteFile(data_root_ + "/wiki.txt", "the quick brown fox\n");
    WriteFile(data_root_ + "/probe.jsonl", "{\"text\": \"a\"}\n");
  }

  PlannerOptions Options() const {
    PlannerOptions o;
    o.model_root = model_root_;
    o.data_root = data_root_;
    return o;
  }

  v1::SweepSpec EvalSpec() const {
    v1::SweepSpec s;
    s.set_name("eval-sweep");
    s.mutable_model()->set_path("tiny");
    v1::DatasetRef* ds = s.add_datasets();
    ds->set_name("wiki");
    ds->set_path("wiki.txt");
    s.mutable_eval();
    return s;
  }

  v1::SweepSpec SyntheticSpec(int tasks) const {
    v1::SweepSpec s;
    s.set_name("synthetic");
    s.mutable_synthetic()->set_tasks(tasks);
    s.mutable_synthetic()->set_min_ms(1);
    s.mutable_synthetic()->set_max_ms(5);
    return s;
  }

  static v1::LayerAxis* AddLayers(v1::SweepSpec* s, const std::string& op,
                                  const std::string& select) {
    v1::LayerAxis* a = s->mutable_grid()->add_axes()->mutable_layers();
    a->set_op(op);
    a->set_select(select);
    return a;
  }

  static void AddSeeds(v1::SweepSpec* s, std::initializer_list<int64_t> seeds) {
    v1::ValueAxis* a = s->mutable_grid()->add_axes()->mutable_seeds();
    for (int64_t seed : seeds) a->add_values()->set_int_value(seed);
  }

  Plan MustPlan(const v1::SweepSpec& s) const { return MustPlan(s, Options()); }
  Plan MustPlan(const v1::SweepSpec& s, const PlannerOptions& o) const {
    absl::StatusOr<Plan> plan = PlanSweep(s, o);
    EXPECT_TRUE(plan.ok()) << plan.status();
    return plan.ok() ? *std::move(plan) : Plan{};
  }

  std::string root_, model_root_, data_root_;
};

}  // namespace sweepd::planner_test

#endif  // SWEEPD_TESTS_COORDINATOR_PLANNER_TEST_UTIL_H_
