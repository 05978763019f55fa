// Communicator: the collectives that tensor-parallel ranks use to combine
// partial results (all-reduce sum/max, all-gather, broadcast, barrier), on raw
// buffers so that this header needs neither libtorch nor CUDA/NCCL headers.
//
// Contract (every backend):
//  - A communicator belongs to exactly one rank of a group of size() ranks.
//  Every rank issues
//    the same collectives, with the same count and dtype, in the same order. A
//    mismatch is a bug in the caller; backends detect what they can
//    (count/dtype/op mismatch → INTERNAL).
//  - Buffers: host memory for the in-process backend (on_device() == false);
//  device memory of
//    the rank's GPU for NCCL (on_device() == true), used on the stream given at
//    creation. The call returns when the result is in `buf` (NCCL: after the
//    stream has been synchronised), so callers may read the buffer immediately.
//  - Results are identical on every rank. The in-process backend sums in rank
//  order 0..N-1 in
//    float64 (float types) or int64 (integers), so results do not depend on
//    thread timing.
//  - Timeout: a collective that does not complete within the timeout given at
//  creation returns
//    DEADLINE_EXCEEDED instead of hanging. The group is then aborted: every
//    later collective on any rank of the group returns ABORTED. A new group
//    must be created to continue.
//  - Thread-safety: one communicator is used by one thread (its rank's thread)
//  at a time.
//    Different ranks' communicators are used concurrently from different
//    threads.
// Ownership: a group object (InProcessGroup, NcclGroup) owns its per-rank
// communicators and the shared rendezvous; it must outlive every use of them.
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
  // Returns when every rank has entered the barrier.
  virtual absl::Status Barrier() = 0;
  // Aborts the whole group from this rank (e.g. after a local failure): ranks
  // blocked in a collective return ABORTED promptly, and every later collective
  // returns ABORTED. Thread-safe; may be called from any thread.
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
