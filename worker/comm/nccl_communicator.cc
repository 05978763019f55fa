// NCCL backend; see nccl_communicator.h for the contract.
#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace sweepd::comm {
namespace {

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
                   cudaStream_t stream, cudaEvent_t done,
                   absl::Duration timeout)
      : comm_(comm),
        rank_(rank),
        size_(size),
        device_(device),
        stream_(stream),
        done_(done),
        timeout_(timeout) {}

  ~NcclCommunicator() override {
    cudaSetDevice(device_);
    if (!aborted_) {
      ncclCommDestroy(comm_);
    }
    cudaEventDestroy(done_);
    if (barrier_buf_ != nullptr) cudaFree(barrier_buf_);
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
    if (aborted_) return Aborted();
    auto nd = ToNccl(dtype);
    if (!nd.ok()) return nd.status();
    cudaSetDevice(device_);
    ncclResult_t res = ncclAllGather(send, recv, count, *nd, comm_, stream_);
    if (res != ncclSuccess) return NcclError(res, "ncclAllGather");
    return Wait("AllGather");
  }

  absl::Status Broadcast(void* buf, size_t count, CommDtype dtype,
                         int root) override {
    if (aborted_) return Aborted();
    if (root < 0 || root >= size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("Broadcast root ", root, " outside [0, ", size_, ")"));
    }
    auto nd = ToNccl(dtype);
    if (!nd.ok()) return nd.status();
    cudaSetDevice(device_);
    ncclResult_t res =
        ncclBroadcast(buf, buf, count, *nd, root, comm_, stream_);
    if (res != ncclSuccess) return NcclError(res, "ncclBroadcast");
    return Wait("Broadcast");
  }

  void Abort() override {
    if (!aborted_) AbortComm();
  }

  absl::Status Barrier() override {
    // A one-element all-reduce on a private device buffer is a barrier for the
    // stream order.
    if (aborted_) return Aborted();
    cudaSetDevice(device_);
    if (barrier_buf_ == nullptr) {
      cudaError_t err = cudaMalloc(&barrier_buf_, sizeof(float));
      if (err != cudaSuccess) return CudaError(err, "cudaMalloc(barrier)");
    }
    ncclResult_t res = ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32,
                                     ncclSum, comm_, stream_);
    if (res != ncclSuccess) return NcclError(res, "ncclAllReduce(barrier)");
    return Wait("Barrier");
  }

 private:
  absl::Status Aborted() const {
    return absl::AbortedError(
        "NCCL communicator aborted after an earlier timeout or error; create a "
        "new one");
  }

  absl::Status Reduce(void* buf, size_t count, CommDtype dtype, ncclRedOp_t op,
                      const char* what) {
    if (aborted_) return Aborted();
    auto nd = ToNccl(dtype);
    if (!nd.ok()) return nd.status();
    cudaSetDevice(device_);
    ncclResult_t res = ncclAllReduce(buf, buf, count, *nd, op, comm_, stream_);
    if (res != ncclSuccess) return NcclError(res, what);
    return Wait(what);
  }

  // The watchdog: polls the completion event and NCCL's async error until the
  // deadline. The first kSpin of waiting yields instead of sleeping: the
  // engine waits after every all-reduce, and a 50 µs sleep granularity would
  // leave the GPU idle that long each time.
  absl::Status Wait(const char* what) {
    cudaError_t err = cudaEventRecord(done_, stream_);
    if (err != cudaSuccess) return CudaError(err, "cudaEventRecord");
    const auto start = std::chrono::steady_clock::now();
    const auto limit = absl::ToChronoNanoseconds(timeout_);
    constexpr auto kSpin = std::chrono::milliseconds(20);
    while (true) {
      err = cudaEventQuery(done_);
      if (err == cudaSuccess) return absl::OkStatus();
      if (err != cudaErrorNotReady) return CudaError(err, what);
      ncclResult_t async_err = ncclSuccess;
      ncclResult_t res = ncclCommGetAsyncError(comm_, &async_err);
      if (res != ncclSuccess || async_err != ncclSuccess) {
        AbortComm();
        return NcclError(
            res != ncclSuccess ? res : async_err,
            absl::StrCat(what, " (async error, communicator aborted)").c_str());
      }
      if (std::chrono::steady_clock::now() - start > limit) {
        AbortComm();
        return absl::DeadlineExceededError(absl::StrCat(
            what, " on rank ", rank_, " of ", size_,
            " did not complete within ", absl::FormatDuration(timeout_),
            "; NCCL communicator aborted"));
      }
      if (std::chrono::steady_clock::now() - start < kSpin) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }

  void AbortComm() {
    ncclCommAbort(comm_);
    aborted_ = true;
  }

  ncclComm_t comm_;
  const int rank_;
  const int size_;
  const int device_;
  cudaStream_t stream_;
  cudaEvent_t done_;
  const absl::Duration timeout_;
  std::atomic<bool> aborted_{false};
  void* barrier_buf_ = nullptr;
};

}  // namespace

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
  std::memcpy(id.internal, unique_id.data(), sizeof(id.internal));
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return CudaError(err, "cudaSetDevice");
  ncclComm_t comm;
  ncclResult_t res = ncclCommInitRank(&comm, size, id, rank);
  if (res != ncclSuccess) return NcclError(res, "ncclCommInitRank");
  cudaEvent_t done;
  err = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
  if (err != cudaSuccess) {
    ncclCommDestroy(comm);
    return CudaError(err, "cudaEventCreate");
  }
  return std::unique_ptr<Communicator>(
      new NcclCommunicator(comm, rank, size, device,
                           static_cast<cudaStream_t>(stream), done, timeout));
}

}  // namespace sweepd::comm
