// LineProcess: a child process spoken to in lines over its stdin/stdout (the
// transport of the `command` verifier). Started with posix_spawnp in its own
// process group; its stderr is drained and its tail kept for error messages.
// Exchange writes a request and reads response lines with a deadline, without
// deadlocking on full pipes (one poll() loop over stdin, stdout and stderr);
// SIGPIPE is blocked in the calling thread while writing, so a dead child
// never kills the worker.
//
// Ownership: the object owns the child; destroying it (or Kill) sends SIGKILL
// to the child's process group and reaps it. Thread-compatible: one thread at
// a time.
#ifndef SWEEPD_WORKER_VERIFY_LINE_PROCESS_H_
#define SWEEPD_WORKER_VERIFY_LINE_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sweepd::verify {

class LineProcess {
 public:
  using Deadline = std::chrono::steady_clock::time_point;

  // Spawns argv (argv[0] looked up in PATH). INVALID_ARGUMENT for an empty
  // argv; UNAVAILABLE naming the command and errno when it cannot be started.
  static absl::StatusOr<std::unique_ptr<LineProcess>> Start(
      const std::vector<std::string>& argv);

  ~LineProcess();
  LineProcess(const LineProcess&) = delete;
  LineProcess& operator=(const LineProcess&) = delete;

  enum class Outcome {
    kComplete,  // want_lines lines were read
    kTimedOut,  // the deadline passed first
    kClosed,    // the child closed stdout (usually: it exited)
    kRejected,  // `on_line` returned false for the last line
  };
  struct Exchange {
    std::vector<std::string> lines;  // complete lines, without '\n'
    Outcome outcome = Outcome::kComplete;
  };

  // Writes `input` to the child's stdin while reading its stdout until
  // `want_lines` complete lines have arrived, stdout closes, `deadline`
  // passes or `on_line` (called with each line as it arrives) returns false.
  // Bytes after the last complete line are kept for the next call.
  Exchange Talk(absl::string_view input, size_t want_lines, Deadline deadline,
                const std::function<bool(const std::string&)>& on_line);

  // After kClosed: waits until `deadline` for the child to exit and describes
  // how ("exited with status 3", "was killed by signal 11"); if it is still
  // running then, kills it ("closed its stdout and was killed").
  std::string WaitForExit(Deadline deadline);

  // SIGKILL to the process group and reap; idempotent.
  void Kill();

  // The last bytes (at most 512) the child wrote to stderr, trimmed.
  std::string StderrTail() const;

  pid_t pid() const { return pid_; }

 private:
  LineProcess(pid_t pid, int in_fd, int out_fd, int err_fd)
      : pid_(pid), in_fd_(in_fd), out_fd_(out_fd), err_fd_(err_fd) {}
  void DrainStderr();
  void CloseFds();

  pid_t pid_;
  int in_fd_;
  int out_fd_;
  int err_fd_;
  bool reaped_ = false;
  std::string out_buffer_;   // stdout bytes not yet returned as a line
  std::string stderr_tail_;  // last bytes of stderr
};

}  // namespace sweepd::verify

#endif  // SWEEPD_WORKER_VERIFY_LINE_PROCESS_H_
