#include "coordinator/task_states.h"

namespace sweepd {

bool IsTerminalTaskState(v1::TaskState state) {
  return state == v1::TASK_STATE_DONE || state == v1::TASK_STATE_FAILED ||
         state == v1::TASK_STATE_CANCELLED;
}

bool IsActiveTaskState(v1::TaskState state) {
  return state == v1::TASK_STATE_PENDING || state == v1::TASK_STATE_LEASED;
}

void AdjustTaskCount(v1::TaskCounts* counts, v1::TaskState state,
                     int64_t delta) {
  switch (state) {
    case v1::TASK_STATE_PENDING:
      counts->set_pending(counts->pending() + delta);
      break;
    case v1::TASK_STATE_LEASED:
      counts->set_leased(counts->leased() + delta);
      break;
    case v1::TASK_STATE_DONE:
      counts->set_done(counts->done() + delta);
      break;
    case v1::TASK_STATE_FAILED:
      counts->set_failed(counts->failed() + delta);
      break;
    case v1::TASK_STATE_CANCELLED:
      counts->set_cancelled(counts->cancelled() + delta);
      break;
    default:
      break;
  }
}

v1::SweepState SweepStateOf(const SweepStateInputs& in) {
  if (in.cancelled) return v1::SWEEP_STATE_CANCELLED;
  if (in.any_active || in.stages_deferred) return v1::SWEEP_STATE_RUNNING;
  if (in.any_failed) return v1::SWEEP_STATE_FAILED;
  return v1::SWEEP_STATE_DONE;
}

v1::SweepState SweepStateFromCounts(const v1::TaskCounts& counts,
                                    bool cancelled, bool stages_deferred) {
  SweepStateInputs in;
  in.cancelled = cancelled;
  in.any_active = counts.pending() + counts.leased() > 0;
  in.stages_deferred = stages_deferred;
  in.any_failed = counts.failed() > 0;
  return SweepStateOf(in);
}

bool IsFinalSweepState(v1::SweepState state) {
  return state == v1::SWEEP_STATE_DONE || state == v1::SWEEP_STATE_FAILED ||
         state == v1::SWEEP_STATE_CANCELLED;
}

}  // namespace sweepd
