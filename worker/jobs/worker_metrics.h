// WorkerMetrics: the plain-C++ recording interface of a worker's metrics. The
// agent records task outcomes, drains and preemptions; executors record engine
// forwards and, for generation, tokens and latencies. The Prometheus
// implementation is worker/prometheus_worker_metrics.h (names and labels there
// and in docs/OBSERVABILITY.md); this header includes neither prometheus-cpp,
// libtorch nor protobuf, so any worker code may call it.
//
// Ownership: callers borrow a WorkerMetrics* (null = record nothing); its owner
// (sweep-worker's main) keeps it alive longer than the agent and executors.
// Thread-safety: implementations are thread-safe; every method is cheap (an
// atomic add or a histogram bucket) and may be called on hot paths.
#ifndef SWEEPD_WORKER_JOBS_WORKER_METRICS_H_
#define SWEEPD_WORKER_JOBS_WORKER_METRICS_H_

#include <cstdint>
#include <string>

namespace sweepd {

class WorkerMetrics {
 public:
  virtual ~WorkerMetrics() = default;

  // ---- Tasks (the agent), by job kind ("eval", "probe", "synthetic", ...).
  // A task finished with a result after `seconds` of executor wall time.
  virtual void RecordTaskDone(const std::string& kind, double seconds) = 0;
  // A task failed; `permanent` as IsPermanentTaskError.
  virtual void RecordTaskFailed(const std::string& kind, bool permanent) = 0;

  // ---- Engine (executors). One Forward call: the layer-forwards it ran
  // (layers x sequences) and its wall time.
  virtual void RecordForward(int64_t layer_forwards, double seconds) = 0;

  // ---- Generation (executors that decode; names follow vLLM's).
  // Tokens of the prompts prefilled.
  virtual void RecordPromptTokens(int64_t tokens) = 0;
  // Tokens generated (decoded).
  virtual void RecordGeneratedTokens(int64_t tokens) = 0;
  // From a request's start to its first generated token.
  virtual void RecordTimeToFirstToken(double seconds) = 0;
  // Between two consecutive generated tokens of one request.
  virtual void RecordInterTokenLatency(double seconds) = 0;
  // From a request's start to its last token.
  virtual void RecordRequestLatency(double seconds) = 0;

  // ---- Lifecycle (the agent).
  // The worker began draining (SIGTERM, e.g. a spot preemption notice).
  virtual void RecordDrain() = 0;
  // `tasks` leased tasks were handed back unfinished (released while
  // draining).
  virtual void RecordPreemptedTasks(int64_t tasks) = 0;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_WORKER_METRICS_H_
