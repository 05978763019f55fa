// RunTasksOneByOne: the per-task loop of the executors that run a group's
// tasks one after another (capture, heal, retrain, head_importance,
// materialize), so that each of them states only how one task runs. For each
// task i of the group, in order, the sink gets exactly one outcome:
//  - the task (or the whole group) is cancelled: CANCELLED "task cancelled";
//  - the task is not of `kind`, or its job is not a `Job`: INVALID_ARGUMENT
//    "task <key>: the <kind> executor runs kind <kind> with its job; this task
//    has kind '<k>' and carries no <kind> job";
//  - else run(task, job, i); a std::exception it throws (libtorch reports
//    errors so) becomes INTERNAL "libtorch error: ..."; any error but
//    CANCELLED gets "task <key>: " in front.
// Progress advances by one task's share after each task (run may report finer
// progress within its share: [i / n, (i + 1) / n)).
//
// Header-only; stateless. Runs on the caller's thread (RunGroup's).
#ifndef SWEEPD_WORKER_JOBS_TASK_LOOP_H_
#define SWEEPD_WORKER_JOBS_TASK_LOOP_H_

#include <exception>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/jobs/executor.h"

namespace sweepd {

template <typename Job, typename Run>
void RunTasksOneByOne(const std::string& kind,
                      const std::vector<TaskInput>& tasks, TaskContext& ctx,
                      const TaskSink& sink, Run&& run) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    const TaskInput& task = tasks[i];
    if (ctx.task_cancelled(i)) {
      sink(i, absl::CancelledError("task cancelled"));
      continue;
    }
    const Job* job = std::get_if<Job>(&task.job);
    absl::StatusOr<TaskOutput> out;
    if (task.kind != kind || job == nullptr) {
      out = absl::InvalidArgumentError(
          absl::StrCat("the ", kind, " executor runs kind ", kind,
                       " with its job; this task has kind '", task.kind,
                       "' and carries no ", kind, " job"));
    } else {
      try {
        out = run(task, *job, i);
      } catch (const std::exception& e) {
        out = absl::InternalError(absl::StrCat("libtorch error: ", e.what()));
      }
    }
    if (!out.ok() && !absl::IsCancelled(out.status())) {
      out = Annotate(out.status(), absl::StrCat("task ", task.task_key));
    }
    ctx.SetProgress(static_cast<double>(i + 1) / tasks.size());
    sink(i, std::move(out));
  }
}

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_TASK_LOOP_H_
