// Durable file helpers of the calibration library (the checkpoint editor and
// the canary manifest merge): fsync a path, pwrite a whole buffer, replace a
// small file atomically and durably, read a JSON object file.
//
// Stateless free functions; thread-safe (WriteFileDurably's temp name is
// per process: one writer per path and process at a time).
#ifndef SWEEPD_WORKER_CALIB_DURABLE_FILE_H_
#define SWEEPD_WORKER_CALIB_DURABLE_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace sweepd::calib {

// fsync(2) of a file or (`directory`) a directory; INTERNAL naming the path.
absl::Status FsyncPath(const std::string& path, bool directory);

// pwrite(2)s all `n` bytes at `offset` (retrying short writes and EINTR);
// false with errno set on an error.
bool WriteAll(int fd, const char* data, size_t n, uint64_t offset);

// Writes `contents` to `path`: temp file in the same directory, fsync,
// rename, fsync of the directory.
absl::Status WriteFileDurably(const std::string& path,
                              const std::string& contents);

// The JSON object in `path`: NOT_FOUND when it cannot be opened,
// INVALID_ARGUMENT when it is not a JSON object.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

}  // namespace sweepd::calib

#endif  // SWEEPD_WORKER_CALIB_DURABLE_FILE_H_
