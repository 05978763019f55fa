#include "worker/verify/line_process.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace sweepd::verify {
namespace {

constexpr size_t kStderrTailBytes = 512;

int MillisUntil(LineProcess::Deadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

// write() with SIGPIPE blocked in this thread; a SIGPIPE raised by this write
// is consumed so it is never delivered.
ssize_t WriteNoSigpipe(int fd, const char* data, size_t size) {
  sigset_t pipe_set, old_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE);
  const ssize_t n = write(fd, data, size);
  const int saved_errno = errno;
  if (n < 0 && saved_errno == EPIPE && !was_pending) {
    const struct timespec zero = {0, 0};
    sigtimedwait(&pipe_set, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  errno = saved_errno;
  return n;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) {
    return absl::StrCat("exited with status ", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return absl::StrCat("was killed by signal ", WTERMSIG(status), " (",
                        strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LineProcess>> LineProcess::Start(
    const std::vector<std::string>& argv) {
  if (argv.empty()) {
    return absl::InvalidArgumentError("process: empty command line");
  }
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    return absl::UnavailableError(absl::StrCat("pipe: ", strerror(errno)));
  }
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return absl::UnavailableError(absl::StrCat("pipe: ", strerror(errno)));
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) close(fd);
    return absl::UnavailableError(absl::StrCat("pipe: ", strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group (killed as a whole), default SIGPIPE, empty mask.
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
                                      POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc =
      posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    for (int fd : {in_pipe[1], out_pipe[0], err_pipe[0]}) close(fd);
    return absl::UnavailableError(absl::StrCat(
        "cannot start '", absl::StrJoin(argv, " "), "': ", strerror(rc)));
  }
  for (int fd : {in_pipe[1], out_pipe[0], err_pipe[0]}) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return std::unique_ptr<LineProcess>(
      new LineProcess(pid, in_pipe[1], out_pipe[0], err_pipe[0]));
}

LineProcess::~LineProcess() { Kill(); }

void LineProcess::CloseFds() {
  for (int* fd : {&in_fd_, &out_fd_, &err_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void LineProcess::Kill() {
  if (!reaped_) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);  // in case setpgid had not happened
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  CloseFds();
}

void LineProcess::DrainStderr() {
  if (err_fd_ < 0) return;
  char buf[4096];
  while (true) {
    const ssize_t n = read(err_fd_, buf, sizeof(buf));
    if (n > 0) {
      stderr_tail_.append(buf, static_cast<size_t>(n));
      if (stderr_tail_.size() > kStderrTailBytes) {
        stderr_tail_.erase(0, stderr_tail_.size() - kStderrTailBytes);
      }
      continue;
    }
    if (n == 0) {
      close(err_fd_);
      err_fd_ = -1;
    }
    return;  // EAGAIN or error
  }
}

std::string LineProcess::StderrTail() const {
  return std::string(absl::StripAsciiWhitespace(stderr_tail_));
}

LineProcess::Exchange LineProcess::Talk(
    absl::string_view input, size_t want_lines, Deadline deadline,
    const std::function<bool(const std::string&)>& on_line) {
  Exchange result;
  size_t written = 0;
  bool rejected = false;
  auto take_lines = [&]() {
    size_t newline;
    while (!rejected && result.lines.size() < want_lines &&
           (newline = out_buffer_.find('\n')) != std::string::npos) {
      std::string line = out_buffer_.substr(0, newline);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      out_buffer_.erase(0, newline + 1);
      rejected = !on_line(line);
      result.lines.push_back(std::move(line));
    }
  };
  take_lines();
  while (result.lines.size() < want_lines) {
    if (rejected) {
      result.outcome = Outcome::kRejected;
      return result;
    }
    if (out_fd_ < 0) {
      result.outcome = Outcome::kClosed;
      return result;
    }
    struct pollfd fds[3];
    nfds_t nfds = 0;
    fds[nfds++] = {out_fd_, POLLIN, 0};
    const bool writing = in_fd_ >= 0 && written < input.size();
    if (writing) fds[nfds++] = {in_fd_, POLLOUT, 0};
    if (err_fd_ >= 0) fds[nfds++] = {err_fd_, POLLIN, 0};
    const int timeout_ms = MillisUntil(deadline);
    const int ready = poll(fds, nfds, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      result.outcome = Outcome::kTimedOut;
      return result;
    }
    for (nfds_t i = 0; i < nfds; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == err_fd_) {
        DrainStderr();
      } else if (fds[i].fd == in_fd_) {
        const ssize_t n = WriteNoSigpipe(in_fd_, input.data() + written,
                                         input.size() - written);
        if (n > 0) {
          written += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          // EPIPE: the child stopped reading; keep reading what it wrote.
          close(in_fd_);
          in_fd_ = -1;
        }
      } else if (fds[i].fd == out_fd_) {
        char buf[65536];
        const ssize_t n = read(out_fd_, buf, sizeof(buf));
        if (n > 0) {
          out_buffer_.append(buf, static_cast<size_t>(n));
          take_lines();
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          close(out_fd_);
          out_fd_ = -1;
        }
      }
    }
    if (rejected) {
      result.outcome = Outcome::kRejected;
      return result;
    }
    if (std::chrono::steady_clock::now() >= deadline &&
        result.lines.size() < want_lines) {
      result.outcome = Outcome::kTimedOut;
      return result;
    }
  }
  if (rejected) result.outcome = Outcome::kRejected;
  return result;
}

std::string LineProcess::WaitForExit(Deadline deadline) {
  if (reaped_) return "had already been stopped";
  while (true) {
    DrainStderr();
    int status;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      kill(-pid_, SIGKILL);  // whatever it left behind in its group
      CloseFds();
      return DescribeWaitStatus(status);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      Kill();
      return "closed its stdout and was killed";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace sweepd::verify
