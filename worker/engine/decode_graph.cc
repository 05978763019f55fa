#include "worker/engine/decode_graph.h"

#include <exception>
#include <utility>

#include "common/logging.h"

#if SWEEPD_ENGINE_TORCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace sweepd::engine::internal {

#if SWEEPD_ENGINE_TORCH_CUDA

struct DecodeGraphs::Impl {
  explicit Impl(at::Device device)
      : stream(c10::cuda::getStreamFromPool(/*isHighPriority=*/false,
                                            device.index())) {}
  c10::cuda::CUDAStream stream;
  struct Captured {
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    at::Tensor out;
  };
  std::map<int, Captured> graphs;
};

namespace {

class CudaStepStream : public DecodeGraphs::StepStream {
 public:
  CudaStepStream(at::Device device, c10::cuda::CUDAStream side)
      : prev_(c10::cuda::getCurrentCUDAStream(device.index())), side_(side) {
    at::cuda::CUDAEvent before;
    before.record(prev_);
    before.block(side_);
    c10::cuda::setCurrentCUDAStream(side_);
  }
  ~CudaStepStream() override {
    at::cuda::CUDAEvent after;
    after.record(side_);
    after.block(prev_);
    c10::cuda::setCurrentCUDAStream(prev_);
  }

 private:
  c10::cuda::CUDAStream prev_, side_;
};

}  // namespace

bool DecodeGraphs::Available() { return true; }

#else

struct DecodeGraphs::Impl {
  explicit Impl(at::Device) {}
};

bool DecodeGraphs::Available() { return false; }

#endif

DecodeGraphs::DecodeGraphs(at::Device device, at::ScalarType dtype,
                           int64_t hidden, std::vector<int64_t> max_pages,
                           int max_rows)
    : device_(device),
      dtype_(dtype),
      hidden_(hidden),
      max_pages_(std::move(max_pages)),
      max_rows_(max_rows),
      impl_(std::make_unique<Impl>(device)) {}

DecodeGraphs::~DecodeGraphs() = default;

int DecodeGraphs::Bucket(int64_t rows) const {
  if (rows < 1 || rows > max_rows_) return 0;
  int b = 1;
  while (b < rows) b *= 2;
  return b < max_rows_ ? b : max_rows_;
}

DecodeGraphs::Buffers& DecodeGraphs::buffers(int bucket) {
  auto it = buffers_.find(bucket);
  if (it != buffers_.end()) return it->second;
  Buffers b;
  auto lopts = at::TensorOptions().dtype(at::kLong).device(device_);
  b.h_in = at::zeros({1, bucket, hidden_},
                     at::TensorOptions().dtype(dtype_).device(device_));
  b.positions = at::full({bucket}, -1, lopts);
  for (int64_t pages : max_pages_) {
    b.write_rows.push_back(at::arange(bucket, lopts));
    b.write_slots.push_back(at::zeros({bucket}, lopts));
    b.pages.push_back(at::zeros({bucket, pages}, lopts));
    b.first_pos.push_back(at::zeros({bucket}, lopts));
  }
  return buffers_.emplace(bucket, std::move(b)).first->second;
}

std::unique_ptr<DecodeGraphs::StepStream> DecodeGraphs::EnterStep() {
#if SWEEPD_ENGINE_TORCH_CUDA
  return std::make_unique<CudaStepStream>(device_, impl_->stream);
#else
  return std::make_unique<StepStream>();
#endif
}

void DecodeGraphs::Reset() {
#if SWEEPD_ENGINE_TORCH_CUDA
  impl_->graphs.clear();
#endif
}

at::Tensor DecodeGraphs::Run(int bucket, const Layers& layers) {
  Buffers& buf = buffers(bucket);
#if SWEEPD_ENGINE_TORCH_CUDA
  if (!broken_) {
    Impl::Captured& c = impl_->graphs[bucket];
    if (c.graph == nullptr) {
      // Warm-up: GEMM autotuning, handles and allocations happen here, not
      // inside the capture. The step's cache writes are idempotent (the
      // replay writes the same values to the same slots).
      (void)layers(buf.h_in);
      auto graph = std::make_unique<at::cuda::CUDAGraph>();
      try {
        // Thread-local mode: only this thread's unsafe CUDA calls end the
        // capture, not those of other threads (an NCCL watchdog's event
        // queries, another engine's work).
        graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
        at::Tensor out = layers(buf.h_in);
        graph->capture_end();
        c.graph = std::move(graph);
        c.out = std::move(out);
      } catch (const std::exception& e) {
        // End the stream's capture (capture_end of an invalidated capture
        // throws too) and go on eagerly.
        try {
          graph->capture_end();
        } catch (const std::exception&) {
        }
        graph.reset();
        impl_->graphs.erase(bucket);
        broken_ = true;
        SWEEPD_LOG(WARNING)
            << "decode CUDA graph capture of " << bucket
            << " rows failed, decoding without graphs: " << e.what();
        return layers(buf.h_in);
      }
    }
    c.graph->replay();
    return c.out;
  }
#endif
  return layers(buf.h_in);
}

}  // namespace sweepd::engine::internal
