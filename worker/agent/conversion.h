// Conversions between the wire types of sweepd.v1 (protobuf) and the plain C++
// structs of worker/jobs/task.h and executor.h: the edge of the typed task
// path. This is the only place where a TaskSpec becomes a TaskInput and a
// TaskOutput becomes a TaskResult. Stateless and thread-safe.
#ifndef SWEEPD_WORKER_AGENT_CONVERSION_H_
#define SWEEPD_WORKER_AGENT_CONVERSION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sweepd/v1/spec.pb.h"
#include "sweepd/v1/task.pb.h"
#include "sweepd/v1/worker.pb.h"
#include "worker/jobs/executor.h"

namespace sweepd {

// JOB_KIND_SYNTHETIC -> "synthetic"; JOB_KIND_UNSPECIFIED -> "".
std::string JobKindName(sweepd::v1::JobKind kind);
// "synthetic" -> JOB_KIND_SYNTHETIC; INVALID_ARGUMENT naming `name` when
// unknown.
absl::StatusOr<sweepd::v1::JobKind> JobKindFromName(const std::string& name);
// The kind a task runs as: spec.kind when set, otherwise the kind of the job
// oneof that is set; "" when neither says.
std::string TaskKindOf(const sweepd::v1::TaskSpec& spec);

// The assignment as a typed TaskInput: identifiers, seed, params and the job
// struct of its kind (LmJobSpec for eval/probe, SyntheticJobSpec; other kinds
// get no job). Layer selectors must be explicit lists (the planner writes them
// so). INVALID_ARGUMENT "task <key>: <field>: ..." for a missing task key, a
// missing dataset path, a shard outside its range, bad windowing, a selector
// that is not an explicit list or a negative head.
absl::StatusOr<TaskInput> ToTaskInput(
    const sweepd::v1::TaskAssignment& assignment);

sweepd::v1::TaskResult ToTaskResult(const TaskOutput& output);
// retryable = !IsPermanentTaskError(status); the message keeps the code name.
sweepd::v1::TaskFailure ToTaskFailure(const absl::Status& status);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_AGENT_CONVERSION_H_
