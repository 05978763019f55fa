// NCCL communicator backend (built only with SWEEPD_ENABLE_NCCL=ON; target
// sweepd::comm_nccl). One Communicator per rank, created from a shared unique
// id with ncclCommInitRank.
//
// Stream-ordered collectives: every collective is enqueued on the rank's CUDA
// stream and the call returns without waiting for it (OK = enqueued). Its
// result is visible to work enqueued later on that stream, and to the host
// after the stream has been synchronised; buffers must stay alive until the
// stream has passed the collective. Synchronize() blocks until every collective
// issued so far has completed; Barrier() is an enqueued one-element all-reduce
// followed by Synchronize().
//
// Watchdog: after each collective a completion event is recorded on the
// stream; one background thread per communicator polls the oldest pending
// event. When a collective has not completed within the timeout (measured on
// the steady clock from the moment it was issued), or NCCL reports an
// asynchronous error, the watchdog aborts the communicator (ncclCommAbort,
// which makes the stuck NCCL kernels exit so the stream drains) and records
// the error: Synchronize() then returns DEADLINE_EXCEEDED (naming the
// collective, rank, size and timeout) or INTERNAL, and every later collective
// returns ABORTED naming that cause. Abort() does the same from any thread
// with ABORTED.
//
// This header includes neither cuda.h nor nccl.h: streams travel as void*
// (cudaStream_t). Ownership: the caller owns the returned communicator; the
// stream is borrowed and must outlive it. Destruction first waits as
// Synchronize() does (bounded by the timeout), then stops the watchdog.
// Thread-safety: as Communicator (one thread per rank; Abort() from any
// thread).
#ifndef SWEEPD_WORKER_COMM_NCCL_COMMUNICATOR_H_
#define SWEEPD_WORKER_COMM_NCCL_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/communicator.h"

namespace sweepd::comm {

// The version of the NCCL library loaded at run time (ncclGetVersion), e.g.
// "2.27.7"; "" if it cannot be read.
std::string NcclLibraryVersion();

// A fresh NCCL unique id (ncclGetUniqueId) as opaque bytes, to hand to every
// rank.
absl::StatusOr<std::string> NewNcclUniqueId();

// Joins rank `rank` of a group of `size` on CUDA device `device`; blocks until
// all ranks have joined (call from each rank's thread or process concurrently).
// `stream` is a cudaStream_t (nullptr = the legacy default stream); every
// collective is enqueued on it. `timeout` bounds each collective from the
// moment it is issued; the watchdog thread starts here.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(
    const std::string& unique_id, int rank, int size, int device, void* stream,
    absl::Duration timeout = absl::Minutes(5));

}  // namespace sweepd::comm

#endif  // SWEEPD_WORKER_COMM_NCCL_COMMUNICATOR_H_
