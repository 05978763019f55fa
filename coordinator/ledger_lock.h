// LedgerLock: the exclusive, process-lifetime lock that makes one coordinator
// the only owner of a ledger. It is an flock(2) on `<ledger>.lock` next to the
// ledger; the file also names the holder ("pid PID on host HOST"), so a
// second sweepd (or `sweepctl restore`) refuses with who holds it. The kernel
// drops the lock when the holder dies, kill -9 included: a stale lock file
// never blocks a restart.
//
// Ownership: the LedgerLock owns its file descriptor and holds the lock until
// it is destroyed. Thread-safety: immutable after Acquire; safe to share.
#ifndef SWEEPD_COORDINATOR_LEDGER_LOCK_H_
#define SWEEPD_COORDINATOR_LEDGER_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace sweepd {

class LedgerLock {
 public:
  // Takes the lock of `ledger_path` without waiting. FAILED_PRECONDITION
  // naming the holder (and the lock file) when another process or another
  // LedgerLock in this process holds it; INTERNAL for I/O errors.
  static absl::StatusOr<std::unique_ptr<LedgerLock>> Acquire(
      const std::string& ledger_path);
  ~LedgerLock();
  LedgerLock(const LedgerLock&) = delete;
  LedgerLock& operator=(const LedgerLock&) = delete;

  // `<ledger>.lock`.
  const std::string& path() const { return path_; }

 private:
  LedgerLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  const int fd_;
  const std::string path_;
};

// The lock file of a ledger: `<ledger_path>.lock`.
std::string LedgerLockPath(const std::string& ledger_path);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_LEDGER_LOCK_H_
