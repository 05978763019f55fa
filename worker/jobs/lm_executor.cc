#include "worker/jobs/lm_executor.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/path_confinement.h"
#include "common/status.h"
#include "worker/jobs/determinism.h"
#include "worker/jobs/interventions.h"
#include "worker/jobs/lm_accumulator.h"
#include "worker/jobs/lm_stream.h"

namespace sweepd {
namespace {

// One engine forward into the worker's metrics (layer-forwards from the
// engine's counter, read before and after).
void RecordForward(WorkerMetrics* metrics, const engine::Engine& engine,
                   int64_t layer_forwards_before, double seconds) {
  if (metrics == nullptr) return;
  metrics->RecordForward(engine.total_layer_forwards() - layer_forwards_before,
                         seconds);
}

// One task of the group as RunGroup runs it: its spec, resolved
// interventions, first touched layer and running sums.
struct TaskRun {
  size_t index = 0;
  LmTaskSpec spec;
  std::vector<engine::Intervention> interventions;
  int start_layer = 0;  // FirstTouchedLayer
  bool done = false;    // sink called
  double seconds = 0.0;
  LmAccumulator acc;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LmExecutor>> LmExecutor::Create(
    const std::string& kind, std::shared_ptr<LmBackend> backend,
    const LmExecutorOptions& options) {
  if (kind != kEvalKind && kind != kProbeKind) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LmExecutor kind must be \"eval\" or \"probe\", got \"", kind, "\""));
  }
  if (backend == nullptr) {
    return absl::InvalidArgumentError("LmExecutor needs a backend");
  }
  if (options.max_batch_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("LmExecutorOptions.max_batch_tokens must be >= 1, got ",
                     options.max_batch_tokens));
  }
  return std::unique_ptr<LmExecutor>(
      new LmExecutor(kind, std::move(backend), options));
}

LmExecutor::LmExecutor(std::string kind, std::shared_ptr<LmBackend> backend,
                       const LmExecutorOptions& options)
    : kind_(std::move(kind)),
      backend_(std::move(backend)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

void LmExecutor::RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                          const TaskSink& sink) {
  std::vector<TaskRun> runs;
  runs.reserve(tasks.size());
  // Parse every task; malformed ones fail at once.
  struct Stream {
    std::vector<size_t> members;  // runs indices, run as the stream's kind
    // eval stream: baseline probe tasks of the same model, shard and BOS
    // policy that take their statistics from this stream's unablated pass,
    // and the key of the probe stream they return to when it cannot be shared.
    std::vector<size_t> riders;
    std::string rider_home;
  };
  std::map<std::string, Stream> streams;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const LmJobSpec* job = std::get_if<LmJobSpec>(&tasks[i].job);
    if ((tasks[i].kind != kEvalKind && tasks[i].kind != kProbeKind) ||
        job == nullptr) {
      sink(i, absl::InvalidArgumentError(absl::StrCat(
                  "task ", tasks[i].task_key,
                  ": the language-model executor runs kinds eval and probe "
                  "with their job, not '",
                  tasks[i].kind, "'")));
      continue;
    }
    if (job->data.path.empty()) {
      sink(i,
           absl::InvalidArgumentError(absl::StrCat(
               "task ", tasks[i].task_key, ": data.dataset.path: required")));
      continue;
    }
    if (!options_.data_roots.empty()) {
      absl::StatusOr<std::string> data = ConfinedRealPath(
          job->data.path, options_.data_roots, "data.dataset.path");
      if (!data.ok()) {
        sink(i, absl::Status(data.status().code(),
                             absl::StrCat("task ", tasks[i].task_key, ": ",
                                          data.status().message())));
        continue;
      }
    }
    TaskRun run;
    run.index = i;
    static_cast<LmJobSpec&>(run.spec) = *job;
    run.spec.kind = tasks[i].kind;
    streams[LmStreamKey(run.spec)].members.push_back(runs.size());
    runs.push_back(std::move(run));
  }
  if (options_.prefix_reuse) {
    // One unablated pass per shard: the baseline probe tasks ride on an eval
    // stream of the same model, shard and BOS policy (docs/JOBS.md).
    std::map<std::string, std::string> eval_by_share;
    for (const auto& [key, s] : streams) {
      const LmTaskSpec& spec = runs[s.members[0]].spec;
      if (spec.kind == kEvalKind) eval_by_share.emplace(LmShareKey(spec), key);
    }
    for (auto& [key, s] : streams) {
      const LmTaskSpec& spec = runs[s.members[0]].spec;
      if (spec.kind != kProbeKind) continue;
      auto host = eval_by_share.find(LmShareKey(spec));
      if (host == eval_by_share.end()) continue;
      Stream& eval = streams[host->second];
      if (!eval.riders.empty()) continue;  // one probe stream per eval stream
      std::vector<size_t> stay;
      for (size_t m : s.members) {
        (runs[m].spec.interventions.empty() ? eval.riders : stay).push_back(m);
      }
      if (!eval.riders.empty()) eval.rider_home = key;
      s.members = std::move(stay);
    }
  }
  auto finish = [&](TaskRun& t, absl::StatusOr<TaskOutput> outcome) {
    if (t.done) return;
    t.done = true;
    if (!outcome.ok()) {
      outcome = Annotate(outcome.status(),
                         absl::StrCat("task ", tasks[t.index].task_key));
    }
    sink(t.index, std::move(outcome));
  };
  auto cancel_all = [&] {
    for (TaskRun& t : runs) {
      finish(t, absl::CancelledError("the group was cancelled"));
    }
  };

  size_t streams_done = 0;
  // Streams are visited in key order: eval streams come before probe streams,
  // so riders returned to their probe stream are still run there.
  for (auto& [key, stream] : streams) {
    (void)key;
    std::vector<size_t>& members = stream.members;
    std::vector<size_t> riders;
    riders.swap(stream.riders);
    auto return_riders = [&](const std::string& why) {
      if (riders.empty()) return;
      const LmTaskSpec& p = runs[riders[0]].spec;
      SWEEPD_LOG(INFO) << "probe of " << p.data.path << " shard "
                       << p.data.shard_index << "/" << p.data.num_shards
                       << " runs its own unablated pass: " << why;
      std::vector<size_t>& home = streams[stream.rider_home].members;
      home.insert(home.end(), riders.begin(), riders.end());
      riders.clear();
    };
    if (members.empty()) {
      return_riders("no eval task to share with");
      ++streams_done;
      continue;
    }
    const LmTaskSpec& first = runs[members[0]].spec;
    auto fail_stream = [&](const absl::Status& s) {
      for (size_t m : members) finish(runs[m], s);
      return_riders(absl::StrCat("the eval stream failed: ", s.message()));
    };
    if (ctx.cancelled()) return cancel_all();
    absl::StatusOr<LmBackend::Model> model = backend_->Acquire(first.model);
    if (!model.ok()) {
      fail_stream(model.status());
      ++streams_done;
      continue;
    }
    const ModelConfig& config = model->engine->config();
    const int N = config.num_hidden_layers;
    absl::StatusOr<LmStream> data =
        BuildLmStream(first, *model->tokenizer, options_.max_batch_tokens);
    if (!data.ok()) {
      fail_stream(data.status());
      ++streams_done;
      continue;
    }
    const bool probe = first.kind == kProbeKind;
    bool unablated_pass = false;  // some member uses the shared pass
    for (size_t m : members) {
      TaskRun& t = runs[m];
      t.interventions = t.spec.interventions;
      if (absl::Status resolved = ResolveInterventionArtifacts(
              options_.artifacts, t.spec.intervention_artifacts,
              t.spec.intervention_fields, &t.interventions);
          !resolved.ok()) {
        finish(t, resolved);
        continue;
      }
      if (absl::Status checked = CheckInterventions(
              t.interventions, t.spec.intervention_fields, config);
          !checked.ok()) {
        finish(t, checked);
        continue;
      }
      t.start_layer = engine::FirstTouchedLayer(t.interventions, N);
      t.acc.Init(data->categories.size(), N);
      if (t.interventions.empty() || t.start_layer > 0) unablated_pass = true;
    }
    if (!riders.empty()) {
      if (!unablated_pass) {
        return_riders("no eval task of the shard runs the unablated pass");
      } else {
        absl::Status attached = AttachProbeToEvalStream(
            runs[riders[0]].spec, *model->tokenizer, &*data);
        if (!attached.ok()) {
          return_riders(std::string(attached.message()));
        } else {
          for (size_t m : riders) runs[m].acc.Init(data->categories.size(), N);
        }
      }
    }
    std::vector<size_t> all = members;
    all.insert(all.end(), riders.begin(), riders.end());

    for (size_t bi = 0; bi < data->batches.size(); ++bi) {
      const LmBatch& batch = data->batches[bi];
      std::vector<TaskRun*> active;
      for (size_t m : all) {
        TaskRun& t = runs[m];
        if (t.done) continue;
        if (ctx.task_cancelled(t.index)) {
          finish(t, absl::CancelledError("task cancelled"));
          continue;
        }
        active.push_back(&t);
      }
      if (active.empty()) break;
      if (ctx.cancelled()) return cancel_all();
      const engine::ForwardRequest base = MakeBatchRequest(*data, batch);
      // Riders (probe tasks on an eval stream) read windows that carry a
      // probe record; a batch without one does not compute layer_stats.
      bool batch_has_probe = false;
      if (!riders.empty()) {
        for (int m : batch.members) {
          if (data->sequences[m].probe_len > 0) batch_has_probe = true;
        }
      }
      auto is_rider = [&](const TaskRun* t) {
        return !probe && t->spec.kind == kProbeKind;
      };
      auto uses_shared = [&](const TaskRun* t) {
        if (is_rider(t)) return batch_has_probe;
        return t->interventions.empty() || t->start_layer > 0;
      };

      // Shared unablated pass (prefix reuse).
      engine::ForwardResult shared;
      bool have_shared = false;
      if (options_.prefix_reuse) {
        bool need_prefix = false, need_result = false;
        for (TaskRun* t : active) {
          if (is_rider(t)) {
            if (batch_has_probe) need_result = true;
            continue;
          }
          if (t->interventions.empty()) need_result = true;
          if (!t->interventions.empty() && t->start_layer > 0) {
            need_prefix = true;
          }
        }
        if (need_prefix || need_result) {
          engine::ForwardRequest req = base;
          req.keep_prefix_state = need_prefix;
          req.layer_stats = probe || batch_has_probe;
          if (!probe && batch_has_probe) {
            // Riders read one rank per prompt: the lens (an LM-head pass per
            // layer and position) runs only there, not at every eval target.
            req.lens_positions.assign(base.tokens.size(), 0);
            for (size_t b = 0; b < batch.members.size(); ++b) {
              const LmSequence& s = data->sequences[batch.members[b]];
              if (s.probe_len > 0 && s.probe_rank_pos >= 0) {
                req.lens_positions[b * batch.seq + s.probe_rank_pos] = 1;
              }
            }
          }
          const int64_t t0 = clock_->NowMs();
          const int64_t layers0 = model->engine->total_layer_forwards();
          absl::StatusOr<engine::ForwardResult> r = model->engine->Forward(req);
          const double seconds = (clock_->NowMs() - t0) / 1000.0;
          RecordForward(options_.metrics, *model->engine, layers0, seconds);
          if (!r.ok()) {
            for (TaskRun* t : active) {
              finish(*t, Annotate(r.status(), "unablated forward"));
            }
            continue;
          }
          shared = std::move(*r);
          have_shared = true;
          // The shared pass's time is split among the tasks that use it.
          int users = 0;
          for (TaskRun* t : active) {
            if (uses_shared(t)) ++users;
          }
          for (TaskRun* t : active) {
            if (uses_shared(t)) t->seconds += seconds / users;
          }
        }
      }

      for (TaskRun* t : active) {
        if (ctx.cancelled()) return cancel_all();
        if (is_rider(t)) {
          if (!have_shared || !batch_has_probe) continue;
          std::vector<const engine::LayerStats*> stats(N);
          for (int L = 0; L < N; ++L) stats[L] = &shared.layer_stats[L];
          AccumulateProbe(*data, batch, stats, /*from_eval=*/true, &t->acc);
          continue;
        }
        if (have_shared && t->interventions.empty()) {
          if (probe) {
            std::vector<const engine::LayerStats*> stats(N);
            for (int L = 0; L < N; ++L) stats[L] = &shared.layer_stats[L];
            AccumulateProbe(*data, batch, stats, /*from_eval=*/false, &t->acc);
          } else {
            AccumulateEval(*data, batch, shared, &t->acc);
          }
          continue;
        }
        engine::ForwardRequest req = base;
        req.interventions = t->interventions;
        req.layer_stats = probe;
        const bool from_prefix =
            have_shared && t->start_layer > 0 && shared.prefix_state != nullptr;
        if (from_prefix) {
          req.start_from = shared.prefix_state;
          req.start_layer = t->start_layer;
        }
        const int64_t t0 = clock_->NowMs();
        const int64_t layers0 = model->engine->total_layer_forwards();
        absl::StatusOr<engine::ForwardResult> r = model->engine->Forward(req);
        t->seconds += (clock_->NowMs() - t0) / 1000.0;
        RecordForward(options_.metrics, *model->engine, layers0,
                      (clock_->NowMs() - t0) / 1000.0);
        if (!r.ok()) {
          finish(*t, r.status());
          continue;
        }
        if (probe) {
          std::vector<const engine::LayerStats*> stats(N);
          for (int L = 0; L < N; ++L) {
            stats[L] = (from_prefix && L < t->start_layer)
                           ? &shared.layer_stats[L]
                           : &r->layer_stats[L];
          }
          AccumulateProbe(*data, batch, stats, /*from_eval=*/false, &t->acc);
        } else {
          AccumulateEval(*data, batch, *r, &t->acc);
        }
      }
      ctx.SetProgress((static_cast<double>(streams_done) +
                       static_cast<double>(bi + 1) / data->batches.size()) /
                      streams.size());
    }
    const DeterminismRecord record =
        ToDeterminismRecord(engine::DescribeNumerics(model->engine->options()));
    for (size_t m : all) {
      TaskRun& t = runs[m];
      if (t.done) continue;
      if (ctx.task_cancelled(t.index)) {
        finish(t, absl::CancelledError("task cancelled"));
        continue;
      }
      TaskOutput out = MakeLmTaskOutput(t.spec.kind, t.spec.windowing.bos,
                                        t.acc, data->categories, N, t.seconds);
      out.determinism = record;
      finish(t, std::move(out));
    }
    ++streams_done;
    ctx.SetProgress(static_cast<double>(streams_done) / streams.size());
  }
}

}  // namespace sweepd
