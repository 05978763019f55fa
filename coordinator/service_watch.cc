// WatchReactor (service_watch.h): deciding and sending each watch event.
#include "coordinator/service_watch.h"

#include "absl/strings/str_cat.h"
#include "coordinator/service_impl.h"
#include "coordinator/service_validation.h"
#include "coordinator/task_states.h"

namespace sweepd::service_internal {

WatchReactor::Action WatchReactor::Decide(LeaseScheduler* scheduler,
                                          Clock* clock, bool shutting_down) {
  absl::MutexLock lock(&mu_);
  if (!ready_ || finished_ || writing_) return Action::kNothing;
  if (shutting_down) {
    finished_ = true;
    return Action::kFinishUnavailable;
  }
  auto sum = scheduler->GetSweep(sweep_id_);
  if (!sum.has_value()) {
    finished_ = true;
    return Action::kFinishNotFound;
  }
  // A worker coming or going changes why tasks wait without changing the
  // sweep's version.
  if (sum->version == last_version_ &&
      sum->blocked_reason == last_blocked_reason_) {
    return Action::kNothing;
  }
  last_version_ = sum->version;
  last_blocked_reason_ = sum->blocked_reason;
  event_.Clear();
  FillStatus(*sum, &spec_, event_.mutable_status());
  event_.set_unix_ms(clock->NowMs());
  final_sent_ = IsFinalSweepState(sum->state);
  writing_ = true;
  return Action::kWrite;
}

void WatchReactor::Act(Action action) {
  switch (action) {
    case Action::kWrite:
      StartWrite(&event_);
      break;
    case Action::kFinishUnavailable:
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "sweepd is shutting down"));
      break;
    case Action::kFinishNotFound:
      Finish(
          grpc::Status(grpc::StatusCode::NOT_FOUND,
                       absl::StrCat("sweep_id '", sweep_id_, "' not found")));
      break;
    case Action::kNothing:
      break;
  }
}

void FinishDenied(WatchReactor* reactor, const grpc::Status& s) {
  reactor->FinishOnce(s);
}

void WatchReactor::OnDone() {
  server_->RemoveWatcher(this);
  delete this;
}

void FinishDenied(grpc::ServerUnaryReactor* reactor, const grpc::Status& s) {
  reactor->Finish(s);
}

}  // namespace sweepd::service_internal
