#include "worker/jobs/head_importance_executor.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/path_confinement.h"
#include "common/status.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/determinism.h"
#include "worker/jobs/task_loop.h"
#include "worker/jobs/windowing.h"

namespace sweepd {
namespace {

// The shard's eval windows (docs/JOBS.md "eval": every token after a
// record's first is scored once), grouped into batches of equal length.
struct WindowBatch {
  int64_t windows = 0;
  int64_t seq = 0;
  std::vector<int32_t> tokens;   // [windows, seq]
  std::vector<int32_t> targets;  // [windows, seq], -1 = not scored
};

absl::StatusOr<std::vector<WindowBatch>> ShardBatches(
    const HeadImportanceJobSpec& job, const Tokenizer& tokenizer,
    int64_t max_batch_tokens, int64_t copies) {
  ASSIGN_OR_RETURN(std::vector<TextRecord> records, ReadShard(job.data));
  std::map<int64_t,
           std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>>
      by_length;
  for (const TextRecord& r : records) {
    absl::StatusOr<std::vector<int32_t>> ids =
        tokenizer.Encode(r.text, job.windowing.bos);
    if (!ids.ok()) {
      return Annotate(ids.status(),
                      absl::StrCat(job.data.path, ":", r.line, ": text"));
    }
    for (const TokenWindow& w :
         MakeWindows(static_cast<int64_t>(ids->size()), job.windowing)) {
      std::vector<int32_t> tokens(ids->begin() + w.begin, ids->begin() + w.end);
      std::vector<int32_t> targets(w.length(), -1);
      for (int64_t j = w.score_begin; j < w.end; ++j) {
        targets[j - 1 - w.begin] = (*ids)[j];
      }
      by_length[w.length()].emplace_back(std::move(tokens), std::move(targets));
    }
  }
  std::vector<WindowBatch> out;
  for (auto& [len, windows] : by_length) {
    const size_t per_batch = static_cast<size_t>(
        std::max<int64_t>(1, max_batch_tokens / (len * copies)));
    for (size_t b = 0; b < windows.size(); b += per_batch) {
      WindowBatch batch;
      batch.seq = len;
      for (size_t i = b; i < std::min(windows.size(), b + per_batch); ++i) {
        batch.tokens.insert(batch.tokens.end(), windows[i].first.begin(),
                            windows[i].first.end());
        batch.targets.insert(batch.targets.end(), windows[i].second.begin(),
                             windows[i].second.end());
        ++batch.windows;
      }
      out.push_back(std::move(batch));
    }
  }
  return out;
}

// The scored NLL summed over rows [row_begin, row_begin + rows) of `r`.
double NllSum(const engine::ForwardResult& r, int64_t row_begin, int64_t rows,
              int64_t seq, int64_t* tokens = nullptr) {
  double sum = 0.0;
  int64_t n = 0;
  for (int64_t i = row_begin * seq; i < (row_begin + rows) * seq; ++i) {
    if (!r.target_valid[i]) continue;
    sum += r.nll[i];
    ++n;
  }
  if (tokens != nullptr) *tokens = n;
  return sum;
}

}  // namespace

HeadImportanceExecutor::HeadImportanceExecutor(
    std::shared_ptr<LmBackend> backend,
    const HeadImportanceExecutorOptions& options)
    : backend_(std::move(backend)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

absl::StatusOr<std::unique_ptr<HeadImportanceExecutor>>
HeadImportanceExecutor::Create(std::shared_ptr<LmBackend> backend,
                               const HeadImportanceExecutorOptions& options) {
  if (backend == nullptr) {
    return absl::InvalidArgumentError("head_importance: no LmBackend");
  }
  if (options.max_batch_tokens < 1) {
    return absl::InvalidArgumentError("max_batch_tokens must be >= 1");
  }
  return std::unique_ptr<HeadImportanceExecutor>(
      new HeadImportanceExecutor(std::move(backend), options));
}

void HeadImportanceExecutor::RunGroup(const std::vector<TaskInput>& tasks,
                                      TaskContext& ctx, const TaskSink& sink) {
  const double share = 1.0 / static_cast<double>(tasks.size());
  RunTasksOneByOne<HeadImportanceJobSpec>(
      kHeadImportanceKind, tasks, ctx, sink,
      [&](const TaskInput& task, const HeadImportanceJobSpec& job, size_t i) {
        return RunTask(task, job, ctx, i, static_cast<double>(i) * share,
                       share);
      });
}

absl::StatusOr<TaskOutput> HeadImportanceExecutor::RunTask(
    const TaskInput& task, const HeadImportanceJobSpec& job_spec,
    TaskContext& ctx, size_t index, double progress_base,
    double progress_span) {
  const HeadImportanceJobSpec* job = &job_spec;
  if (job->data.path.empty()) {
    return absl::InvalidArgumentError("data.dataset.path: required");
  }
  if (!options_.data_roots.empty()) {
    RETURN_IF_ERROR(ConfinedRealPath(job->data.path, options_.data_roots,
                                     "data.dataset.path")
                        .status());
  }
  const int64_t t0 = clock_->NowMs();
  ASSIGN_OR_RETURN(LmBackend::Model model, backend_->Acquire(job->model));
  engine::Engine& engine = *model.engine;
  const ModelConfig& cfg = engine.config();
  const int N = cfg.num_hidden_layers;
  const int H = cfg.num_attention_heads;
  if (job->layers.empty()) {
    return absl::InvalidArgumentError(
        "head_importance.layers: no layers to score");
  }
  for (int L : job->layers) {
    if (L < 0 || L >= N) {
      return absl::InvalidArgumentError(
          absl::StrCat("head_importance.layers: layer ", L, " outside [0, ", N,
                       ") of the loaded model"));
    }
  }
  if (job->heads_per_forward < 0) {
    return absl::InvalidArgumentError(
        "head_importance.heads_per_forward: must be >= 0");
  }
  const int per_forward =
      job->heads_per_forward == 0 ? H : std::min(job->heads_per_forward, H);
  ASSIGN_OR_RETURN(
      std::vector<WindowBatch> batches,
      ShardBatches(*job, *model.tokenizer, options_.max_batch_tokens,
                   options_.naive ? 1 : per_forward));

  const int64_t layer_forwards0 = engine.total_layer_forwards();
  int64_t token_layers = 0;  // layers run x tokens in the batch (all rows)
  auto forward = [&](const engine::ForwardRequest& req)
      -> absl::StatusOr<engine::ForwardResult> {
    const int64_t f0 = clock_->NowMs();
    const int64_t l0 = engine.total_layer_forwards();
    absl::StatusOr<engine::ForwardResult> r = engine.Forward(req);
    if (options_.metrics != nullptr) {
      options_.metrics->RecordForward(engine.total_layer_forwards() - l0,
                                      (clock_->NowMs() - f0) / 1000.0);
    }
    if (r.ok()) token_layers += r->layer_forwards * req.batch * req.seq;
    return r;
  };

  double base_sum = 0.0;
  int64_t tokens = 0;
  // masked[layer index][head]: summed NLL with that head masked.
  std::vector<std::vector<double>> masked(job->layers.size(),
                                          std::vector<double>(H, 0.0));
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    if (ctx.cancelled() || ctx.task_cancelled(index)) {
      return absl::CancelledError("task cancelled");
    }
    const WindowBatch& batch = batches[bi];
    engine::ForwardRequest base;
    base.batch = batch.windows;
    base.seq = batch.seq;
    base.tokens = batch.tokens;
    base.targets = batch.targets;
    base.keep_prefix_state = !options_.naive;
    ASSIGN_OR_RETURN(engine::ForwardResult unablated, forward(base));
    int64_t n = 0;
    base_sum += NllSum(unablated, 0, batch.windows, batch.seq, &n);
    tokens += n;
    base.keep_prefix_state = false;
    for (size_t li = 0; li < job->layers.size(); ++li) {
      const int L = job->layers[li];
      if (options_.naive) {
        for (int h = 0; h < H; ++h) {
          engine::ForwardRequest req = base;
          req.interventions = {engine::Intervention::MaskHeads(L, {h})};
          ASSIGN_OR_RETURN(engine::ForwardResult r, forward(req));
          masked[li][h] += NllSum(r, 0, batch.windows, batch.seq);
        }
        continue;
      }
      // heads_per_forward 0: all heads at once as far as the token budget
      // allows (a long window times every head would not fit in memory).
      const int chunk =
          job->heads_per_forward > 0
              ? per_forward
              : static_cast<int>(std::clamp<int64_t>(
                    options_.max_batch_tokens / (batch.windows * batch.seq), 1,
                    H));
      for (int h0 = 0; h0 < H; h0 += chunk) {
        const int heads = std::min(chunk, H - h0);
        engine::ForwardRequest req;
        req.batch = batch.windows * heads;
        req.seq = batch.seq;
        req.tokens.reserve(req.batch * req.seq);
        req.targets.reserve(req.batch * req.seq);
        for (int j = 0; j < heads; ++j) {
          req.tokens.insert(req.tokens.end(), batch.tokens.begin(),
                            batch.tokens.end());
          req.targets.insert(req.targets.end(), batch.targets.begin(),
                             batch.targets.end());
          for (int64_t w = 0; w < batch.windows; ++w) {
            req.row_head_masks.push_back(engine::RowHeadMask{L, {h0 + j}});
          }
        }
        req.start_from = unablated.prefix_state;
        req.start_layer = L;
        ASSIGN_OR_RETURN(engine::ForwardResult r, forward(req));
        for (int j = 0; j < heads; ++j) {
          masked[li][h0 + j] +=
              NllSum(r, j * batch.windows, batch.windows, batch.seq);
        }
      }
    }
    ctx.SetProgress(progress_base + progress_span * (bi + 1) / batches.size());
  }
  if (tokens == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_importance: shard ", job->data.shard_index, "/",
                     job->data.num_shards, " of ", job->data.path,
                     " has no scored tokens (records of fewer than 2 tokens)"));
  }

  TaskOutput out;
  const std::map<std::string, std::string> ds = {
      {"dataset", job->dataset_name}};
  const double denom = static_cast<double>(tokens);
  out.metrics.push_back(
      MetricRow{"head_importance_baseline_nll", base_sum / denom, ds});
  out.metrics.push_back(
      MetricRow{"head_importance_tokens", static_cast<double>(tokens), ds});
  for (size_t li = 0; li < job->layers.size(); ++li) {
    for (int h = 0; h < H; ++h) {
      out.metrics.push_back(
          MetricRow{"head_nll_delta",
                    (masked[li][h] - base_sum) / denom,
                    {{"layer", std::to_string(job->layers[li])},
                     {"head", std::to_string(h)},
                     {"dataset", job->dataset_name}}});
    }
  }
  out.metrics.push_back(MetricRow{
      "head_importance_layer_forwards",
      static_cast<double>(engine.total_layer_forwards() - layer_forwards0),
      {}});
  out.metrics.push_back(MetricRow{
      "head_importance_token_layers", static_cast<double>(token_layers), {}});
  out.metrics.push_back(
      MetricRow{"bos", job->windowing.bos == BosPolicy::kOn ? 1.0 : 0.0, {}});
  out.determinism =
      ToDeterminismRecord(engine::DescribeNumerics(engine.options()));
  out.wall_seconds = (clock_->NowMs() - t0) / 1000.0;
  return out;
}

}  // namespace sweepd
