// PrometheusWorkerMetrics. See prometheus_worker_metrics.h.
#include "worker/prometheus_worker_metrics.h"

#include <utility>

#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace sweepd {
namespace {

using prometheus::Histogram;

// Seconds, from sub-millisecond token latencies to minute-long tasks.
Histogram::BucketBoundaries SecondsBuckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
          0.75,  1.0,   2.5,  5.0,  7.5,  10,   20,   40,  80,   160};
}

class GpuMemoryCollector : public prometheus::Collectable {
 public:
  explicit GpuMemoryCollector(GpuMemoryProvider provider)
      : provider_(std::move(provider)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    if (!provider_) return {};
    prometheus::MetricFamily f;
    f.name = "sweepd_worker:gpu_memory_used_bytes";
    f.help = "Device memory allocated by the engine now, bytes.";
    f.type = prometheus::MetricType::Gauge;
    const std::vector<int64_t> bytes = provider_();
    for (size_t i = 0; i < bytes.size(); ++i) {
      if (bytes[i] < 0) continue;
      prometheus::ClientMetric m;
      m.label = {{"device", std::to_string(i)}};
      m.gauge.value = static_cast<double>(bytes[i]);
      f.metric.push_back(std::move(m));
    }
    if (f.metric.empty()) return {};
    return {std::move(f)};
  }

 private:
  const GpuMemoryProvider provider_;
};

class Impl : public PrometheusWorkerMetrics {
 public:
  explicit Impl(const PrometheusWorkerMetricsOptions& options)
      : registry_(std::make_shared<prometheus::Registry>()),
        gpu_(std::make_shared<GpuMemoryCollector>(options.gpu_memory)),
        model_label_{{"model_name", options.model_name.empty()
                                        ? std::string("none")
                                        : options.model_name}},
        tasks_done_(prometheus::BuildCounter()
                        .Name("sweepd_worker:tasks_done_total")
                        .Help("Tasks finished with a result, by job kind.")
                        .Register(*registry_)),
        tasks_failed_(prometheus::BuildCounter()
                          .Name("sweepd_worker:tasks_failed_total")
                          .Help("Tasks that failed, by job kind and whether "
                                "the failure is permanent.")
                          .Register(*registry_)),
        task_seconds_(prometheus::BuildHistogram()
                          .Name("sweepd_worker:task_seconds")
                          .Help("Executor wall time of finished tasks, by job "
                                "kind, seconds.")
                          .Register(*registry_)),
        layer_forwards_(prometheus::BuildCounter()
                            .Name("sweepd_worker:layer_forwards_total")
                            .Help("Decoder-layer forwards run by the engine.")
                            .Register(*registry_)
                            .Add({})),
        forward_seconds_(prometheus::BuildHistogram()
                             .Name("sweepd_worker:forward_seconds")
                             .Help("Wall time of one engine forward, seconds.")
                             .Register(*registry_)
                             .Add({}, SecondsBuckets())),
        prompt_tokens_(prometheus::BuildCounter()
                           .Name("sweepd_worker:prompt_tokens_total")
                           .Help("Prefill tokens processed.")
                           .Register(*registry_)
                           .Add(model_label_)),
        generation_tokens_(prometheus::BuildCounter()
                               .Name("sweepd_worker:generation_tokens_total")
                               .Help("Generation tokens processed.")
                               .Register(*registry_)
                               .Add(model_label_)),
        ttft_(prometheus::BuildHistogram()
                  .Name("sweepd_worker:time_to_first_token_seconds")
                  .Help("Histogram of time to first token in seconds.")
                  .Register(*registry_)
                  .Add(model_label_, SecondsBuckets())),
        itl_(prometheus::BuildHistogram()
                 .Name("sweepd_worker:inter_token_latency_seconds")
                 .Help("Histogram of inter-token latency in seconds.")
                 .Register(*registry_)
                 .Add(model_label_, SecondsBuckets())),
        e2e_(prometheus::BuildHistogram()
                 .Name("sweepd_worker:e2e_request_latency_seconds")
                 .Help("Histogram of end to end request latency in seconds.")
                 .Register(*registry_)
                 .Add(model_label_, SecondsBuckets())),
        drains_(prometheus::BuildCounter()
                    .Name("sweepd_worker:drains_total")
                    .Help("Drains begun (SIGTERM, preemption notices).")
                    .Register(*registry_)
                    .Add({})),
        preemptions_(prometheus::BuildCounter()
                         .Name("sweepd_worker:num_preemptions_total")
                         .Help("Leased tasks handed back unfinished by a "
                               "draining worker.")
                         .Register(*registry_)
                         .Add({})) {}

  std::vector<std::shared_ptr<prometheus::Collectable>> collectables()
      override {
    return {registry_, gpu_};
  }

  void RecordTaskDone(const std::string& kind, double seconds) override {
    tasks_done_.Add({{"kind", kind}}).Increment();
    task_seconds_.Add({{"kind", kind}}, SecondsBuckets()).Observe(seconds);
  }
  void RecordTaskFailed(const std::string& kind, bool permanent) override {
    tasks_failed_
        .Add({{"kind", kind}, {"permanent", permanent ? "true" : "false"}})
        .Increment();
  }
  void RecordForward(int64_t layer_forwards, double seconds) override {
    if (layer_forwards > 0) {
      layer_forwards_.Increment(static_cast<double>(layer_forwards));
    }
    forward_seconds_.Observe(seconds);
  }
  void RecordPromptTokens(int64_t tokens) override {
    if (tokens > 0) prompt_tokens_.Increment(static_cast<double>(tokens));
  }
  void RecordGeneratedTokens(int64_t tokens) override {
    if (tokens > 0) generation_tokens_.Increment(static_cast<double>(tokens));
  }
  void RecordTimeToFirstToken(double seconds) override {
    ttft_.Observe(seconds);
  }
  void RecordInterTokenLatency(double seconds) override {
    itl_.Observe(seconds);
  }
  void RecordRequestLatency(double seconds) override { e2e_.Observe(seconds); }
  void RecordDrain() override { drains_.Increment(); }
  void RecordPreemptedTasks(int64_t tasks) override {
    if (tasks > 0) preemptions_.Increment(static_cast<double>(tasks));
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<GpuMemoryCollector> gpu_;
  const prometheus::Labels model_label_;
  prometheus::Family<prometheus::Counter>& tasks_done_;
  prometheus::Family<prometheus::Counter>& tasks_failed_;
  prometheus::Family<Histogram>& task_seconds_;
  prometheus::Counter& layer_forwards_;
  Histogram& forward_seconds_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generation_tokens_;
  Histogram& ttft_;
  Histogram& itl_;
  Histogram& e2e_;
  prometheus::Counter& drains_;
  prometheus::Counter& preemptions_;
};

}  // namespace

std::unique_ptr<PrometheusWorkerMetrics> PrometheusWorkerMetrics::Create(
    const PrometheusWorkerMetricsOptions& options) {
  return std::make_unique<Impl>(options);
}

}  // namespace sweepd
