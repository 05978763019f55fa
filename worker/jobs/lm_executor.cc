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

// Tasks that read one data stream (LmStreamKey), run as the stream's kind.
struct Stream {
  std::vector<size_t> members;  // TaskRun indices
  // eval stream: baseline probe tasks of the same model, shard and BOS
  // policy that take their statistics from this stream's unablated pass,
  // and the key of the probe stream they return to when it cannot be shared.
  std::vector<size_t> riders;
  std::string rider_home;
};

// One RunGroup call: parses the tasks into streams, lets baseline probes
// ride on eval streams (prefix reuse), then runs each stream batch by batch —
// the shared unablated pass, then each task's own forward — and hands every
// task's outcome to the sink exactly once.
class GroupRun {
 public:
  GroupRun(const LmExecutorOptions& options, LmBackend& backend, Clock* clock,
           const std::vector<TaskInput>& tasks, TaskContext& ctx,
           const TaskSink& sink)
      : options_(options),
        backend_(backend),
        clock_(clock),
        tasks_(tasks),
        ctx_(ctx),
        sink_(sink) {}

  void Run() {
    Parse();
    if (options_.prefix_reuse) AssignRiders();
    // Streams are visited in key order: eval streams come before probe
    // streams, so riders returned to their probe stream are still run there.
    for (auto& [key, stream] : streams_) {
      (void)key;
      if (!RunStream(stream)) return;  // cancelled: every task finished
      ++streams_done_;
    }
  }

 private:
  // One stream while it runs: its model, data and the tasks that read it.
  struct StreamRun {
    Stream* stream = nullptr;
    LmBackend::Model model;
    LmStream data;
    int layers = 0;
    bool probe = false;          // the stream's kind is probe
    std::vector<size_t> riders;  // probe tasks riding on this eval stream
    std::vector<size_t> all;     // members, then riders
  };
  // A batch's unablated pass, when one ran.
  struct SharedPass {
    engine::ForwardResult result;
    bool ran = false;
    bool has_probe = false;  // the batch carries a rider's probe record
  };

  void Parse();
  void AssignRiders();
  // false when the group was cancelled (every task has then finished).
  bool RunStream(Stream& stream);
  // Resolves and checks each member's interventions (failing those that do
  // not), sets up its sums; true when some member uses the unablated pass.
  bool PrepareMembers(StreamRun& s);
  void ReturnRiders(StreamRun& s, const std::string& why);
  bool RunBatch(StreamRun& s, size_t bi);
  bool IsRider(const StreamRun& s, const TaskRun& t) const {
    return !s.probe && t.spec.kind == kProbeKind;
  }
  bool UsesShared(const StreamRun& s, const SharedPass& pass,
                  const TaskRun& t) const {
    if (IsRider(s, t)) return pass.has_probe;
    return t.interventions.empty() || t.start_layer > 0;
  }
  // The unablated pass of batch `bi` for the active tasks that need it
  // (prefix state and/or result); its time is split among its users.
  void RunSharedPass(StreamRun& s, const LmBatch& batch,
                     const engine::ForwardRequest& base,
                     const std::vector<TaskRun*>& active, SharedPass* pass);
  // Task t's share of batch `bi`: from the shared pass or its own forward.
  void RunTask(StreamRun& s, const LmBatch& batch,
               const engine::ForwardRequest& base, const SharedPass& pass,
               TaskRun& t);
  void FinishStream(StreamRun& s);
  // The engine forward of `req`, timed, into the worker's metrics.
  absl::StatusOr<engine::ForwardResult> Forward(
      const StreamRun& s, const engine::ForwardRequest& req, double* seconds);

  void Finish(TaskRun& t, absl::StatusOr<TaskOutput> outcome) {
    if (t.done) return;
    t.done = true;
    if (!outcome.ok()) {
      outcome = Annotate(outcome.status(),
                         absl::StrCat("task ", tasks_[t.index].task_key));
    }
    sink_(t.index, std::move(outcome));
  }
  // Whether t still runs: false once it has finished, or (finishing it) when
  // it was cancelled.
  bool Live(TaskRun& t) {
    if (t.done) return false;
    if (!ctx_.task_cancelled(t.index)) return true;
    Finish(t, absl::CancelledError("task cancelled"));
    return false;
  }
  bool CancelAll() {
    for (TaskRun& t : runs_) {
      Finish(t, absl::CancelledError("the group was cancelled"));
    }
    return false;
  }

  const LmExecutorOptions& options_;
  LmBackend& backend_;
  Clock* const clock_;
  const std::vector<TaskInput>& tasks_;
  TaskContext& ctx_;
  const TaskSink& sink_;
  std::vector<TaskRun> runs_;
  std::map<std::string, Stream> streams_;
  size_t streams_done_ = 0;
};

void GroupRun::Parse() {
  runs_.reserve(tasks_.size());
  // Malformed tasks fail at once.
  for (size_t i = 0; i < tasks_.size(); ++i) {
    const LmJobSpec* job = std::get_if<LmJobSpec>(&tasks_[i].job);
    if ((tasks_[i].kind != kEvalKind && tasks_[i].kind != kProbeKind) ||
        job == nullptr) {
      sink_(i, absl::InvalidArgumentError(absl::StrCat(
                   "task ", tasks_[i].task_key,
                   ": the language-model executor runs kinds eval and probe "
                   "with their job, not '",
                   tasks_[i].kind, "'")));
      continue;
    }
    if (job->data.path.empty()) {
      sink_(i,
            absl::InvalidArgumentError(absl::StrCat(
                "task ", tasks_[i].task_key, ": data.dataset.path: required")));
      continue;
    }
    if (!options_.data_roots.empty()) {
      absl::StatusOr<std::string> data = ConfinedRealPath(
          job->data.path, options_.data_roots, "data.dataset.path");
      if (!data.ok()) {
        sink_(i, absl::Status(data.status().code(),
                              absl::StrCat("task ", tasks_[i].task_key, ": ",
                                           data.status().message())));
        continue;
      }
    }
    TaskRun run;
    run.index = i;
    static_cast<LmJobSpec&>(run.spec) = *job;
    run.spec.kind = tasks_[i].kind;
    streams_[LmStreamKey(run.spec)].members.push_back(runs_.size());
    runs_.push_back(std::move(run));
  }
}

void GroupRun::AssignRiders() {
  // One unablated pass per shard: the baseline probe tasks ride on an eval
  // stream of the same model, shard and BOS policy (docs/JOBS.md).
  std::map<std::string, std::string> eval_by_share;
  for (const auto& [key, s] : streams_) {
    const LmTaskSpec& spec = runs_[s.members[0]].spec;
    if (spec.kind == kEvalKind) eval_by_share.emplace(LmShareKey(spec), key);
  }
  for (auto& [key, s] : streams_) {
    const LmTaskSpec& spec = runs_[s.members[0]].spec;
    if (spec.kind != kProbeKind) continue;
    auto host = eval_by_share.find(LmShareKey(spec));
    if (host == eval_by_share.end()) continue;
    Stream& eval = streams_[host->second];
    if (!eval.riders.empty()) continue;  // one probe stream per eval stream
    std::vector<size_t> stay;
    for (size_t m : s.members) {
      (runs_[m].spec.interventions.empty() ? eval.riders : stay).push_back(m);
    }
    if (!eval.riders.empty()) eval.rider_home = key;
    s.members = std::move(stay);
  }
}

void GroupRun::ReturnRiders(StreamRun& s, const std::string& why) {
  if (s.riders.empty()) return;
  const LmTaskSpec& p = runs_[s.riders[0]].spec;
  SWEEPD_LOG(INFO) << "probe of " << p.data.path << " shard "
                   << p.data.shard_index << "/" << p.data.num_shards
                   << " runs its own unablated pass: " << why;
  std::vector<size_t>& home = streams_[s.stream->rider_home].members;
  home.insert(home.end(), s.riders.begin(), s.riders.end());
  s.riders.clear();
}

bool GroupRun::RunStream(Stream& stream) {
  StreamRun s;
  s.stream = &stream;
  s.riders.swap(stream.riders);
  const std::vector<size_t>& members = stream.members;
  if (members.empty()) {
    ReturnRiders(s, "no eval task to share with");
    return true;
  }
  const LmTaskSpec& first = runs_[members[0]].spec;
  auto fail_stream = [&](const absl::Status& st) {
    for (size_t m : members) Finish(runs_[m], st);
    ReturnRiders(s, absl::StrCat("the eval stream failed: ", st.message()));
    return true;
  };
  if (ctx_.cancelled()) return CancelAll();
  absl::StatusOr<LmBackend::Model> model = backend_.Acquire(first.model);
  if (!model.ok()) return fail_stream(model.status());
  s.model = std::move(*model);
  s.layers = s.model.engine->config().num_hidden_layers;
  absl::StatusOr<LmStream> data =
      BuildLmStream(first, *s.model.tokenizer, options_.max_batch_tokens);
  if (!data.ok()) return fail_stream(data.status());
  s.data = std::move(*data);
  s.probe = first.kind == kProbeKind;
  const bool unablated_pass = PrepareMembers(s);
  if (!s.riders.empty()) {
    if (!unablated_pass) {
      ReturnRiders(s, "no eval task of the shard runs the unablated pass");
    } else {
      absl::Status attached = AttachProbeToEvalStream(
          runs_[s.riders[0]].spec, *s.model.tokenizer, &s.data);
      if (!attached.ok()) {
        ReturnRiders(s, std::string(attached.message()));
      } else {
        for (size_t m : s.riders) {
          runs_[m].acc.Init(s.data.categories.size(), s.layers);
        }
      }
    }
  }
  s.all = members;
  s.all.insert(s.all.end(), s.riders.begin(), s.riders.end());
  for (size_t bi = 0; bi < s.data.batches.size(); ++bi) {
    bool any_active = false;
    for (size_t m : s.all) any_active = any_active || !runs_[m].done;
    if (!any_active) break;
    if (!RunBatch(s, bi)) return false;
  }
  FinishStream(s);
  return true;
}

bool GroupRun::PrepareMembers(StreamRun& s) {
  const ModelConfig& config = s.model.engine->config();
  bool unablated_pass = false;
  for (size_t m : s.stream->members) {
    TaskRun& t = runs_[m];
    t.interventions = t.spec.interventions;
    if (absl::Status resolved = ResolveInterventionArtifacts(
            options_.artifacts, t.spec.intervention_artifacts,
            t.spec.intervention_fields, &t.interventions);
        !resolved.ok()) {
      Finish(t, resolved);
      continue;
    }
    if (absl::Status checked = CheckInterventions(
            t.interventions, t.spec.intervention_fields, config);
        !checked.ok()) {
      Finish(t, checked);
      continue;
    }
    t.start_layer = engine::FirstTouchedLayer(t.interventions, s.layers);
    t.acc.Init(s.data.categories.size(), s.layers);
    if (t.interventions.empty() || t.start_layer > 0) unablated_pass = true;
  }
  return unablated_pass;
}

absl::StatusOr<engine::ForwardResult> GroupRun::Forward(
    const StreamRun& s, const engine::ForwardRequest& req, double* seconds) {
  const int64_t t0 = clock_->NowMs();
  const int64_t layers0 = s.model.engine->total_layer_forwards();
  absl::StatusOr<engine::ForwardResult> r = s.model.engine->Forward(req);
  *seconds = (clock_->NowMs() - t0) / 1000.0;
  RecordForward(options_.metrics, *s.model.engine, layers0, *seconds);
  return r;
}

bool GroupRun::RunBatch(StreamRun& s, size_t bi) {
  const LmBatch& batch = s.data.batches[bi];
  std::vector<TaskRun*> active;
  for (size_t m : s.all) {
    if (Live(runs_[m])) active.push_back(&runs_[m]);
  }
  if (active.empty()) return true;
  if (ctx_.cancelled()) return CancelAll();
  const engine::ForwardRequest base = MakeBatchRequest(s.data, batch);
  SharedPass pass;
  // Riders (probe tasks on an eval stream) read windows that carry a probe
  // record; a batch without one does not compute layer_stats.
  if (!s.riders.empty()) {
    for (int m : batch.members) {
      if (s.data.sequences[m].probe_len > 0) pass.has_probe = true;
    }
  }
  if (options_.prefix_reuse) RunSharedPass(s, batch, base, active, &pass);
  for (TaskRun* t : active) {
    if (ctx_.cancelled()) return CancelAll();
    if (!t->done) RunTask(s, batch, base, pass, *t);
  }
  ctx_.SetProgress((static_cast<double>(streams_done_) +
                    static_cast<double>(bi + 1) / s.data.batches.size()) /
                   streams_.size());
  return true;
}

void GroupRun::RunSharedPass(StreamRun& s, const LmBatch& batch,
                             const engine::ForwardRequest& base,
                             const std::vector<TaskRun*>& active,
                             SharedPass* pass) {
  bool need_prefix = false, need_result = false;
  for (TaskRun* t : active) {
    if (IsRider(s, *t)) {
      if (pass->has_probe) need_result = true;
      continue;
    }
    if (t->interventions.empty()) need_result = true;
    if (!t->interventions.empty() && t->start_layer > 0) need_prefix = true;
  }
  if (!need_prefix && !need_result) return;
  engine::ForwardRequest req = base;
  req.keep_prefix_state = need_prefix;
  req.layer_stats = s.probe || pass->has_probe;
  if (!s.probe && pass->has_probe) {
    // Riders read one rank per prompt: the lens (an LM-head pass per layer
    // and position) runs only there, not at every eval target.
    req.lens_positions.assign(base.tokens.size(), 0);
    for (size_t b = 0; b < batch.members.size(); ++b) {
      const LmSequence& seq = s.data.sequences[batch.members[b]];
      if (seq.probe_len > 0 && seq.probe_rank_pos >= 0) {
        req.lens_positions[b * batch.seq + seq.probe_rank_pos] = 1;
      }
    }
  }
  double seconds = 0.0;
  absl::StatusOr<engine::ForwardResult> r = Forward(s, req, &seconds);
  if (!r.ok()) {
    for (TaskRun* t : active) {
      Finish(*t, Annotate(r.status(), "unablated forward"));
    }
    return;
  }
  pass->result = std::move(*r);
  pass->ran = true;
  // The shared pass's time is split among the tasks that use it.
  int users = 0;
  for (TaskRun* t : active) {
    if (UsesShared(s, *pass, *t)) ++users;
  }
  for (TaskRun* t : active) {
    if (UsesShared(s, *pass, *t)) t->seconds += seconds / users;
  }
}

void GroupRun::RunTask(StreamRun& s, const LmBatch& batch,
                       const engine::ForwardRequest& base,
                       const SharedPass& pass, TaskRun& t) {
  const int N = s.layers;
  const engine::ForwardResult& shared = pass.result;
  auto shared_stats = [&] {
    std::vector<const engine::LayerStats*> stats(N);
    for (int L = 0; L < N; ++L) stats[L] = &shared.layer_stats[L];
    return stats;
  };
  if (IsRider(s, t)) {
    if (pass.ran && pass.has_probe) {
      AccumulateProbe(s.data, batch, shared_stats(), /*from_eval=*/true,
                      &t.acc);
    }
    return;
  }
  if (pass.ran && t.interventions.empty()) {
    if (s.probe) {
      AccumulateProbe(s.data, batch, shared_stats(), /*from_eval=*/false,
                      &t.acc);
    } else {
      AccumulateEval(s.data, batch, shared, &t.acc);
    }
    return;
  }
  engine::ForwardRequest req = base;
  req.interventions = t.interventions;
  req.layer_stats = s.probe;
  const bool from_prefix =
      pass.ran && t.start_layer > 0 && shared.prefix_state != nullptr;
  if (from_prefix) {
    req.start_from = shared.prefix_state;
    req.start_layer = t.start_layer;
  }
  double seconds = 0.0;
  absl::StatusOr<engine::ForwardResult> r = Forward(s, req, &seconds);
  t.seconds += seconds;
  if (!r.ok()) {
    Finish(t, r.status());
    return;
  }
  if (s.probe) {
    std::vector<const engine::LayerStats*> stats(N);
    for (int L = 0; L < N; ++L) {
      stats[L] = (from_prefix && L < t.start_layer) ? &shared.layer_stats[L]
                                                    : &r->layer_stats[L];
    }
    AccumulateProbe(s.data, batch, stats, /*from_eval=*/false, &t.acc);
  } else {
    AccumulateEval(s.data, batch, *r, &t.acc);
  }
}

void GroupRun::FinishStream(StreamRun& s) {
  const DeterminismRecord record =
      ToDeterminismRecord(engine::DescribeNumerics(s.model.engine->options()));
  for (size_t m : s.all) {
    TaskRun& t = runs_[m];
    if (!Live(t)) continue;
    TaskOutput out = MakeLmTaskOutput(t.spec.kind, t.spec.windowing.bos, t.acc,
                                      s.data.categories, s.layers, t.seconds);
    out.determinism = record;
    Finish(t, std::move(out));
  }
  ctx_.SetProgress(static_cast<double>(streams_done_ + 1) / streams_.size());
}

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
  GroupRun(options_, *backend_, clock_, tasks, ctx, sink).Run();
}

}  // namespace sweepd
