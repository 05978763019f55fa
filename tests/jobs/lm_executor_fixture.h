// Shared fixture of the eval / probe executor tests (lm_executor_*test.cc):
// LmExecutorTest writes the tiny random Gemma 4 model and the text shards the
// tests read (prose.txt, probe.jsonl, shared.jsonl, mismatch.jsonl) once per
// test suite, and gives each test an LmBackend, a tokenizer and an engine of
// its own for hand computations; Task builds a typed eval / probe task from a
// spec written as the protobuf JSON mapping, Run runs a group through
// LmExecutor::RunGroup and HandEval computes strided-window NLLs with
// Engine::Forward. FakeContext records progress and cancels on request.
//
// Each test owns what the fixture returns; the scratch directory belongs to
// the suite. Thread-compatible (gtest runs the tests of a binary one by one).
#ifndef SWEEPD_TESTS_JOBS_LM_EXECUTOR_FIXTURE_H_
#define SWEEPD_TESTS_JOBS_LM_EXECUTOR_FIXTURE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/artifact_store.h"
#include "common/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/engine/engine.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"
#include "worker/jobs/task.h"

namespace sweepd::jobs_test {

class FakeContext : public TaskContext {
 public:
  bool cancelled() const override { return cancel_all; }
  bool task_cancelled(size_t i) const override {
    return cancel_all || cancelled_tasks.count(i) > 0;
  }
  void SetProgress(double f) override { progress.push_back(f); }

  bool cancel_all = false;
  std::set<size_t> cancelled_tasks;
  std::vector<double> progress;
};

using Outcomes = std::map<size_t, absl::StatusOr<TaskOutput>>;

// name + sorted labels -> value; adds a test failure for a duplicate row.
std::map<std::string, double> Flatten(const TaskOutput& out);

// |expected - actual| <= rel * max(1e-12, |expected|), else a test failure
// naming `what`.
void ExpectRelNear(double expected, double actual, double rel,
                   const std::string& what);

class LmExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  static void Write(const std::string& name, const std::string& text);
  static std::string Path(const std::string& name);

  void SetUp() override;

  // The typed task the agent would hand over for a spec written as the
  // protobuf JSON mapping (`windowing`, `interventions`), the way these tests
  // were first written.
  static TaskInput Task(const std::string& kind, const std::string& key,
                        const std::string& data, nlohmann::json windowing,
                        nlohmann::json interventions = nlohmann::json::array());

  static LmJobSpec& Job(TaskInput& t) { return std::get<LmJobSpec>(t.job); }

  // Runs `tasks` as one group on an executor of the first task's kind over
  // backend_; every task's outcome (a test failure when one is reported twice
  // or not at all).
  Outcomes Run(const std::vector<TaskInput>& tasks, bool reuse,
               FakeContext* ctx_in = nullptr, int64_t max_batch_tokens = 4096,
               std::shared_ptr<ArtifactStore> artifacts = nullptr);

  // Sum of the engine's NLLs over the tokens of `ids` that strided perplexity
  // scores, choosing for each token j >= 1 the window with the smallest begin
  // that contains j - 1 and j. One Engine::Forward per window (batch 1).
  void HandEval(const std::vector<int32_t>& ids, int ctx, int stride,
                const std::vector<engine::Intervention>& ivs, double* nll_sum,
                int64_t* tokens);

  static std::string* dir_;
  std::shared_ptr<LmBackend> backend_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<engine::Engine> engine_;
};

}  // namespace sweepd::jobs_test

#endif  // SWEEPD_TESTS_JOBS_LM_EXECUTOR_FIXTURE_H_
