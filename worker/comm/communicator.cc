// In-process communicator backend: ranks are threads of one process that meet
// in a shared rendezvous. Each collective is two generation-counted barriers:
// after the first every rank's buffer pointers are published and each rank
// computes its result from all buffers in rank order; after the second each
// rank writes its own buffer (no rank still reads it).
#include "worker/comm/communicator.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace sweepd::comm {

size_t CommDtypeSize(CommDtype dtype) {
  switch (dtype) {
    case CommDtype::kFloat32:
    case CommDtype::kInt32:
      return 4;
    case CommDtype::kFloat64:
    case CommDtype::kInt64:
      return 8;
    case CommDtype::kBFloat16:
      return 2;
  }
  return 0;
}

const char* CommDtypeName(CommDtype dtype) {
  switch (dtype) {
    case CommDtype::kFloat32:
      return "float32";
    case CommDtype::kFloat64:
      return "float64";
    case CommDtype::kBFloat16:
      return "bfloat16";
    case CommDtype::kInt32:
      return "int32";
    case CommDtype::kInt64:
      return "int64";
  }
  return "?";
}

namespace {

enum class Op { kSum, kMax, kGather, kBroadcast, kBarrier };

const char* OpName(Op op) {
  switch (op) {
    case Op::kSum:
      return "AllReduceSum";
    case Op::kMax:
      return "AllReduceMax";
    case Op::kGather:
      return "AllGather";
    case Op::kBroadcast:
      return "Broadcast";
    case Op::kBarrier:
      return "Barrier";
  }
  return "?";
}

struct Slot {
  Op op = Op::kBarrier;
  size_t count = 0;
  CommDtype dtype = CommDtype::kFloat32;
  int root = 0;
  const void* send = nullptr;
};

float Bf16ToF32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t F32ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

double LoadAsDouble(const void* p, size_t i, CommDtype dtype) {
  switch (dtype) {
    case CommDtype::kFloat32:
      return static_cast<const float*>(p)[i];
    case CommDtype::kFloat64:
      return static_cast<const double*>(p)[i];
    case CommDtype::kBFloat16:
      return Bf16ToF32(static_cast<const uint16_t*>(p)[i]);
    default:
      return 0;
  }
}

void StoreDouble(void* p, size_t i, CommDtype dtype, double v) {
  switch (dtype) {
    case CommDtype::kFloat32:
      static_cast<float*>(p)[i] = static_cast<float>(v);
      break;
    case CommDtype::kFloat64:
      static_cast<double*>(p)[i] = v;
      break;
    case CommDtype::kBFloat16:
      static_cast<uint16_t*>(p)[i] = F32ToBf16(static_cast<float>(v));
      break;
    default:
      break;
  }
}

int64_t LoadInt(const void* p, size_t i, CommDtype dtype) {
  return dtype == CommDtype::kInt32 ? static_cast<const int32_t*>(p)[i]
                                    : static_cast<const int64_t*>(p)[i];
}

void StoreInt(void* p, size_t i, CommDtype dtype, int64_t v) {
  if (dtype == CommDtype::kInt32) {
    static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v);
  } else {
    static_cast<int64_t*>(p)[i] = v;
  }
}

bool IsInt(CommDtype dtype) {
  return dtype == CommDtype::kInt32 || dtype == CommDtype::kInt64;
}

class Rendezvous {
 public:
  Rendezvous(int size, absl::Duration timeout, Clock* clock)
      : size_(size), timeout_(timeout), clock_(clock), slots_(size) {}

  int size() const { return size_; }

  void Abort() {
    absl::MutexLock lock(&mu_);
    aborted_ = true;
  }

  // OK while the group is usable; the ABORTED status of its collectives once a
  // timeout, mismatch or Abort() has ended it.
  absl::Status Health() {
    absl::MutexLock lock(&mu_);
    return aborted_ ? AbortedStatus() : absl::OkStatus();
  }

  // Runs one collective for `rank`: publishes `slot`, waits for all ranks, lets
  // `compute` read every slot (into rank-local scratch), waits again, then
  // calls `finish`.
  template <typename Compute, typename Finish>
  absl::Status Run(int rank, const Slot& slot, Compute compute, Finish finish) {
    {
      absl::MutexLock lock(&mu_);
      if (aborted_) return AbortedStatus();
      slots_[rank] = slot;
    }
    absl::Status s = Barrier(rank, OpName(slot.op));
    if (!s.ok()) return s;
    // Slots are stable between the two barriers.
    for (int r = 0; r < size_; ++r) {
      const Slot& other = slots_[r];
      if (other.op != slot.op || other.count != slot.count ||
          other.dtype != slot.dtype || other.root != slot.root) {
        Abort();
        return absl::InternalError(absl::StrCat(
            "collective mismatch: rank ", rank, " issued ", OpName(slot.op),
            "(count=", slot.count, ", dtype=", CommDtypeName(slot.dtype),
            ") while rank ", r, " issued ", OpName(other.op), "(count=",
            other.count, ", dtype=", CommDtypeName(other.dtype), ")"));
      }
    }
    compute(slots_);
    s = Barrier(rank, OpName(slot.op));
    if (!s.ok()) return s;
    finish();
    return absl::OkStatus();
  }

 private:
  absl::Status AbortedStatus() const {
    return absl::AbortedError(
        "in-process communicator group aborted after an earlier timeout or "
        "mismatch; create a "
        "new group");
  }

  absl::Status Barrier(int rank, const char* what) {
    absl::MutexLock lock(&mu_);
    if (aborted_) return AbortedStatus();
    const uint64_t my_generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      return absl::OkStatus();
    }
    const int64_t deadline_ms =
        clock_->NowMs() + absl::ToInt64Milliseconds(timeout_);
    auto released = [this, my_generation]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return generation_ != my_generation || aborted_;
    };
    // Poll in short slices so an injected (fake) clock decides when the
    // deadline has passed.
    while (!mu_.AwaitWithTimeout(absl::Condition(&released),
                                 absl::Milliseconds(5))) {
      if (clock_->NowMs() >= deadline_ms) {
        aborted_ = true;
        return absl::DeadlineExceededError(
            absl::StrCat(what, " on rank ", rank, " of ", size_, ": only ",
                         arrived_, " of ", size_, " ranks arrived within ",
                         absl::FormatDuration(timeout_), "; group aborted"));
      }
    }
    if (generation_ == my_generation) return AbortedStatus();
    return absl::OkStatus();
  }

  const int size_;
  const absl::Duration timeout_;
  Clock* const clock_;
  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  // Written by its own rank before the first barrier of a collective, read by
  // all ranks between the two barriers (the barriers order the accesses).
  std::vector<Slot> slots_;
};

class InProcessCommunicator : public Communicator {
 public:
  InProcessCommunicator(Rendezvous* rv, int rank) : rv_(rv), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return rv_->size(); }
  bool on_device() const override { return false; }

  absl::Status AllReduceSum(void* buf, size_t count, CommDtype dtype) override {
    return Reduce(Op::kSum, buf, count, dtype);
  }
  absl::Status AllReduceMax(void* buf, size_t count, CommDtype dtype) override {
    return Reduce(Op::kMax, buf, count, dtype);
  }

  absl::Status AllGather(const void* send, void* recv, size_t count,
                         CommDtype dtype) override {
    const size_t bytes = count * CommDtypeSize(dtype);
    std::vector<uint8_t> scratch(bytes * size());
    Slot slot{Op::kGather, count, dtype, 0, send};
    return rv_->Run(
        rank_, slot,
        [&](const std::vector<Slot>& slots) {
          for (int r = 0; r < size(); ++r) {
            if (bytes > 0)
              std::memcpy(scratch.data() + r * bytes, slots[r].send, bytes);
          }
        },
        [&] {
          if (!scratch.empty())
            std::memcpy(recv, scratch.data(), scratch.size());
        });
  }

  absl::Status Broadcast(void* buf, size_t count, CommDtype dtype,
                         int root) override {
    if (root < 0 || root >= size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Broadcast root ", root, " outside [0, ", size(), ")"));
    }
    const size_t bytes = count * CommDtypeSize(dtype);
    std::vector<uint8_t> scratch(bytes);
    Slot slot{Op::kBroadcast, count, dtype, root, buf};
    return rv_->Run(
        rank_, slot,
        [&](const std::vector<Slot>& slots) {
          if (bytes > 0) std::memcpy(scratch.data(), slots[root].send, bytes);
        },
        [&] {
          if (bytes > 0) std::memcpy(buf, scratch.data(), bytes);
        });
  }

  void Abort() override { rv_->Abort(); }

  // Every collective of this backend has completed when its call returned.
  absl::Status Synchronize() override { return rv_->Health(); }

  absl::Status Barrier() override {
    Slot slot{Op::kBarrier, 0, CommDtype::kFloat32, 0, nullptr};
    return rv_->Run(
        rank_, slot, [](const std::vector<Slot>&) {}, [] {});
  }

 private:
  absl::Status Reduce(Op op, void* buf, size_t count, CommDtype dtype) {
    std::vector<uint8_t> scratch(count * CommDtypeSize(dtype));
    Slot slot{op, count, dtype, 0, buf};
    return rv_->Run(
        rank_, slot,
        [&](const std::vector<Slot>& slots) {
          for (size_t i = 0; i < count; ++i) {
            if (IsInt(dtype)) {
              int64_t acc = LoadInt(slots[0].send, i, dtype);
              for (size_t r = 1; r < slots.size(); ++r) {
                const int64_t v = LoadInt(slots[r].send, i, dtype);
                acc = op == Op::kSum ? acc + v : std::max(acc, v);
              }
              StoreInt(scratch.data(), i, dtype, acc);
            } else {
              double acc = LoadAsDouble(slots[0].send, i, dtype);
              for (size_t r = 1; r < slots.size(); ++r) {
                const double v = LoadAsDouble(slots[r].send, i, dtype);
                acc = op == Op::kSum ? acc + v : std::max(acc, v);
              }
              StoreDouble(scratch.data(), i, dtype, acc);
            }
          }
        },
        [&] {
          if (!scratch.empty())
            std::memcpy(buf, scratch.data(), scratch.size());
        });
  }

  Rendezvous* const rv_;
  const int rank_;
};

class InProcessGroupImpl : public InProcessGroup {
 public:
  InProcessGroupImpl(int size, absl::Duration timeout, Clock* clock)
      : rv_(size, timeout, clock) {
    for (int r = 0; r < size; ++r)
      ranks_.push_back(std::make_unique<InProcessCommunicator>(&rv_, r));
  }
  int size() const override { return rv_.size(); }
  Communicator* rank(int r) override { return ranks_.at(r).get(); }

 private:
  Rendezvous rv_;
  std::vector<std::unique_ptr<InProcessCommunicator>> ranks_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<InProcessGroup>> InProcessGroup::Create(
    int size, absl::Duration timeout, Clock* clock) {
  if (size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("communicator group size must be >= 1, got ", size));
  }
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("communicator timeout must be positive");
  }
  return std::unique_ptr<InProcessGroup>(new InProcessGroupImpl(
      size, timeout, clock == nullptr ? Clock::Real() : clock));
}

}  // namespace sweepd::comm
