// Creates the communicators of an engine's ranks: the in-process backend for
// "cpu", NCCL for "cuda" (only in builds with SWEEPD_ENABLE_NCCL). The one file
// that branches on the NCCL build option. Internal to sweepd::engine.
// Thread-safe (stateless).
#ifndef SWEEPD_WORKER_ENGINE_COMM_FACTORY_H_
#define SWEEPD_WORKER_ENGINE_COMM_FACTORY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/communicator.h"

namespace sweepd::engine {

// Owns one communicator per rank (and whatever backs them).
class RankComms {
 public:
  virtual ~RankComms() = default;
  virtual comm::Communicator* rank(int r) = 0;
};

// device "cpu": an in-process group of `size`. device "cuda": NCCL
// communicators for devices first_device .. first_device + size - 1, created
// concurrently from one unique id, on each device's default stream.
absl::StatusOr<std::unique_ptr<RankComms>> CreateRankComms(
    const std::string& device, int size, int first_device,
    absl::Duration timeout);

// The NCCL library's version ("2.27.7"), "" in builds without NCCL.
std::string NcclVersion();

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_COMM_FACTORY_H_
