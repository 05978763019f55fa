// Canary verdicts in the manifest; see manifest_canary.h.
#include "worker/calib/manifest_canary.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/calib/checkpoint_editor.h"
#include "worker/calib/durable_file.h"

namespace sweepd::calib {

using json = nlohmann::json;

namespace {

// An exclusive flock(2) on a directory, released (and closed) on destruction.
class DirectoryLock {
 public:
  static absl::StatusOr<std::unique_ptr<DirectoryLock>> Acquire(
      const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      const int e = errno;
      if (e == ENOENT) {
        return absl::NotFoundError(absl::StrCat("no directory ", dir));
      }
      return absl::InternalError(
          absl::StrCat("cannot open ", dir, ": ", std::strerror(e)));
    }
    int rc;
    do {
      rc = ::flock(fd, LOCK_EX);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      const int e = errno;
      ::close(fd);
      return absl::InternalError(
          absl::StrCat("cannot lock ", dir, ": ", std::strerror(e)));
    }
    return std::unique_ptr<DirectoryLock>(new DirectoryLock(fd));
  }
  ~DirectoryLock() {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  explicit DirectoryLock(int fd) : fd_(fd) {}
  const int fd_;
};

// Locks the model directory, reads the manifest, applies `edit` and rewrites
// the manifest atomically.
template <typename Edit>
absl::Status EditManifestLocked(const std::string& model_dir, Edit edit) {
  const std::string path = JoinPath(model_dir, kManifestFile);
  if (!PathExists(path)) {
    return absl::NotFoundError(
        absl::StrCat("no ", kManifestFile, " in ", model_dir));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<DirectoryLock> lock,
                   DirectoryLock::Acquire(model_dir));
  ASSIGN_OR_RETURN(json m, ReadJsonFile(path));
  RETURN_IF_ERROR(edit(m));
  return WriteFileDurably(path, m.dump(2) + "\n");
}

}  // namespace

absl::Status UpdateManifestCanary(const std::string& model_dir,
                                  const std::string& status,
                                  const std::string& detail) {
  if (status != "pending" && status != "passed" && status != "failed") {
    return absl::InvalidArgumentError(absl::StrCat(
        "canary status '", status, "': must be pending, passed or failed"));
  }
  return EditManifestLocked(model_dir, [&](json& m) {
    json canary = {{"status", status}};
    if (!detail.empty()) canary["detail"] = detail;
    m["canary"] = std::move(canary);
    return absl::OkStatus();
  });
}

absl::Status RecordManifestCanary(const std::string& model_dir,
                                  const CanaryTaskReport& report) {
  if (report.task.empty()) {
    return absl::InvalidArgumentError("canary report: empty task key");
  }
  if (report.cases < 0 || report.passed < 0 || report.passed > report.cases) {
    return absl::InvalidArgumentError(
        absl::StrCat("canary report of task ", report.task, ": ", report.passed,
                     " of ", report.cases, " cases passed"));
  }
  return EditManifestLocked(model_dir, [&](json& m) {
    json canary = m.contains("canary") && m["canary"].is_object()
                      ? m["canary"]
                      : json::object();
    if (!canary.contains("tasks") || !canary["tasks"].is_object()) {
      canary["tasks"] = json::object();
    }
    const bool ok = report.passed == report.cases;
    canary["tasks"][report.task] = {{"status", ok ? "passed" : "failed"},
                                    {"cases", report.cases},
                                    {"passed", report.passed},
                                    {"failed_cases", report.failed_cases}};
    // The aggregate over every recorded task (keys in sorted order).
    int64_t cases = 0, passed = 0, tasks = 0;
    std::vector<std::string> failed;
    for (const auto& [key, t] : canary["tasks"].items()) {
      ++tasks;
      cases += t.value("cases", 0);
      passed += t.value("passed", 0);
      if (t.contains("failed_cases") && t["failed_cases"].is_array()) {
        for (const json& id : t["failed_cases"]) {
          failed.push_back(id.is_string() ? id.get<std::string>() : id.dump());
        }
      }
    }
    std::string detail = absl::StrCat(passed, "/", cases, " cases passed in ",
                                      tasks, tasks == 1 ? " task" : " tasks");
    if (!failed.empty()) {
      constexpr size_t kMaxNames = 8;
      std::vector<std::string> shown(
          failed.begin(), failed.begin() + std::min(failed.size(), kMaxNames));
      absl::StrAppend(&detail, "; failed: ", absl::StrJoin(shown, ", "));
      if (failed.size() > kMaxNames) {
        absl::StrAppend(&detail, " and ", failed.size() - kMaxNames, " more");
      }
    }
    canary["status"] = passed == cases ? "passed" : "failed";
    canary["detail"] = detail;
    m["canary"] = std::move(canary);
    return absl::OkStatus();
  });
}

}  // namespace sweepd::calib
