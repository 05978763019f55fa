#include "worker/engine/tp_ops.h"

#include <cstdint>
#include <vector>

#include "common/logging.h"

namespace sweepd::engine::internal {
namespace {

comm::CommDtype ToCommDtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return comm::CommDtype::kFloat32;
    case at::kDouble:
      return comm::CommDtype::kFloat64;
    case at::kBFloat16:
      return comm::CommDtype::kBFloat16;
    case at::kInt:
      return comm::CommDtype::kInt32;
    default:
      return comm::CommDtype::kInt64;
  }
}

// True where a collective is the identity and is not issued: one rank, on
// any backend. At TP 1 on CUDA this keeps NCCL (its stream and its watchdog's
// event queries) out of the decode step, which a CUDA graph captures
// (decode_graph.h); the NCCL path itself is tested at TP >= 2 and in
// tests/comm.
bool SkipCollective(const comm::Communicator* c) { return c->size() == 1; }

}  // namespace

void AllReduceSum(comm::Communicator* c, at::Tensor& t) {
  if (SkipCollective(c)) return;
  SWEEPD_CHECK(t.is_contiguous());
  absl::Status s =
      c->AllReduceSum(t.data_ptr(), t.numel(), ToCommDtype(t.scalar_type()));
  if (!s.ok()) throw CommFailure{s};
}

void AllReduceMax(comm::Communicator* c, at::Tensor& t) {
  if (SkipCollective(c)) return;
  SWEEPD_CHECK(t.is_contiguous());
  absl::Status s =
      c->AllReduceMax(t.data_ptr(), t.numel(), ToCommDtype(t.scalar_type()));
  if (!s.ok()) throw CommFailure{s};
}

at::Tensor AllGather(comm::Communicator* c, const at::Tensor& t) {
  at::Tensor src = t.contiguous();
  if (SkipCollective(c)) return src.unsqueeze(0);
  std::vector<int64_t> shape = {c->size()};
  for (int64_t d : src.sizes()) shape.push_back(d);
  at::Tensor out = at::empty(shape, src.options());
  absl::Status s = c->AllGather(src.data_ptr(), out.data_ptr(), src.numel(),
                                ToCommDtype(src.scalar_type()));
  if (!s.ok()) throw CommFailure{s};
  return out;
}

}  // namespace sweepd::engine::internal
