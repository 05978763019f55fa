#include "worker/engine/diagnostics.h"

#include "absl/strings/str_cat.h"

namespace sweepd::engine::internal {
namespace {

void AddTo(std::vector<std::pair<std::string, double>>* acc,
           const std::string& phase, double ms) {
  for (auto& [name, total] : *acc) {
    if (name == phase) {
      total += ms;
      return;
    }
  }
  acc->emplace_back(phase, ms);
}

}  // namespace

void EngineDiagnostics::AddPhases(
    const std::vector<std::pair<std::string, double>>& phases,
    bool device_events) {
  absl::MutexLock lock(&mu_);
  for (const auto& [name, ms] : phases) AddTo(&phases_, name, ms);
  ++forwards_;
  device_events_ = device_events;
}

PhaseTimes EngineDiagnostics::TakePhases() {
  absl::MutexLock lock(&mu_);
  PhaseTimes out;
  out.ms = std::move(phases_);
  out.forwards = forwards_;
  out.device_events = device_events_;
  phases_.clear();
  forwards_ = 0;
  return out;
}

void EngineDiagnostics::AddGemmLine(std::string line) {
  absl::MutexLock lock(&mu_);
  gemm_lines_.push_back(std::move(line));
}

std::vector<std::string> EngineDiagnostics::GemmLines() const {
  absl::MutexLock lock(&mu_);
  return gemm_lines_;
}

bool EngineDiagnostics::CheckOnce(const std::string& name, int device,
                                  const std::function<bool()>& check) {
  absl::MutexLock lock(&checks_mu_);
  const auto key = std::make_pair(name, device);
  auto it = checks_.find(key);
  if (it != checks_.end()) return it->second;
  const bool ok = check();
  checks_[key] = ok;
  return ok;
}

std::vector<std::pair<std::string, bool>> EngineDiagnostics::Checks() const {
  absl::MutexLock lock(&checks_mu_);
  std::vector<std::pair<std::string, bool>> out;
  for (const auto& [key, ok] : checks_) {
    out.emplace_back(absl::StrCat(key.first, " on device ", key.second), ok);
  }
  return out;
}

}  // namespace sweepd::engine::internal
