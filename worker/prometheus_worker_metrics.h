// PrometheusWorkerMetrics: the WorkerMetrics (worker/jobs/worker_metrics.h) of
// sweep-worker, kept in a prometheus-cpp registry and served at `/metrics` by
// a MetricsEndpoint (`sweep-worker --metrics-listen HOST:PORT`). Names (see
// docs/OBSERVABILITY.md); generation ones are modelled on vLLM's
// (`vllm:generation_tokens_total` -> `sweepd_worker:generation_tokens_total`)
// with the same `model_name` label, so dashboards written for vLLM map over:
//
//   sweepd_worker:tasks_done_total{kind}                 counter
//   sweepd_worker:tasks_failed_total{kind,permanent}     counter
//   sweepd_worker:task_seconds{kind}                     histogram
//   sweepd_worker:layer_forwards_total                   counter
//   sweepd_worker:forward_seconds                        histogram
//   sweepd_worker:prompt_tokens_total{model_name}        counter
//   sweepd_worker:generation_tokens_total{model_name}    counter
//   sweepd_worker:time_to_first_token_seconds{model_name} histogram
//   sweepd_worker:inter_token_latency_seconds{model_name} histogram
//   sweepd_worker:e2e_request_latency_seconds{model_name} histogram
//   sweepd_worker:drains_total                           counter
//   sweepd_worker:num_preemptions_total                  counter (tasks
//   released unfinished) sweepd_worker:gpu_memory_used_bytes{device} gauge at
//   scrape, from the provider
//                                                        (absent on CPU)
//
// Ownership: owns its registry and collectors; collectables() shares them with
// the endpoint. Thread-safety: thread-safe; the GPU memory provider is called
// on the scraping thread.
#ifndef SWEEPD_WORKER_PROMETHEUS_WORKER_METRICS_H_
#define SWEEPD_WORKER_PROMETHEUS_WORKER_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "worker/jobs/worker_metrics.h"

namespace prometheus {
class Collectable;
}  // namespace prometheus

namespace sweepd {

// Bytes of device memory in use, one entry per device (index = device);
// empty or negative entries = unknown (no sample).
using GpuMemoryProvider = std::function<std::vector<int64_t>()>;

struct PrometheusWorkerMetricsOptions {
  // The `model_name` label of the generation metrics (vLLM's); e.g. the
  // --model directory's name. Empty = "none".
  std::string model_name;
  // Null = no GPU memory samples (CPU workers).
  GpuMemoryProvider gpu_memory;
};

class PrometheusWorkerMetrics : public WorkerMetrics {
 public:
  static std::unique_ptr<PrometheusWorkerMetrics> Create(
      const PrometheusWorkerMetricsOptions& options);
  // What a MetricsEndpoint serves.
  virtual std::vector<std::shared_ptr<prometheus::Collectable>>
  collectables() = 0;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_PROMETHEUS_WORKER_METRICS_H_
