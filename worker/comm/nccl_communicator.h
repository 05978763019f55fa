// NCCL communicator backend (built only with SWEEPD_ENABLE_NCCL=ON; target
// sweepd::comm_nccl). One Communicator per rank, created from a shared unique
// id with ncclCommInitRank; every collective is enqueued on the rank's CUDA
// stream, then the calling thread waits for it (event query) while acting as
// the watchdog: if the collective has not completed within the timeout, or NCCL
// reports an asynchronous error, the communicator is aborted (ncclCommAbort)
// and the call returns DEADLINE_EXCEEDED / INTERNAL; later calls return
// ABORTED. This header includes neither cuda.h nor nccl.h: streams travel as
// void* (cudaStream_t). Ownership: the caller owns the returned communicator;
// the stream is borrowed and must outlive it. Thread-safety: as Communicator
// (one thread per rank).
#ifndef SWEEPD_WORKER_COMM_NCCL_COMMUNICATOR_H_
#define SWEEPD_WORKER_COMM_NCCL_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/communicator.h"

namespace sweepd::comm {

// A fresh NCCL unique id (ncclGetUniqueId) as opaque bytes, to hand to every
// rank.
absl::StatusOr<std::string> NewNcclUniqueId();

// Joins rank `rank` of a group of `size` on CUDA device `device`; blocks until
// all ranks have joined (call from each rank's thread or process concurrently).
// `stream` is a cudaStream_t (nullptr = the legacy default stream).
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(
    const std::string& unique_id, int rank, int size, int device, void* stream,
    absl::Duration timeout = absl::Minutes(5));

}  // namespace sweepd::comm

#endif  // SWEEPD_WORKER_COMM_NCCL_COMMUNICATOR_H_
