// Communicator: the collectives that tensor-parallel ranks use to combine
// partial results (all-reduce sum/max, all-gather, broadcast, barrier), on raw
// buffers so that this header needs neither libtorch nor CUDA/NCCL headers.
//
// Contract (every backend):
//  - A communicator belongs to exactly one rank of a group of size() ranks.
//    Every rank issues the same collectives, with the same count and dtype, in
//    the same order. A mismatch is a bug in the caller; backends detect what
//    they can (count/dtype/op mismatch -> INTERNAL).
//  - Host backend (in-process, on_device() == false): buffers are host memory
//    and a collective returns when its result is in `buf`, so the caller may
//    read the buffer immediately.
//  - Device backends (on_device() == true, NCCL): buffers are device memory of
//    the rank's GPU. A collective is enqueued on the rank's stream (given at
//    creation) and the call returns without waiting for it. Its result is
//    visible to work enqueued later on that stream, and to the host after the
//    stream has been synchronised. Buffers must stay alive until the stream
//    has passed the collective (a stream-ordered allocator on the same stream,
//    such as libtorch's caching allocator, satisfies this). An OK return only
//    means "enqueued": failures surface later, from Synchronize().
//  - Synchronize() blocks until every collective this rank issued so far has
//    completed and returns OK, or the error that ended the communicator.
//  - Results are identical on every rank. The in-process backend sums in rank
//    order 0..N-1 in float64 (float types) or int64 (integers), so results do
//    not depend on thread timing.
//  - Timeout: a collective that does not complete within the timeout given at
//    creation ends the group. Host backend: the collective itself returns
//    DEADLINE_EXCEEDED. Device backends: a watchdog notices, aborts the
//    communicator, and Synchronize() returns DEADLINE_EXCEEDED (INTERNAL for an
//    asynchronous NCCL error). Afterwards every collective returns ABORTED
//    (the device backend's message names the original cause) and a new group
//    must be created to continue.
//  - Thread-safety: one communicator is used by one thread (its rank's thread)
//    at a time, except Abort(), which any thread may call. Different ranks'
//    communicators are used concurrently from different threads.
// Ownership: a group object (InProcessGroup) owns its per-rank communicators
// and the shared rendezvous and must outlive every use of them; a device
// communicator is owned by its creator (see nccl_communicator.h).
#ifndef SWEEPD_WORKER_COMM_COMMUNICATOR_H_
#define SWEEPD_WORKER_COMM_COMMUNICATOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace sweepd::comm {

enum class CommDtype { kFloat32, kFloat64, kBFloat16, kInt32, kInt64 };

size_t CommDtypeSize(CommDtype dtype);
const char* CommDtypeName(CommDtype dtype);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // True when buffers must be device memory (NCCL), false for host memory.
  virtual bool on_device() const = 0;

  // buf[i] = sum over ranks of buf[i] (in place).
  virtual absl::Status AllReduceSum(void* buf, size_t count,
                                    CommDtype dtype) = 0;
  // buf[i] = max over ranks of buf[i] (in place).
  virtual absl::Status AllReduceMax(void* buf, size_t count,
                                    CommDtype dtype) = 0;
  // recv = concat over ranks r = 0..size-1 of rank r's send (count elements
  // each); recv holds size() * count elements.
  virtual absl::Status AllGather(const void* send, void* recv, size_t count,
                                 CommDtype dtype) = 0;
  // Every rank's buf becomes root's buf.
  virtual absl::Status Broadcast(void* buf, size_t count, CommDtype dtype,
                                 int root) = 0;
  // Returns when every rank has entered the barrier (device backends: the
  // barrier collective is enqueued and then waited for with Synchronize()).
  virtual absl::Status Barrier() = 0;
  // Blocks until every collective issued so far by this rank has completed.
  // Returns OK, or the error that ended the communicator: DEADLINE_EXCEEDED
  // after a timeout, INTERNAL for an asynchronous NCCL error, ABORTED after
  // Abort() (host backend: OK unless the group was aborted, then ABORTED).
  virtual absl::Status Synchronize() = 0;
  // Aborts the communicator from this rank (e.g. after a local failure): host
  // backend: the whole group, ranks blocked in a collective return ABORTED
  // promptly; NCCL: this rank's communicator (ncclCommAbort), its pending
  // collectives are dropped and Synchronize() returns ABORTED. Every later
  // collective returns ABORTED. Idempotent. Thread-safe; may be called from
  // any thread.
  virtual void Abort() = 0;
};

// In-process backend: `size` ranks as threads of one process sharing a
// rendezvous. Used on CPU (tests, the CPU engine) to run the same sharded code
// as the GPU path.
class InProcessGroup {
 public:
  // `clock` (borrowed, may be nullptr for the real clock) measures the
  // collective timeout.
  static absl::StatusOr<std::unique_ptr<InProcessGroup>> Create(
      int size, absl::Duration timeout = absl::Minutes(5),
      Clock* clock = nullptr);
  virtual ~InProcessGroup() = default;
  virtual int size() const = 0;
  // Borrowed; valid while the group lives. rank in [0, size).
  virtual Communicator* rank(int r) = 0;
};

}  // namespace sweepd::comm

#endif  // SWEEPD_WORKER_COMM_COMMUNICATOR_H_
