#include "worker/jobs/executor.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace sweepd {

bool IsPermanentTaskError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
      return true;
    default:
      return false;
  }
}

absl::Status ExecutorRegistry::Register(std::unique_ptr<Executor> executor) {
  if (executor == nullptr) {
    return absl::InvalidArgumentError(
        "ExecutorRegistry::Register: executor is null");
  }
  const std::string kind = executor->kind();
  return RegisterFor({kind}, std::shared_ptr<Executor>(std::move(executor)));
}

absl::Status ExecutorRegistry::RegisterFor(
    const std::vector<std::string>& kinds, std::shared_ptr<Executor> executor) {
  if (executor == nullptr) {
    return absl::InvalidArgumentError(
        "ExecutorRegistry::RegisterFor: executor is null");
  }
  if (kinds.empty()) {
    return absl::InvalidArgumentError(
        "ExecutorRegistry::RegisterFor: no job kinds given");
  }
  for (const std::string& kind : kinds) {
    if (kind.empty()) {
      return absl::InvalidArgumentError(
          "ExecutorRegistry::Register: empty job kind");
    }
    if (executors_.count(kind) > 0) {
      return absl::AlreadyExistsError(absl::StrCat(
          "an executor for job kind '", kind, "' is already registered"));
    }
  }
  for (const std::string& kind : kinds) executors_.emplace(kind, executor);
  return absl::OkStatus();
}

Executor* ExecutorRegistry::Find(const std::string& kind) const {
  auto it = executors_.find(kind);
  return it == executors_.end() ? nullptr : it->second.get();
}

std::vector<std::string> ExecutorRegistry::kinds() const {
  std::vector<std::string> out;
  out.reserve(executors_.size());
  for (const auto& [kind, executor] : executors_) out.push_back(kind);
  return out;
}

}  // namespace sweepd
