#include "tests/testing/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace sweepd::testing {

std::string ExitInfo::ToString() const {
  if (exited) return absl::StrCat("exited with status ", code);
  if (signaled)
    return absl::StrCat("killed by signal ", signal, " (", strsignal(signal),
                        ")");
  return "still running";
}

absl::StatusOr<std::unique_ptr<Process>> Process::Spawn(
    const SpawnOptions& options) {
  if (options.argv.empty())
    return absl::InvalidArgumentError("Spawn: argv is empty");
  if (access(options.argv[0].c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("Spawn: ", options.argv[0], " is not an executable file"));
  }
  std::vector<char*> argv;
  for (const std::string& a : options.argv)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  std::map<std::string, std::string> env_map;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env_map[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : options.env) env_map[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env_map)
    env_strings.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!options.log_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO,
                                     options.log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The child starts with default signal dispositions and an empty mask.
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  int rc =
      posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("posix_spawn ", options.argv[0], ": ", std::strerror(rc)));
  }
  return std::unique_ptr<Process>(new Process(pid, options.log_path));
}

Process::~Process() { Kill(); }

bool Process::TryReap(bool block) {
  if (reaped_) return true;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  reaped_ = true;
  if (r == pid_) {
    if (WIFEXITED(status)) {
      exit_.exited = true;
      exit_.code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      exit_.signaled = true;
      exit_.signal = WTERMSIG(status);
    }
  }
  return true;
}

absl::Status Process::Signal(int sig) {
  if (reaped_) {
    return absl::FailedPreconditionError(
        absl::StrCat("process ", pid_, " already ", exit_.ToString()));
  }
  if (kill(pid_, sig) != 0) {
    return absl::InternalError(
        absl::StrCat("kill(", pid_, ", ", sig, "): ", strerror(errno)));
  }
  return absl::OkStatus();
}

bool Process::Running() { return !TryReap(/*block=*/false); }

absl::StatusOr<ExitInfo> Process::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!TryReap(/*block=*/false)) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " still running after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(
        absl::Milliseconds(10));  // polling waitpid; not waiting for time
  }
  return exit_;
}

void Process::Kill() {
  if (reaped_) return;
  kill(pid_, SIGKILL);
  TryReap(/*block=*/true);
}

std::string SourceDir() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return d != nullptr ? d : ".";
}

absl::StatusOr<std::string> BuildBinary(const std::string& relative) {
  const char* dir = std::getenv("SWEEPD_BUILD_DIR");
  if (dir == nullptr || *dir == '\0') {
    return absl::FailedPreconditionError(
        "SWEEPD_BUILD_DIR is not set (run the test through ctest)");
  }
  std::string path = absl::StrCat(dir, "/", relative);
  if (access(path.c_str(), X_OK) == 0) return path;
  const char* fallback = std::getenv("SWEEPD_FALLBACK_BUILD_DIR");
  if (fallback != nullptr && *fallback != '\0') {
    std::string other = absl::StrCat(fallback, "/", relative);
    if (access(other.c_str(), X_OK) == 0) return other;
  }
  return absl::NotFoundError(
      absl::StrCat(path, " does not exist: build it first"));
}

absl::StatusOr<std::string> MakeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  if (base == nullptr || *base == '\0') base = std::getenv("TMPDIR");
  if (base == nullptr || *base == '\0') base = "/tmp";
  std::string tmpl = absl::StrCat(base, "/", prefix, "-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", tmpl, ": ", strerror(errno)));
  }
  return tmpl;
}

absl::StatusOr<int> PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrCat("bind 127.0.0.1:0: ", strerror(err)));
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int CountInFile(const std::string& path, const std::string& needle) {
  if (needle.empty()) return 0;
  std::string text = ReadFileOrEmpty(path);
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

absl::StatusOr<int> WaitForPortFile(const std::string& path, Process& process,
                                    absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    std::string text(absl::StripAsciiWhitespace(ReadFileOrEmpty(path)));
    size_t colon = text.rfind(':');
    std::string port_text =
        colon == std::string::npos ? text : text.substr(colon + 1);
    int port = 0;
    if (!port_text.empty() && absl::SimpleAtoi(port_text, &port) && port > 0)
      return port;
    if (!process.Running()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "process ", process.pid(), " exited before writing ", path, "; log ",
          process.log_path(), ":\n", ReadFileOrEmpty(process.log_path())));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no port in ", path, " after ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(
        absl::Milliseconds(10));  // polling the file; not waiting for time
  }
}

}  // namespace sweepd::testing
