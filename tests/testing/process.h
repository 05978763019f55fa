// Child processes for integration and fault tests: spawn a binary with its
// output appended to a log file, signal it, wait for it with a timeout, reap
// it. Plus small helpers those tests share: binary paths under
// $SWEEPD_BUILD_DIR, temp dirs, free loopback ports, waiting for a port file.
//
// Ownership: a Process owns its child; destroying a still-running Process kills
// it with SIGKILL and reaps it. Thread-safety: a Process is used from one
// thread at a time.
#ifndef SWEEPD_TESTS_TESTING_PROCESS_H_
#define SWEEPD_TESTS_TESTING_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sweepd::testing {

struct SpawnOptions {
  // argv[0] is the executable path (not searched in PATH).
  std::vector<std::string> argv;
  // stdout and stderr are appended here; empty = inherit the test's.
  std::string log_path;
  // Added to (or replacing in) the test's environment.
  std::vector<std::pair<std::string, std::string>> env;
};

// How a child ended.
struct ExitInfo {
  bool exited = false;  // exited normally with `code`
  int code = 0;
  bool signaled = false;  // killed by `signal`
  int signal = 0;
  std::string ToString() const;
};

class Process {
 public:
  // INVALID_ARGUMENT for an empty argv; INTERNAL (with errno text) if
  // posix_spawn fails; NOT_FOUND if the executable does not exist.
  static absl::StatusOr<std::unique_ptr<Process>> Spawn(
      const SpawnOptions& options);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // Sends `sig`; FAILED_PRECONDITION if the child was already reaped.
  absl::Status Signal(int sig);
  // True while the child has not exited (reaps it if it has).
  bool Running();
  // Waits for the child to exit; DEADLINE_EXCEEDED after `timeout` (the child
  // keeps running).
  absl::StatusOr<ExitInfo> Wait(absl::Duration timeout);
  // SIGKILL and reap. Idempotent.
  void Kill();

 private:
  Process(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}
  bool TryReap(bool block);

  pid_t pid_;
  std::string log_path_;
  bool reaped_ = false;
  ExitInfo exit_;
};

// $SWEEPD_BUILD_DIR/<relative>; FAILED_PRECONDITION if the variable is unset,
// NOT_FOUND if the file does not exist. When this build did not make the
// binary and $SWEEPD_FALLBACK_BUILD_DIR is set, the binary of that build
// instead (scripts/sanitize.sh runs the fault suite with its sanitized sweepd
// and the main build's sweep-worker, which links libtorch).
absl::StatusOr<std::string> BuildBinary(const std::string& relative);

// The source tree: $SWEEPD_SOURCE_DIR (ctest sets it), "." when unset.
std::string SourceDir();

// A fresh directory under TEST_TMPDIR / TMPDIR / /tmp.
absl::StatusOr<std::string> MakeTempDir(const std::string& prefix);

// A loopback TCP port that was free a moment ago (bind port 0, read it, close).
absl::StatusOr<int> PickFreePort();

// Whole file content, or "" if it cannot be read.
std::string ReadFileOrEmpty(const std::string& path);
// Number of (non-overlapping) occurrences of `needle` in the file.
int CountInFile(const std::string& path, const std::string& needle);

// Waits until `path` holds a port (either "PORT" or "HOST:PORT", trailing
// newline allowed) and returns it. FAILED_PRECONDITION naming the log if
// `process` exits first; DEADLINE_EXCEEDED after `timeout`.
absl::StatusOr<int> WaitForPortFile(const std::string& path, Process& process,
                                    absl::Duration timeout);

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_TESTING_PROCESS_H_
