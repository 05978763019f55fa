// Task-state rules: which task states are terminal, how a task state adds to
// per-state counts, and how a sweep's state follows from its tasks. The one
// place these rules live; the ledger, the scheduler, the services and sweepctl
// all use it. Pure functions, thread-safe.
#ifndef SWEEPD_COORDINATOR_TASK_STATES_H_
#define SWEEPD_COORDINATOR_TASK_STATES_H_

#include <cstdint>

#include "sweepd/v1/coordinator.pb.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

// DONE, FAILED and CANCELLED: the task has its outcome and never changes again.
bool IsTerminalTaskState(v1::TaskState state);
// PENDING and LEASED: the task still has work to do.
bool IsActiveTaskState(v1::TaskState state);

// The active states as an SQL list, "(1, 2)", for ledger queries.
inline constexpr char kActiveTaskStatesSql[] = "(1, 2)";
static_assert(v1::TASK_STATE_PENDING == 1 && v1::TASK_STATE_LEASED == 2,
              "kActiveTaskStatesSql must list the active task states");

// Adds `delta` to the per-state field of `counts` for `state` (not to total).
// UNSPECIFIED is ignored.
void AdjustTaskCount(v1::TaskCounts* counts, v1::TaskState state,
                     int64_t delta);

// What decides a sweep's state.
struct SweepStateInputs {
  bool cancelled = false;
  // Some task is PENDING or LEASED.
  bool any_active = false;
  // A derived stage is not planned yet (docs/STAGES.md).
  bool stages_deferred = false;
  // Some task FAILED.
  bool any_failed = false;
};

// CANCELLED once cancelled; RUNNING while a task is active or a stage is
// deferred; then FAILED if any task failed, else DONE.
v1::SweepState SweepStateOf(const SweepStateInputs& in);
// The same rule from per-state counts.
v1::SweepState SweepStateFromCounts(const v1::TaskCounts& counts,
                                    bool cancelled, bool stages_deferred);

// DONE, FAILED and CANCELLED: the sweep has ended.
bool IsFinalSweepState(v1::SweepState state);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_TASK_STATES_H_
