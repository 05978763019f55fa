#include "coordinator/ledger_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>  // program_invocation_short_name (glibc)
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace sweepd {
namespace {

std::string HostName() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) return "unknown-host";
  return host;
}

// What the lock file says about its holder; "" when unreadable.
std::string ReadHolder(int fd) {
  char buf[512] = {};
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "";
  return std::string(absl::StripAsciiWhitespace(std::string(buf, n)));
}

}  // namespace

std::string LedgerLockPath(const std::string& ledger_path) {
  return ledger_path + ".lock";
}

absl::StatusOr<std::unique_ptr<LedgerLock>> LedgerLock::Acquire(
    const std::string& ledger_path) {
  const std::string path = LedgerLockPath(ledger_path);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ledger lock file ",
                                            path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder = ReadHolder(fd);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "ledger ", ledger_path, " is in use by ",
          holder.empty() ? "another process" : holder, " (lock file ", path,
          "); stop that sweepd first, or give this one another --ledger"));
    }
    return absl::InternalError(
        absl::StrCat("cannot lock ", path, ": ", std::strerror(err)));
  }
  const std::string holder =
      absl::StrCat(program_invocation_short_name, " pid ", ::getpid(),
                   " on host ", HostName(), "\n");
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, holder.data(), holder.size(), 0) !=
          static_cast<ssize_t>(holder.size())) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot write ledger lock file ",
                                            path, ": ", std::strerror(err)));
  }
  return std::unique_ptr<LedgerLock>(new LedgerLock(fd, path));
}

LedgerLock::~LedgerLock() {
  // The file stays: unlinking it would race with a process that opened it and
  // waits to lock it. Closing the descriptor drops the lock.
  ::close(fd_);
}

}  // namespace sweepd
