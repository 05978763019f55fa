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
  std::string kind = executor->kind();
  if (kind.empty()) {
    return absl::InvalidArgumentError(
        "ExecutorRegistry::Register: executor has an empty kind()");
  }
  auto [it, inserted] = executors_.emplace(kind, std::move(executor));
  if (!inserted) {
    return absl::AlreadyExistsError(absl::StrCat(
        "an executor for job kind '", kind, "' is already registered"));
  }
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
