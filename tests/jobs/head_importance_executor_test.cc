// The head_importance executor on a random tiny Gemma 4 model: the batched
// algorithm (one unablated pass with prefix state, then per layer the heads
// as rows of one forward starting at that layer) gives the same deltas as the
// naive one-full-forward-per-head reference within fp32 tolerance, at TP 1
// and 2 and for several heads_per_forward, with fewer layer-forwards; errors
// name the field.
#include "worker/jobs/head_importance_executor.h"

#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/jobs/executor_test_env.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

class FakeContext : public TaskContext {
 public:
  bool cancelled() const override { return false; }
  bool task_cancelled(size_t) const override { return false; }
  void SetProgress(double f) override { progress.push_back(f); }
  std::vector<double> progress;
};

class HeadImportanceExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = jobs_test::MakeTinyModelDir("head_importance_test");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(std::move(*dir));
    std::ofstream(*dir_ + "/calib.txt")
        << "The river rises in a high valley where snow lingers.\n"
           "It runs through farmland past villages.\n\n"
           "Lighthouses were built along the northern coast.\n\n"
           "Each tower had its own pattern of flashes, two long and one "
           "short, so captains knew where they were.\n";
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(RemoveAll(*dir_).ok());
    delete dir_;
  }

  static TaskInput Task(std::vector<int> layers, int heads_per_forward) {
    HeadImportanceJobSpec job;
    job.dataset_name = "calib";
    job.data.path = *dir_ + "/calib.txt";
    job.windowing.context_length = 16;
    job.windowing.stride = 16;
    job.layers = std::move(layers);
    job.heads_per_forward = heads_per_forward;
    TaskInput t;
    t.task_key = "t";
    t.kind = kHeadImportanceKind;
    t.job = std::move(job);
    return t;
  }

  // Runs one task; name + labels -> value.
  static std::map<std::string, double> Run(int tp, bool naive,
                                           const TaskInput& task,
                                           int64_t max_batch_tokens = 64) {
    auto backend = jobs_test::MakeBackend(*dir_ + "/model", tp);
    EXPECT_TRUE(backend.ok()) << backend.status();
    HeadImportanceExecutorOptions o;
    o.naive = naive;
    o.max_batch_tokens = max_batch_tokens;
    auto ex = HeadImportanceExecutor::Create(*backend, o);
    EXPECT_TRUE(ex.ok());
    FakeContext ctx;
    std::map<std::string, double> rows;
    (*ex)->RunGroup({task}, ctx, [&](size_t, absl::StatusOr<TaskOutput> out) {
      ASSERT_TRUE(out.ok()) << out.status();
      for (const MetricRow& r : out->metrics) {
        std::string key = r.name;
        for (const auto& [k, v] : r.labels) {
          absl::StrAppend(&key, "|", k, "=", v);
        }
        rows[key] = r.value;
      }
    });
    EXPECT_FALSE(ctx.progress.empty());
    return rows;
  }

  static std::string* dir_;
};
std::string* HeadImportanceExecutorTest::dir_ = nullptr;

std::string DeltaKey(int layer, int head) {
  return absl::StrCat("head_nll_delta|dataset=calib|head=", head,
                      "|layer=", layer);
}

TEST_F(HeadImportanceExecutorTest, BatchedEqualsNaiveWithFewerLayerForwards) {
  const std::vector<int> layers = {0, 2, 4, 5};
  const auto naive = Run(1, /*naive=*/true, Task(layers, 0));
  ASSERT_EQ(naive.count(DeltaKey(0, 0)), 1u);
  double max_delta = 0.0;
  for (int L : layers) {
    for (int h = 0; h < 4; ++h) {
      max_delta = std::max(max_delta, std::fabs(naive.at(DeltaKey(L, h))));
    }
  }
  ASSERT_GT(max_delta, 1e-4);  // masking heads changes the NLL
  for (int tp : {1, 2}) {
    for (int per_forward : {0, 1, 3}) {
      SCOPED_TRACE(absl::StrCat("tp ", tp, " heads_per_forward ", per_forward));
      const auto batched = Run(tp, /*naive=*/false, Task(layers, per_forward));
      EXPECT_NEAR(batched.at("head_importance_baseline_nll|dataset=calib"),
                  naive.at("head_importance_baseline_nll|dataset=calib"), 1e-5);
      EXPECT_EQ(batched.at("head_importance_tokens|dataset=calib"),
                naive.at("head_importance_tokens|dataset=calib"));
      for (int L : layers) {
        for (int h = 0; h < 4; ++h) {
          EXPECT_NEAR(batched.at(DeltaKey(L, h)), naive.at(DeltaKey(L, h)),
                      2e-5)
              << "layer " << L << " head " << h;
        }
      }
      // Naive: per window batch, 1 + 4 layers x 4 heads full forwards of 6
      // layers. Batched: the unablated 6 layers plus, per layer L and head
      // chunk, the 6 - L layers from L on.
      const double naive_lf = naive.at("head_importance_layer_forwards");
      const double batched_lf = batched.at("head_importance_layer_forwards");
      EXPECT_LT(batched_lf, naive_lf);
      // Compute (layers x tokens of every row): 6 + 4 x 13 = 58 per token
      // against 6 x (1 + 16) = 102, whatever the window batching.
      EXPECT_DOUBLE_EQ(batched.at("head_importance_token_layers") / 58,
                       naive.at("head_importance_token_layers") / 102);
      // Per window batch: 6 + sum over layers of chunks x (6 - L), where
      // 6 - L over layers {0, 2, 4, 5} sums to 13.
      const int chunks =
          per_forward == 0 ? 1 : (4 + per_forward - 1) / per_forward;
      const int per_batch = 6 + chunks * 13;
      EXPECT_GT(batched_lf, 0);
      EXPECT_EQ(static_cast<int64_t>(batched_lf) % per_batch, 0) << batched_lf;
      EXPECT_EQ(static_cast<int64_t>(naive_lf) % (6 * 17), 0) << naive_lf;
    }
  }
}

// heads_per_forward 0 with a token budget below window x heads: the heads of
// a layer are split over several forwards, with the same deltas.
TEST_F(HeadImportanceExecutorTest, AllHeadsSplitToFitTheTokenBudget) {
  const std::vector<int> layers = {1, 3};
  const auto naive = Run(1, /*naive=*/true, Task(layers, 0));
  const auto whole = Run(1, /*naive=*/false, Task(layers, 0), 64);
  const auto split = Run(1, /*naive=*/false, Task(layers, 0), 32);
  for (int L : layers) {
    for (int h = 0; h < 4; ++h) {
      EXPECT_NEAR(split.at(DeltaKey(L, h)), naive.at(DeltaKey(L, h)), 2e-5)
          << "layer " << L << " head " << h;
    }
  }
  // The 16-token windows get 2 heads per forward instead of 4.
  EXPECT_GT(split.at("head_importance_layer_forwards"),
            whole.at("head_importance_layer_forwards"));
  EXPECT_EQ(split.at("head_importance_token_layers"),
            whole.at("head_importance_token_layers"));
}

TEST_F(HeadImportanceExecutorTest, ErrorsNameTheField) {
  auto backend = jobs_test::MakeBackend(*dir_ + "/model");
  ASSERT_TRUE(backend.ok());
  auto ex = HeadImportanceExecutor::Create(*backend, {});
  ASSERT_TRUE(ex.ok());
  FakeContext ctx;
  std::vector<absl::Status> errors;
  TaskInput bad_layer = Task({7}, 0);
  TaskInput wrong = Task({0}, 0);
  wrong.job = LmJobSpec{};
  (*ex)->RunGroup({bad_layer, wrong}, ctx,
                  [&](size_t, absl::StatusOr<TaskOutput> out) {
                    errors.push_back(out.status());
                  });
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_THAT(errors[0].message(),
              HasSubstr("head_importance.layers: layer 7 outside [0, 6)"));
  EXPECT_THAT(errors[1].message(), HasSubstr("carries no head_importance job"));
}

}  // namespace
}  // namespace sweepd
