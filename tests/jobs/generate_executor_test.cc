// The generate and canary executors (worker/jobs/generate_executor.h) on a
// tiny random model with its generated tokenizer: every sample is kept and a
// re-run reproduces it, token-family bans hold in the text, stop strings cut
// samples, verifiers score samples (a crashing command verifier gives
// per-sample errors, not a failed task), canary cases pass and fail, dataset
// prompts carry their ids and categories, bad inputs are named.
#include "worker/jobs/generate_executor.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/artifact_store.h"
#include "common/fs.h"
#include "common/model_fingerprint.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/jobs/executor_test_env.h"
#include "worker/calib/checkpoint_editor.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

class CountingMetrics : public WorkerMetrics {
 public:
  void RecordTaskDone(const std::string&, double) override {}
  void RecordTaskFailed(const std::string&, bool) override {}
  void RecordForward(int64_t layer_forwards, double) override {
    forwards += layer_forwards;
  }
  void RecordPromptTokens(int64_t t) override { prompt_tokens += t; }
  void RecordGeneratedTokens(int64_t t) override { generated += t; }
  void RecordTimeToFirstToken(double s) override {
    ++ttft;
    EXPECT_GE(s, 0);
  }
  void RecordInterTokenLatency(double) override { ++itl; }
  void RecordRequestLatency(double) override { ++requests; }
  void RecordDrain() override {}
  void RecordPreemptedTasks(int64_t) override {}
  int64_t forwards = 0, prompt_tokens = 0, generated = 0, ttft = 0, itl = 0,
          requests = 0;
};

class GenerateExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = jobs_test::MakeTinyModelDir("generate_executor_test");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(std::move(*dir));
    std::ofstream(*dir_ + "/prompts.jsonl")
        << R"({"prompt": "Two plus two is", "answer": 4, "category": "math", "id": "q1"})"
           "\n"
           R"({"prompt": "The capital of France is", "reference": "Paris", "category": "geo"})"
           "\n";
    std::ofstream(*dir_ + "/crash.sh") << "#!/bin/sh\nread line\nexit 3\n";
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(RemoveAll(*dir_).ok());
    delete dir_;
  }

  void SetUp() override {
    auto backend = jobs_test::MakeBackend(*dir_ + "/model");
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *backend;
  }

  static GenerateJobSpec Job() {
    GenerateJobSpec job;
    job.prompts = {{"p0", "Once upon a time", "", "story", {}},
                   {"p1", "The weather today", "", "", {}}};
    job.samples = 3;
    job.max_new_tokens = 8;
    job.temperature = 1.0;
    return job;
  }

  absl::StatusOr<TaskOutput> RunOne(
      const std::string& kind, GenerateJobSpec job,
      const std::string& key = "task-a", WorkerMetrics* metrics = nullptr,
      std::shared_ptr<ArtifactStore> artifacts = nullptr) {
    GenerateExecutorOptions options;
    options.metrics = metrics;
    options.artifacts = std::move(artifacts);
    options.verifier_commands = {"/bin/sh"};
    auto ex = GenerateExecutor::Create(kind, backend_, options);
    EXPECT_TRUE(ex.ok()) << ex.status();
    TaskInput t;
    t.task_key = key;
    t.kind = kind;
    t.job = std::move(job);
    return jobs_test::RunOne(ex->get(), t);
  }

  static double Metric(const TaskOutput& out, const std::string& name) {
    for (const MetricRow& r : out.metrics) {
      if (r.name == name) return r.value;
    }
    ADD_FAILURE() << "no metric " << name;
    return -1;
  }

  static std::string* dir_;
  std::shared_ptr<LmBackend> backend_;
};

std::string* GenerateExecutorTest::dir_ = nullptr;

TEST_F(GenerateExecutorTest, KeepsEverySampleAndARerunReproducesThem) {
  auto a = RunOne("generate", Job());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->samples.size(), 6u);
  std::set<std::pair<int, int>> seen;
  for (const SampleRow& s : a->samples) {
    seen.insert({s.prompt_index, s.sample_index});
    EXPECT_GE(s.num_tokens, 1);
    EXPECT_LE(s.num_tokens, 8);
    EXPECT_LT(s.logprob_sum, 0);
    EXPECT_TRUE(s.finish_reason == "stop" || s.finish_reason == "length");
    EXPECT_FALSE(s.has_score);  // no verifier
  }
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_EQ(a->samples[0].prompt_id, "p0");
  EXPECT_EQ(a->samples[0].category, "story");
  EXPECT_EQ(Metric(*a, "samples"), 6);
  auto again = RunOne("generate", Job());
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(a->samples[i].text, again->samples[i].text);
    EXPECT_EQ(a->samples[i].logprob_sum, again->samples[i].logprob_sum);
  }
  auto other = RunOne("generate", Job(), "task-b");
  ASSERT_TRUE(other.ok());
  int differ = 0;
  for (size_t i = 0; i < 6; ++i) {
    differ += a->samples[i].text != other->samples[i].text;
  }
  EXPECT_GT(differ, 0);  // another task key draws other samples
}

TEST_F(GenerateExecutorTest, RecordsGenerationMetrics) {
  CountingMetrics m;
  auto out = RunOne("generate", Job(), "task-m", &m);
  ASSERT_TRUE(out.ok()) << out.status();
  int64_t tokens = 0;
  for (const SampleRow& s : out->samples) tokens += s.num_tokens;
  EXPECT_EQ(m.generated, tokens);
  EXPECT_EQ(m.ttft, 6);
  EXPECT_EQ(m.requests, 6);
  // Every token after a sample's first comes from a decode step.
  EXPECT_EQ(m.itl, tokens - 6);
  EXPECT_GT(m.prompt_tokens, 0);
  EXPECT_GT(m.forwards, 0);
}

TEST_F(GenerateExecutorTest, TokenFamilyBansHoldInTheText) {
  GenerateJobSpec job = Job();
  job.samples = 20;
  job.max_new_tokens = 12;
  job.ban_strings = {"e", "a"};
  auto out = RunOne("generate", job);
  ASSERT_TRUE(out.ok()) << out.status();
  for (const SampleRow& s : out->samples) {
    EXPECT_FALSE(absl::StrContains(s.text, "e")) << s.text;
    EXPECT_FALSE(absl::StrContains(s.text, "a")) << s.text;
  }
  EXPECT_GT(Metric(*out, "banned_tokens"), 10);
}

TEST_F(GenerateExecutorTest, StopStringsCutSamples) {
  GenerateJobSpec job = Job();
  job.samples = 1;
  job.temperature = 0;
  job.max_new_tokens = 16;
  auto free_run = RunOne("generate", job);
  ASSERT_TRUE(free_run.ok());
  const std::string text = free_run->samples[0].text;
  ASSERT_GE(text.size(), 4u);
  job.stop = {text.substr(text.size() / 2, 2)};
  auto cut = RunOne("generate", job);
  ASSERT_TRUE(cut.ok());
  const SampleRow& s = cut->samples[0];
  EXPECT_EQ(s.finish_reason, "stop");
  EXPECT_EQ(s.text, text.substr(0, text.find(job.stop[0])));
}

TEST_F(GenerateExecutorTest, VerifiersScoreSamplesAndErrorsStayPerSample) {
  GenerateJobSpec job = Job();
  job.samples = 1;
  job.temperature = 0;
  auto greedy = RunOne("generate", job);
  ASSERT_TRUE(greedy.ok());
  job.prompts[0].reference = greedy->samples[0].text;
  job.prompts[1].reference = "certainly not this";
  job.verifier.kind = "exact";
  auto exact = RunOne("generate", job);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_TRUE(exact->samples[0].has_score);
  EXPECT_TRUE(exact->samples[0].pass);
  EXPECT_FALSE(exact->samples[1].pass);
  EXPECT_EQ(Metric(*exact, "pass_rate"), 0.5);

  job.verifier.kind = "nll";
  auto nll = RunOne("generate", job);
  ASSERT_TRUE(nll.ok()) << nll.status();
  EXPECT_TRUE(nll->samples[0].has_score);
  EXPECT_LT(nll->samples[0].score, 0);

  job.verifier.kind = "command";
  job.verifier.command = {"/bin/sh", *dir_ + "/crash.sh"};
  auto crashed = RunOne("generate", job);
  ASSERT_TRUE(crashed.ok()) << crashed.status();
  for (const SampleRow& s : crashed->samples) {
    EXPECT_FALSE(s.has_score);
    EXPECT_THAT(s.verifier_error, HasSubstr("exit"));
  }
  EXPECT_EQ(Metric(*crashed, "verifier_errors"), 2);

  // A program the worker's operator did not allow is refused, naming the flag.
  job.verifier.command = {"python3", "-c", "print()"};
  auto refused = RunOne("generate", job);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("--verifier-command"));
}

TEST_F(GenerateExecutorTest, CanaryCasesPassAndFail) {
  GenerateJobSpec probe = Job();
  probe.samples = 1;
  probe.temperature = 0;
  probe.max_new_tokens = 10;
  auto greedy = RunOne("generate", probe);
  ASSERT_TRUE(greedy.ok());
  GenerateJobSpec canary;
  canary.samples = 1;
  canary.temperature = 0;
  canary.max_new_tokens = 10;
  canary.prompts = {{"case0",
                     "Once upon a time",
                     "",
                     "",
                     {greedy->samples[0].text.substr(0, 3)}},
                    {"case1", "The weather today", "", "", {"zzz-not-there"}}};
  auto out = RunOne("canary", canary);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->samples[0].pass);
  EXPECT_FALSE(out->samples[1].pass);
  EXPECT_EQ(Metric(*out, "canary_pass_rate"), 0.5);
}

TEST_F(GenerateExecutorTest, DatasetPromptsCarryIdsReferencesAndCategories) {
  GenerateJobSpec job = Job();
  job.prompts.clear();
  job.has_data = true;
  job.dataset_name = "qa";
  job.data.path = *dir_ + "/prompts.jsonl";
  job.samples = 2;
  job.verifier.kind = "numeric";
  auto out = RunOne("generate", job);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->samples.size(), 4u);
  EXPECT_EQ(out->samples[0].prompt_id, "q1");
  EXPECT_EQ(out->samples[0].category, "math");
  EXPECT_EQ(out->samples[2].prompt_id, "qa/1");
  EXPECT_EQ(out->samples[2].category, "geo");
}

// Steering in generation: adding zero reproduces the unsteered samples
// exactly, a large replacement changes them; a vector from the artifact store
// equals the same vector inline, and needs a store.
TEST_F(GenerateExecutorTest, SteeringChangesSamplesOnlyWhenItShould) {
  using Mode = engine::Intervention::SteerMode;
  const int64_t hidden = 64;  // gemma4-tiny
  auto run = [&](std::vector<engine::Intervention> ivs,
                 std::vector<InterventionArtifactRef> refs = {},
                 std::shared_ptr<ArtifactStore> store = nullptr) {
    GenerateJobSpec job = Job();
    job.temperature = 0;
    job.samples = 1;
    job.intervention_fields.assign(ivs.size(), "interventions[0].steer");
    job.interventions = std::move(ivs);
    job.intervention_artifacts = std::move(refs);
    return RunOne("generate", job, "task-s", nullptr, std::move(store));
  };
  auto texts = [](const absl::StatusOr<TaskOutput>& out) {
    EXPECT_TRUE(out.ok()) << out.status();
    std::vector<std::string> t;
    if (out.ok()) {
      for (const SampleRow& s : out->samples) t.push_back(s.text);
    }
    return t;
  };
  const std::vector<std::string> base = texts(run({}));
  EXPECT_EQ(texts(run({engine::Intervention::Steer(
                2, Mode::kAdd, std::vector<float>(hidden, 0.0f), 5.0)})),
            base);
  std::vector<float> v(hidden);
  for (int64_t i = 0; i < hidden; ++i) v[i] = (i % 5) - 2.0f;
  const std::vector<std::string> steered =
      texts(run({engine::Intervention::Steer(1, Mode::kReplace, v, 3.0)}));
  EXPECT_NE(steered, base);

  const std::string dir = *dir_ + "/store";
  auto store = ArtifactStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  SafetensorsWriter w;
  ASSERT_TRUE(
      w.Add("v", StDtype::kF32, {hidden}, v.data(), v.size() * sizeof(float))
          .ok());
  ASSERT_TRUE(w.WriteFile(*dir_ + "/v.safetensors").ok());
  auto info = (*store)->PutFile("v", *dir_ + "/v.safetensors");
  ASSERT_TRUE(info.ok()) << info.status();
  const std::vector<InterventionArtifactRef> refs = {{0, info->path, "", ""}};
  const std::vector<engine::Intervention> from_store = {
      engine::Intervention::Steer(1, Mode::kReplace, {}, 3.0)};
  EXPECT_EQ(texts(run(from_store, refs, std::move(*store))), steered);
  absl::StatusOr<TaskOutput> no_store = run(from_store, refs);
  EXPECT_EQ(no_store.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(GenerateExecutorTest, BadInputsAreNamed) {
  GenerateJobSpec job = Job();
  job.banned_tokens = {1 << 20};
  EXPECT_THAT(RunOne("generate", job).status().message(),
              HasSubstr("outside the model's vocabulary"));
  job = Job();
  job.verifier.kind = "regex";
  job.verifier.pattern = "(";
  EXPECT_EQ(RunOne("generate", job).status().code(),
            absl::StatusCode::kInvalidArgument);
  job = Job();
  job.interventions = {engine::Intervention::Skip(99)};
  job.intervention_fields = {"interventions[0].skip.layers"};
  EXPECT_THAT(RunOne("generate", job).status().message(),
              HasSubstr("interventions[0].skip.layers"));
}

// A canary task on a materialized checkpoint merges its verdict into the
// checkpoint's sweepd manifest, one entry per task key (a re-run replaces its
// own entry), with the aggregate over the tasks; a canary under interventions
// and a canary on a plain checkpoint record nothing; the fingerprint stays.
TEST_F(GenerateExecutorTest, CanaryVerdictLandsInTheMaterializedManifest) {
  calib::MaterializeRequest mreq;
  mreq.base_dir = *dir_ + "/model";
  mreq.out_dir = *dir_ + "/materialized";
  mreq.plan.pruned = {{0, {1}}};
  auto mat = calib::MaterializeCheckpoint(mreq);
  ASSERT_TRUE(mat.ok()) << mat.status();
  auto manifest = [&] {
    std::ifstream in(mreq.out_dir + "/" + calib::kManifestFile);
    return nlohmann::json::parse(in);
  };
  ASSERT_EQ(manifest()["canary"]["status"], "pending");

  auto canary = [&](std::vector<PromptSpec> cases,
                    const std::string& model_dir) {
    GenerateJobSpec job;
    job.model.path = model_dir;
    job.samples = 1;
    job.temperature = 0;
    job.max_new_tokens = 4;
    job.prompts = std::move(cases);
    return job;
  };
  const PromptSpec pass{"ok", "Once upon a time", "", "", {}};
  const PromptSpec fail{"never", "The weather today", "", "", {"zzz-no"}};
  ASSERT_TRUE(RunOne("canary", canary({pass}, mreq.out_dir), "shard-a").ok());
  nlohmann::json c = manifest()["canary"];
  EXPECT_EQ(c["status"], "passed");
  EXPECT_EQ(c["detail"], "1/1 cases passed in 1 task");
  EXPECT_EQ(c["tasks"]["shard-a"]["status"], "passed");

  ASSERT_TRUE(
      RunOne("canary", canary({pass, fail}, mreq.out_dir), "shard-b").ok());
  c = manifest()["canary"];
  EXPECT_EQ(c["status"], "failed");
  EXPECT_EQ(c["detail"], "2/3 cases passed in 2 tasks; failed: never");
  EXPECT_EQ(c["tasks"]["shard-a"]["status"], "passed");
  EXPECT_EQ(c["tasks"]["shard-b"]["failed_cases"],
            nlohmann::json::array({"never"}));

  // A re-run of shard-b (e.g. after preemption) replaces its own entry.
  ASSERT_TRUE(RunOne("canary", canary({pass}, mreq.out_dir), "shard-b").ok());
  c = manifest()["canary"];
  EXPECT_EQ(c["status"], "passed");
  EXPECT_EQ(c["detail"], "2/2 cases passed in 2 tasks");

  // Under interventions the verdict is not the checkpoint's: not recorded.
  GenerateJobSpec masked = canary({fail}, mreq.out_dir);
  masked.interventions = {engine::Intervention::MaskHeads(1, {0})};
  masked.intervention_fields = {"interventions[0].mask_heads"};
  auto out = RunOne("canary", masked, "shard-c");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(manifest()["canary"], c);

  // The manifest is not covered by the fingerprint.
  auto fp = ComputeModelFingerprint(mreq.out_dir);
  ASSERT_TRUE(fp.ok());
  EXPECT_EQ(*fp, mat->fingerprint);

  // A plain checkpoint has no manifest and gets none.
  ASSERT_TRUE(RunOne("canary", canary({fail}, *dir_ + "/model"), "base").ok());
  EXPECT_FALSE(PathExists(*dir_ + "/model/" + calib::kManifestFile));
}

}  // namespace
}  // namespace sweepd
