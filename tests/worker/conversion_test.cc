#include "worker/agent/conversion.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

TEST(ConversionTest, JobKindNamesRoundTrip) {
  EXPECT_EQ(JobKindName(sweepd::v1::JOB_KIND_SYNTHETIC), "synthetic");
  EXPECT_EQ(JobKindName(sweepd::v1::JOB_KIND_HEAD_IMPORTANCE),
            "head_importance");
  EXPECT_EQ(JobKindName(sweepd::v1::JOB_KIND_UNSPECIFIED), "");
  auto kind = JobKindFromName("head_importance");
  ASSERT_TRUE(kind.ok());
  EXPECT_EQ(*kind, sweepd::v1::JOB_KIND_HEAD_IMPORTANCE);
  auto bad = JobKindFromName("evall");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("'evall'"));
  EXPECT_FALSE(JobKindFromName("unspecified").ok());
}

TEST(ConversionTest, KindFallsBackToTheJobOneof) {
  sweepd::v1::TaskSpec spec;
  EXPECT_EQ(TaskKindOf(spec), "");
  spec.mutable_synthetic()->set_tasks(3);
  EXPECT_EQ(TaskKindOf(spec), "synthetic");
  spec.set_kind(sweepd::v1::JOB_KIND_EVAL);  // an explicit kind wins
  EXPECT_EQ(TaskKindOf(spec), "eval");
}

TEST(ConversionTest, TaskInputKeepsProtoFieldNames) {
  sweepd::v1::TaskAssignment a;
  a.set_task_key("tk1");
  a.set_sweep_id("sw-1");
  a.set_group_key("gk1");
  a.set_attempt(2);
  a.set_fencing_token(99);
  sweepd::v1::TaskSpec* spec = a.mutable_spec();
  spec->set_kind(sweepd::v1::JOB_KIND_SYNTHETIC);
  spec->set_index(7);
  spec->mutable_synthetic()->set_min_ms(3);
  spec->mutable_synthetic()->set_max_ms(9);
  spec->mutable_synthetic()->set_permanent_failure_rate(0.25);
  auto input = ToTaskInput(a);
  ASSERT_TRUE(input.ok()) << input.status();
  EXPECT_EQ(input->task_key, "tk1");
  EXPECT_EQ(input->sweep_id, "sw-1");
  EXPECT_EQ(input->group_key, "gk1");
  EXPECT_EQ(input->attempt, 2);
  EXPECT_EQ(input->kind, "synthetic");
  EXPECT_EQ(input->spec["synthetic"]["min_ms"], 3);
  EXPECT_EQ(input->spec["synthetic"]["max_ms"], 9);
  EXPECT_DOUBLE_EQ(
      input->spec["synthetic"]["permanent_failure_rate"].get<double>(), 0.25);
  EXPECT_FALSE(input->spec["synthetic"].contains("permanentFailureRate"));
  EXPECT_EQ(input->spec["index"], "7");  // int64 maps to a JSON string
  EXPECT_EQ(input->spec["kind"], "JOB_KIND_SYNTHETIC");
}

TEST(ConversionTest, EmptyTaskKeyIsRejected) {
  sweepd::v1::TaskAssignment a;
  auto input = ToTaskInput(a);
  EXPECT_EQ(input.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(input.status().message()), HasSubstr("task_key"));
}

TEST(ConversionTest, OutputAndFailure) {
  TaskOutput out;
  out.metrics.push_back(
      MetricRow{"nll", 2.5, {{"layer", "3"}, {"category", "code"}}});
  out.artifacts.push_back(
      ArtifactRow{"acts", "/store/a.safetensors", 1234, "abcd"});
  out.wall_seconds = 1.5;
  sweepd::v1::TaskResult r = ToTaskResult(out);
  ASSERT_EQ(r.metrics_size(), 1);
  EXPECT_EQ(r.metrics(0).name(), "nll");
  EXPECT_DOUBLE_EQ(r.metrics(0).value(), 2.5);
  EXPECT_EQ(r.metrics(0).labels().at("layer"), "3");
  EXPECT_EQ(r.metrics(0).labels().at("category"), "code");
  ASSERT_EQ(r.artifacts_size(), 1);
  EXPECT_EQ(r.artifacts(0).path(), "/store/a.safetensors");
  EXPECT_EQ(r.artifacts(0).bytes(), 1234);
  EXPECT_EQ(r.artifacts(0).sha256(), "abcd");
  EXPECT_DOUBLE_EQ(r.wall_seconds(), 1.5);

  sweepd::v1::TaskFailure permanent =
      ToTaskFailure(absl::InvalidArgumentError("bad layer"));
  EXPECT_FALSE(permanent.retryable());
  EXPECT_THAT(permanent.message(), HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(permanent.message(), HasSubstr("bad layer"));
  sweepd::v1::TaskFailure transient =
      ToTaskFailure(absl::UnavailableError("oom"));
  EXPECT_TRUE(transient.retryable());
}

}  // namespace
}  // namespace sweepd
