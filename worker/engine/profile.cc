#include "worker/engine/profile.h"

#include <string>
#include <utility>

namespace sweepd::engine::internal {

PhaseClock::~PhaseClock() {
  if (events_ == nullptr) return;
  for (Point& p : points_) {
    if (p.event != nullptr) events_->Destroy(p.event);
  }
}

void PhaseClock::Record(const char* phase) {
  Point p;
  p.phase = phase;
  if (events_ != nullptr) p.event = events_->Record();
  p.host = std::chrono::steady_clock::now();
  points_.push_back(p);
}

void PhaseClock::Finish() {
  if (!enabled_ || points_.empty()) return;
  Mark("end");
  std::vector<std::pair<std::string, double>> local;
  for (size_t i = 0; i + 1 < points_.size(); ++i) {
    double ms = std::chrono::duration<double, std::milli>(points_[i + 1].host -
                                                          points_[i].host)
                    .count();
    if (events_ != nullptr) {
      ms = events_->ElapsedMs(points_[i].event, points_[i + 1].event);
    }
    bool added = false;
    for (auto& [name, total] : local) {
      if (name == points_[i].phase) {
        total += ms;
        added = true;
        break;
      }
    }
    if (!added) local.emplace_back(points_[i].phase, ms);
  }
  sink_->AddPhases(local, events_ != nullptr);
}

}  // namespace sweepd::engine::internal
