// Internal to sweepd::engine: the tensor-parallel collectives of a rank's
// forward on ATen tensors, over a comm::Communicator (docs/ENGINE.md,
// "Tensor-parallel contract"). Every rank issues the same collectives in the
// same order; a failed collective throws CommFailure, which the rank's edge
// (EngineImpl::Forward) turns back into the Status. Device communicators
// (NCCL) are stream-ordered: the call enqueues on the rank's stream and
// returns; the in-process host backend returns with the result in place.
// Stateless; thread-safe as the communicator is.
#ifndef SWEEPD_WORKER_ENGINE_TP_OPS_H_
#define SWEEPD_WORKER_ENGINE_TP_OPS_H_

#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "worker/comm/communicator.h"

namespace sweepd::engine::internal {

// A failed collective inside rank code; unwound to the rank's edge and
// returned as Status.
struct CommFailure {
  absl::Status status;
};

// In-place collectives on contiguous tensors of the rank's device.
void AllReduceSum(comm::Communicator* c, at::Tensor& t);
void AllReduceMax(comm::Communicator* c, at::Tensor& t);

// Concatenation over ranks along a new leading dim: [size, ...t.shape].
at::Tensor AllGather(comm::Communicator* c, const at::Tensor& t);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_TP_OPS_H_
