#include "worker/agent/conversion.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace sweepd {
namespace {

constexpr char kJobKindPrefix[] = "JOB_KIND_";

}  // namespace

std::string JobKindName(sweepd::v1::JobKind kind) {
  if (kind == sweepd::v1::JOB_KIND_UNSPECIFIED) return "";
  std::string name = sweepd::v1::JobKind_Name(kind);
  if (absl::StartsWith(name, kJobKindPrefix))
    name = name.substr(sizeof(kJobKindPrefix) - 1);
  return absl::AsciiStrToLower(name);
}

absl::StatusOr<sweepd::v1::JobKind> JobKindFromName(const std::string& name) {
  sweepd::v1::JobKind kind;
  if (name.empty() ||
      !sweepd::v1::JobKind_Parse(
          absl::StrCat(kJobKindPrefix, absl::AsciiStrToUpper(name)), &kind) ||
      kind == sweepd::v1::JOB_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown job kind '", name, "'"));
  }
  return kind;
}

std::string TaskKindOf(const sweepd::v1::TaskSpec& spec) {
  if (spec.kind() != sweepd::v1::JOB_KIND_UNSPECIFIED)
    return JobKindName(spec.kind());
  switch (spec.job_case()) {
    case sweepd::v1::TaskSpec::kEval:
      return JobKindName(sweepd::v1::JOB_KIND_EVAL);
    case sweepd::v1::TaskSpec::kProbe:
      return JobKindName(sweepd::v1::JOB_KIND_PROBE);
    case sweepd::v1::TaskSpec::kHeadImportance:
      return JobKindName(sweepd::v1::JOB_KIND_HEAD_IMPORTANCE);
    case sweepd::v1::TaskSpec::kCapture:
      return JobKindName(sweepd::v1::JOB_KIND_CAPTURE);
    case sweepd::v1::TaskSpec::kHeal:
      return JobKindName(sweepd::v1::JOB_KIND_HEAL);
    case sweepd::v1::TaskSpec::kMaterialize:
      return JobKindName(sweepd::v1::JOB_KIND_MATERIALIZE);
    case sweepd::v1::TaskSpec::kGenerate:
      return JobKindName(sweepd::v1::JOB_KIND_GENERATE);
    case sweepd::v1::TaskSpec::kCanary:
      return JobKindName(sweepd::v1::JOB_KIND_CANARY);
    case sweepd::v1::TaskSpec::kSynthetic:
      return JobKindName(sweepd::v1::JOB_KIND_SYNTHETIC);
    case sweepd::v1::TaskSpec::JOB_NOT_SET:
      break;
  }
  return "";
}

absl::StatusOr<TaskInput> ToTaskInput(
    const sweepd::v1::TaskAssignment& assignment) {
  if (assignment.task_key().empty()) {
    return absl::InvalidArgumentError("TaskAssignment.task_key is empty");
  }
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(assignment.spec(),
                                                            &json, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", assignment.task_key(),
        ": TaskSpec does not convert to JSON: ", status.ToString()));
  }
  TaskInput input;
  input.task_key = assignment.task_key();
  input.sweep_id = assignment.sweep_id();
  input.group_key = assignment.group_key();
  input.kind = TaskKindOf(assignment.spec());
  input.attempt = assignment.attempt();
  input.spec =
      nlohmann::json::parse(json, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (input.spec.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", assignment.task_key(), ": TaskSpec JSON does not parse"));
  }
  return input;
}

sweepd::v1::TaskResult ToTaskResult(const TaskOutput& output) {
  sweepd::v1::TaskResult result;
  for (const MetricRow& row : output.metrics) {
    sweepd::v1::Metric* m = result.add_metrics();
    m->set_name(row.name);
    m->set_value(row.value);
    for (const auto& [k, v] : row.labels) (*m->mutable_labels())[k] = v;
  }
  for (const ArtifactRow& row : output.artifacts) {
    sweepd::v1::Artifact* a = result.add_artifacts();
    a->set_name(row.name);
    a->set_path(row.path);
    a->set_bytes(row.bytes);
    a->set_sha256(row.sha256);
  }
  result.set_wall_seconds(output.wall_seconds);
  return result;
}

sweepd::v1::TaskFailure ToTaskFailure(const absl::Status& status) {
  sweepd::v1::TaskFailure failure;
  failure.set_message(status.ToString());
  failure.set_retryable(!IsPermanentTaskError(status));
  return failure;
}

}  // namespace sweepd
