// Internal to sweepd::engine: the phase clock of one forward
// (EngineOptions::phase_profiling). Rank 0 marks phase boundaries — with CUDA
// events on its compute stream when the rank's backend supplies a
// DeviceEventTimer, else with the host clock — and Finish adds the time
// between consecutive marks to the phase that began the interval, in the
// engine's EngineDiagnostics. A disabled clock costs one branch per mark.
// Owned by the rank's forward; used only from the rank's thread. Plain C++.
#ifndef SWEEPD_WORKER_ENGINE_PROFILE_H_
#define SWEEPD_WORKER_ENGINE_PROFILE_H_

#include <chrono>
#include <vector>

#include "worker/engine/diagnostics.h"

namespace sweepd::engine::internal {

// Device events on a rank's compute stream (the CUDA backend's). Errors
// throw (they unwind to the rank's edge like any device error).
class DeviceEventTimer {
 public:
  virtual ~DeviceEventTimer() = default;
  // A new event, recorded on the rank's compute stream.
  virtual void* Record() = 0;
  // Milliseconds between two recorded events (waits for `end`).
  virtual double ElapsedMs(void* start, void* end) = 0;
  virtual void Destroy(void* event) = 0;
};

class PhaseClock {
 public:
  // `events` (nullable: host clock) and `sink` are borrowed.
  PhaseClock(bool enabled, DeviceEventTimer* events, EngineDiagnostics* sink)
      : enabled_(enabled), events_(events), sink_(sink) {}
  PhaseClock(const PhaseClock&) = delete;
  PhaseClock& operator=(const PhaseClock&) = delete;
  ~PhaseClock();

  // Starts phase `phase` (a string literal) here.
  void Mark(const char* phase) {
    if (enabled_) Record(phase);
  }
  // Ends the last phase and adds the intervals to the sink.
  void Finish();

 private:
  struct Point {
    const char* phase = nullptr;
    void* event = nullptr;
    std::chrono::steady_clock::time_point host;
  };
  void Record(const char* phase);

  const bool enabled_;
  DeviceEventTimer* const events_;
  EngineDiagnostics* const sink_;
  std::vector<Point> points_;
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_PROFILE_H_
