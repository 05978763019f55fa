// NCCL backend; see nccl_communicator.h for the contract.
//
// Locking: `mu_` guards the pending FIFO, the event free list and the error
// state; `comm_mu_` serialises every call that uses comm_ (enqueue, async
// error query, abort) so that ncclCommAbort never runs concurrently with
// another call on the same communicator. Lock order: comm_mu_ before mu_.
// Only the watchdog thread removes entries from the pending FIFO (when their
// event has completed, or all of them once the communicator has failed).
#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace sweepd::comm {
namespace {

using SteadyClock = std::chrono::steady_clock;

// After work arrives on an empty queue, or when a Synchronize() caller starts
// waiting, the watchdog re-polls with yields for this long, then every
// kPollPeriod (a timed condition-variable wait that new work cuts short).
constexpr auto kSpinWindow = std::chrono::milliseconds(1);
const absl::Duration kPollPeriod = absl::Microseconds(100);

absl::Status CudaError(cudaError_t err, const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(err)));
}

absl::Status NcclError(ncclResult_t res, const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", ncclGetErrorString(res)));
}

absl::StatusOr<ncclDataType_t> ToNccl(CommDtype dtype) {
  switch (dtype) {
    case CommDtype::kFloat32:
      return ncclFloat32;
    case CommDtype::kFloat64:
      return ncclFloat64;
    case CommDtype::kBFloat16:
      return ncclBfloat16;
    case CommDtype::kInt32:
      return ncclInt32;
    case CommDtype::kInt64:
      return ncclInt64;
  }
  return absl::InvalidArgumentError("unsupported communicator dtype");
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, int device,
                   cudaStream_t stream, absl::Duration timeout)
      : comm_(comm),
        rank_(rank),
        size_(size),
        device_(device),
        stream_(stream),
        timeout_(timeout),
        timeout_chrono_(absl::ToChronoNanoseconds(timeout)) {}

  ~NcclCommunicator() override {
    // Nothing may still run on the stream against comm_ or the barrier buffer
    // when they are released; bounded by the watchdog's timeout.
    Synchronize().IgnoreError();
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      cv_.SignalAll();
    }
    if (watchdog_.joinable()) watchdog_.join();
    cudaSetDevice(device_);
    absl::MutexLock lock(&mu_);
    // A failed communicator was aborted (ncclCommAbort frees it); destroying
    // it as well would free it twice.
    if (error_.ok()) ncclCommDestroy(comm_);
    for (const Pending& p : pending_) cudaEventDestroy(p.event);
    for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
    if (barrier_buf_ != nullptr) cudaFree(barrier_buf_);
  }

  void StartWatchdog() {
    watchdog_ = std::thread([this] { WatchdogLoop(); });
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool on_device() const override { return true; }

  absl::Status AllReduceSum(void* buf, size_t count, CommDtype dtype) override {
    return Reduce(buf, count, dtype, ncclSum, "AllReduceSum");
  }
  absl::Status AllReduceMax(void* buf, size_t count, CommDtype dtype) override {
    return Reduce(buf, count, dtype, ncclMax, "AllReduceMax");
  }

  absl::Status AllGather(const void* send, void* recv, size_t count,
                         CommDtype dtype) override {
    absl::StatusOr<ncclDataType_t> nd = ToNccl(dtype);
    if (!nd.ok()) return nd.status();
    return Enqueue("AllGather", "ncclAllGather", [&] {
      return ncclAllGather(send, recv, count, *nd, comm_, stream_);
    });
  }

  absl::Status Broadcast(void* buf, size_t count, CommDtype dtype,
                         int root) override {
    if (root < 0 || root >= size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("Broadcast root ", root, " outside [0, ", size_, ")"));
    }
    absl::StatusOr<ncclDataType_t> nd = ToNccl(dtype);
    if (!nd.ok()) return nd.status();
    return Enqueue("Broadcast", "ncclBroadcast", [&] {
      return ncclBroadcast(buf, buf, count, *nd, root, comm_, stream_);
    });
  }

  absl::Status Barrier() override {
    // A one-element all-reduce on a private device buffer: once it has
    // completed on this rank, every rank has issued it.
    if (barrier_buf_ == nullptr) {
      cudaError_t err = cudaSetDevice(device_);
      if (err != cudaSuccess) return CudaError(err, "cudaSetDevice");
      err = cudaMalloc(&barrier_buf_, sizeof(float));
      if (err != cudaSuccess) return CudaError(err, "cudaMalloc(barrier)");
    }
    absl::Status s = Enqueue("Barrier", "ncclAllReduce", [&] {
      return ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum,
                           comm_, stream_);
    });
    if (!s.ok()) return s;
    return Synchronize();
  }

  absl::Status Synchronize() override {
    absl::MutexLock lock(&mu_);
    const uint64_t target = issued_;
    if (completed_ >= target || !error_.ok()) return error_;
    // Collectives complete in stream order: when the newest one has, all have
    // (the watchdog pops their entries on its next poll).
    if (cudaEventQuery(pending_.back().event) == cudaSuccess) return error_;
    spin_until_ = SteadyClock::now() + kSpinWindow;
    cv_.SignalAll();
    while (completed_ < target && error_.ok()) cv_.Wait(&mu_);
    return error_;
  }

  void Abort() override {
    const std::string cause =
        absl::StrCat("Abort() called on rank ", rank_, " of ", size_);
    Fail(absl::AbortedError(absl::StrCat(cause, "; NCCL communicator aborted")),
         cause);
  }

 private:
  // One collective on the stream, not yet seen complete by the watchdog.
  struct Pending {
    cudaEvent_t event;
    const char* what;
    SteadyClock::time_point issued;
    uint64_t seq;
  };

  absl::Status Reduce(void* buf, size_t count, CommDtype dtype, ncclRedOp_t op,
                      const char* what) {
    absl::StatusOr<ncclDataType_t> nd = ToNccl(dtype);
    if (!nd.ok()) return nd.status();
    return Enqueue(what, "ncclAllReduce", [&] {
      return ncclAllReduce(buf, buf, count, *nd, op, comm_, stream_);
    });
  }

  std::string Describe(const char* what) const {
    return absl::StrCat(what, " on rank ", rank_, " of ", size_);
  }

  // ABORTED naming the cause once the communicator has failed, else OK.
  absl::Status HealthLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (error_.ok()) return absl::OkStatus();
    return absl::AbortedError(absl::StrCat(
        "NCCL communicator aborted: ", cause_, "; create a new one"));
  }
  absl::Status Health() {
    absl::MutexLock lock(&mu_);
    return HealthLocked();
  }

  absl::StatusOr<cudaEvent_t> TakeEvent() {
    {
      absl::MutexLock lock(&mu_);
      if (!free_events_.empty()) {
        cudaEvent_t e = free_events_.back();
        free_events_.pop_back();
        return e;
      }
    }
    cudaEvent_t e;
    cudaError_t err = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
    if (err != cudaSuccess) return CudaError(err, "cudaEventCreate");
    return e;
  }

  void ReturnEvent(cudaEvent_t e) {
    absl::MutexLock lock(&mu_);
    free_events_.push_back(e);
  }

  // Enqueues one collective (`launch` calls NCCL on comm_ and stream_), then
  // records its completion event and hands it to the watchdog.
  template <typename Launch>
  absl::Status Enqueue(const char* what, const char* nccl_call, Launch launch) {
    absl::Status health = Health();
    if (!health.ok()) return health;
    cudaError_t err = cudaSetDevice(device_);
    if (err != cudaSuccess) return CudaError(err, "cudaSetDevice");
    absl::StatusOr<cudaEvent_t> event = TakeEvent();
    if (!event.ok()) return event.status();
    {
      absl::MutexLock comm_lock(&comm_mu_);
      health = Health();  // the communicator may have failed meanwhile
      if (!health.ok()) {
        ReturnEvent(*event);
        return health;
      }
      const ncclResult_t res = launch();
      if (res != ncclSuccess) {
        ReturnEvent(*event);
        return NcclError(res,
                         absl::StrCat(Describe(what), ": ", nccl_call).c_str());
      }
      err = cudaEventRecord(*event, stream_);
      if (err == cudaSuccess) {
        absl::MutexLock lock(&mu_);
        const auto now = SteadyClock::now();
        if (pending_.empty()) {
          spin_until_ = now + kSpinWindow;
          cv_.SignalAll();
        }
        pending_.push_back(Pending{*event, what, now, ++issued_});
        return absl::OkStatus();
      }
    }
    // The collective is on the stream but cannot be watched: end the
    // communicator rather than leave a collective without a timeout.
    ReturnEvent(*event);
    const std::string cause =
        absl::StrCat(Describe(what), ": cudaEventRecord after ", nccl_call,
                     " failed: ", cudaGetErrorString(err));
    absl::Status failure =
        absl::InternalError(absl::StrCat(cause, "; NCCL communicator aborted"));
    Fail(failure, cause);
    return failure;
  }

  // Records the first failure, wakes Synchronize() callers and aborts comm_
  // (once). Later failures are ignored: the first one is the cause.
  void Fail(absl::Status status, std::string cause) {
    {
      absl::MutexLock lock(&mu_);
      if (!error_.ok()) return;
      error_ = std::move(status);
      cause_ = std::move(cause);
      cv_.SignalAll();
    }
    // Outside mu_: NCCL may wait here for the stream to drain, and waiters
    // and later calls must see the error meanwhile.
    absl::MutexLock comm_lock(&comm_mu_);
    int previous = -1;
    const bool restore = cudaGetDevice(&previous) == cudaSuccess;
    cudaSetDevice(device_);
    ncclCommAbort(comm_);
    comm_aborted_ = true;
    if (restore) cudaSetDevice(previous);
  }

  void DropPendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // The events may still be recorded on the stream; they are re-recorded
    // only by new collectives, which a failed communicator refuses.
    for (const Pending& p : pending_) free_events_.push_back(p.event);
    pending_.clear();
  }

  // Not-ready head entry: OK while it may still complete, else the failure
  // (status, cause) to end the communicator with.
  absl::Status CheckStuck(const Pending& head, std::string* cause) {
    {
      absl::MutexLock comm_lock(&comm_mu_);
      if (!comm_aborted_) {
        ncclResult_t async_err = ncclSuccess;
        const ncclResult_t res = ncclCommGetAsyncError(comm_, &async_err);
        if (res != ncclSuccess) {
          *cause = absl::StrCat(
              Describe(head.what),
              ": ncclCommGetAsyncError: ", ncclGetErrorString(res));
          return absl::InternalError(
              absl::StrCat(*cause, "; NCCL communicator aborted"));
        }
        if (async_err != ncclSuccess && async_err != ncclInProgress) {
          *cause = absl::StrCat(
              Describe(head.what),
              ": NCCL asynchronous error: ", ncclGetErrorString(async_err));
          return absl::InternalError(
              absl::StrCat(*cause, "; NCCL communicator aborted"));
        }
      }
    }
    if (SteadyClock::now() - head.issued > timeout_chrono_) {
      *cause = absl::StrCat(Describe(head.what), " did not complete within ",
                            absl::FormatDuration(timeout_));
      return absl::DeadlineExceededError(
          absl::StrCat(*cause, "; NCCL communicator aborted"));
    }
    return absl::OkStatus();
  }

  void WatchdogLoop() {
    cudaSetDevice(device_);
    mu_.Lock();
    while (true) {
      if (!error_.ok()) DropPendingLocked();
      if (stop_) break;
      if (pending_.empty()) {
        cv_.Wait(&mu_);
        continue;
      }
      const Pending head = pending_.front();
      const cudaError_t query = cudaEventQuery(head.event);
      if (query == cudaSuccess) {
        free_events_.push_back(head.event);
        pending_.pop_front();
        completed_ = head.seq;
        cv_.SignalAll();
        continue;
      }
      mu_.Unlock();
      std::string cause;
      absl::Status failure;
      if (query != cudaErrorNotReady) {
        cause = absl::StrCat(Describe(head.what),
                             ": cudaEventQuery: ", cudaGetErrorString(query));
        failure = absl::InternalError(
            absl::StrCat(cause, "; NCCL communicator aborted"));
      } else {
        failure = CheckStuck(head, &cause);
      }
      if (!failure.ok()) Fail(failure, cause);
      mu_.Lock();
      if (!failure.ok()) continue;
      if (SteadyClock::now() < spin_until_) {
        mu_.Unlock();
        std::this_thread::yield();
        mu_.Lock();
      } else {
        cv_.WaitWithTimeout(&mu_, kPollPeriod);
      }
    }
    mu_.Unlock();
  }

  ncclComm_t comm_;
  const int rank_;
  const int size_;
  const int device_;
  cudaStream_t stream_;
  const absl::Duration timeout_;
  const std::chrono::nanoseconds timeout_chrono_;
  // Used only by the rank's thread (Barrier).
  void* barrier_buf_ = nullptr;
  std::thread watchdog_;

  absl::Mutex comm_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  bool comm_aborted_ ABSL_GUARDED_BY(comm_mu_) = false;

  absl::Mutex mu_;
  absl::CondVar cv_;  // pending work, completions, failure, stop
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<cudaEvent_t> free_events_ ABSL_GUARDED_BY(mu_);
  uint64_t issued_ ABSL_GUARDED_BY(mu_) = 0;     // seq of the newest entry
  uint64_t completed_ ABSL_GUARDED_BY(mu_) = 0;  // seq of the last popped
  SteadyClock::time_point spin_until_ ABSL_GUARDED_BY(mu_);
  // The first failure (OK while healthy) and its cause for ABORTED messages.
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::string cause_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

std::string NcclLibraryVersion() {
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "";
  // NCCL_VERSION_CODE: major * 10000 + minor * 100 + patch (>= 2.9).
  return absl::StrCat(code / 10000, ".", (code % 10000) / 100, ".", code % 100);
}

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  ncclResult_t res = ncclGetUniqueId(&id);
  if (res != ncclSuccess) return NcclError(res, "ncclGetUniqueId");
  return std::string(id.internal, sizeof(id.internal));
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(
    const std::string& unique_id, int rank, int size, int device, void* stream,
    absl::Duration timeout) {
  ncclUniqueId id;
  if (unique_id.size() != sizeof(id.internal)) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL unique id must be ", sizeof(id.internal),
                     " bytes, got ", unique_id.size()));
  }
  if (rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " outside [0, ", size, ")"));
  }
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL communicator timeout must be positive, got ",
                     absl::FormatDuration(timeout)));
  }
  std::memcpy(id.internal, unique_id.data(), sizeof(id.internal));
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return CudaError(err, "cudaSetDevice");
  ncclComm_t comm;
  ncclResult_t res = ncclCommInitRank(&comm, size, id, rank);
  if (res != ncclSuccess) return NcclError(res, "ncclCommInitRank");
  auto c = std::make_unique<NcclCommunicator>(
      comm, rank, size, device, static_cast<cudaStream_t>(stream), timeout);
  c->StartWatchdog();
  return std::unique_ptr<Communicator>(std::move(c));
}

}  // namespace sweepd::comm
