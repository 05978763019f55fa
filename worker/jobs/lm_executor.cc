#include "worker/jobs/lm_executor.h"

#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/path_confinement.h"
#include "common/status.h"
#include "common/version.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/determinism.h"
#include "worker/jobs/interventions.h"
#include "worker/jobs/windowing.h"

namespace sweepd {
namespace {

std::string CanonicalPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) return path;
  return buf;
}

}  // namespace

// ---- LmBackend
// -------------------------------------------------------------------

LmBackend::LmBackend(const LmBackendOptions& options) : options_(options) {}

absl::StatusOr<std::shared_ptr<LmBackend>> LmBackend::Create(
    const LmBackendOptions& options) {
  std::shared_ptr<LmBackend> backend(new LmBackend(options));
  absl::MutexLock lock(&backend->mu_);
  const std::string tokenizer =
      !options.tokenizer_path.empty()
          ? options.tokenizer_path
          : absl::StrCat(options.engine.model_dir, "/tokenizer.json");
  RETURN_IF_ERROR(backend->LoadLocked(options.engine.model_dir,
                                      options.model_fingerprint,
                                      options.engine.dtype, tokenizer));
  return backend;
}

absl::StatusOr<std::shared_ptr<const Tokenizer>> LmBackend::TokenizerLocked(
    const std::string& path) {
  auto it = tokenizers_.find(path);
  if (it != tokenizers_.end()) return it->second;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromFile(path);
  if (!tok.ok()) return Annotate(tok.status(), "tokenizer");
  std::shared_ptr<const Tokenizer> shared(std::move(*tok));
  tokenizers_[path] = shared;
  return shared;
}

absl::Status LmBackend::LoadLocked(const std::string& model_dir,
                                   const std::string& fingerprint,
                                   engine::DType dtype,
                                   const std::string& tokenizer_path) {
  ASSIGN_OR_RETURN(std::shared_ptr<const Tokenizer> tokenizer,
                   TokenizerLocked(tokenizer_path));
  engine::EngineOptions opts = options_.engine;
  opts.model_dir = model_dir;
  opts.dtype = dtype;
  // Free the current model before loading the next one (device memory).
  if (engine_ != nullptr) {
    retired_layer_forwards_ += engine_->total_layer_forwards();
    engine_.reset();
  }
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Create(opts);
  if (!engine.ok()) {
    return Annotate(engine.status(), absl::StrCat("loading model ", model_dir));
  }
  engine_ = std::move(*engine);
  model_dir_ = model_dir;
  fingerprint_ = fingerprint;
  dtype_ = dtype;
  tokenizer_ = std::move(tokenizer);
  return absl::OkStatus();
}

absl::StatusOr<LmBackend::Model> LmBackend::Acquire(const ModelRefSpec& ref) {
  absl::MutexLock lock(&mu_);
  engine::DType dtype = options_.engine.dtype;
  if (!ref.dtype.empty()) {
    absl::StatusOr<engine::DType> parsed = engine::ParseDType(ref.dtype);
    if (!parsed.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("model.dtype: ", parsed.status().message()));
    }
    dtype = *parsed;
  }
  bool same_model;
  if (!ref.fingerprint.empty() && !fingerprint_.empty()) {
    same_model = ref.fingerprint == fingerprint_;
  } else if (!ref.path.empty() && !model_dir_.empty()) {
    same_model = CanonicalPath(ref.path) == CanonicalPath(model_dir_);
  } else {
    same_model = ref.path.empty();
  }
  if (engine_ != nullptr && same_model && dtype == dtype_ &&
      ref.tokenizer.empty()) {
    return Model{engine_, tokenizer_, model_dir_};
  }
  if (engine_ != nullptr && same_model && dtype == dtype_) {
    if (!options_.model_roots.empty()) {
      RETURN_IF_ERROR(ConfinedRealPath(ref.tokenizer, options_.model_roots,
                                       "model.tokenizer")
                          .status());
    }
    ASSIGN_OR_RETURN(std::shared_ptr<const Tokenizer> tok,
                     TokenizerLocked(ref.tokenizer));
    return Model{engine_, tok, model_dir_};
  }
  const std::string dir = same_model ? model_dir_ : ref.path;
  if (dir.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the task names no model.path and this worker holds "
                     "model ",
                     model_dir_, " (fingerprint ", fingerprint_, ")"));
  }
  const std::string tokenizer =
      !ref.tokenizer.empty() ? ref.tokenizer
                             : (same_model && !options_.tokenizer_path.empty()
                                    ? options_.tokenizer_path
                                    : absl::StrCat(dir, "/tokenizer.json"));
  RETURN_IF_ERROR(CheckModelDirConfined(dir, options_.model_roots));
  if (!options_.model_roots.empty()) {
    RETURN_IF_ERROR(
        ConfinedRealPath(tokenizer, options_.model_roots, "model.tokenizer")
            .status());
  }
  SWEEPD_LOG(INFO) << "loading model " << dir << " ("
                   << engine::DTypeName(dtype) << ") for a task";
  absl::Status s = LoadLocked(dir, same_model ? fingerprint_ : ref.fingerprint,
                              dtype, tokenizer);
  if (!s.ok()) return absl::UnavailableError(s.ToString());
  return Model{engine_, tokenizer_, model_dir_};
}

int64_t LmBackend::total_layer_forwards() const {
  absl::MutexLock lock(&mu_);
  return retired_layer_forwards_ +
         (engine_ != nullptr ? engine_->total_layer_forwards() : 0);
}

// ---- LmExecutor
// ------------------------------------------------------------------

namespace {

// One engine forward into the worker's metrics (layer-forwards from the
// engine's counter, read before and after).
void RecordForward(WorkerMetrics* metrics, const engine::Engine& engine,
                   int64_t layer_forwards_before, double seconds) {
  if (metrics == nullptr) return;
  metrics->RecordForward(engine.total_layer_forwards() - layer_forwards_before,
                         seconds);
}

// One sequence fed to the engine: an eval window or a probe prompt/chunk.
struct Sequence {
  int category = 0;  // index into the stream's categories; 0 = "all" only
  std::vector<int32_t> tokens;
  std::vector<int32_t> targets;  // -1 = not scored
  int rank_pos = -1;             // probe: position whose target is ranked
  // Eval window that also carries a probe record (prefix sharing, first window
  // of the record only): the probe sequence is positions [0, probe_len) of this
  // window, ranked at probe_rank_pos (-1 = no target). probe_len 0 = none.
  int probe_len = 0;
  int probe_rank_pos = -1;
};

struct Batch {
  int64_t seq = 0;
  std::vector<int> members;  // indices into the stream's sequences
};

// Running sums of one task, per category (index 0 = "all").
struct Accumulator {
  // eval
  std::vector<double> nll_sum;
  std::vector<int64_t> tokens;
  // probe: [category][layer]
  std::vector<std::vector<double>> bi_sum, norm_sum, rank_sum;
  std::vector<std::vector<int64_t>> top1;
  std::vector<double> decision_sum;
  std::vector<int64_t> prompts;

  void Init(size_t categories, int layers) {
    nll_sum.assign(categories, 0.0);
    tokens.assign(categories, 0);
    bi_sum.assign(categories, std::vector<double>(layers, 0.0));
    norm_sum = rank_sum = bi_sum;
    top1.assign(categories, std::vector<int64_t>(layers, 0));
    decision_sum.assign(categories, 0.0);
    prompts.assign(categories, 0);
  }
};

// A task's job with its kind (eval / probe): the stream and share keys read
// both.
struct LmTaskSpec : LmJobSpec {
  std::string kind;
};

struct TaskRun {
  size_t index = 0;
  LmTaskSpec spec;
  std::vector<engine::Intervention> interventions;
  int start_layer = 0;  // FirstTouchedLayer
  bool done = false;    // sink called
  double seconds = 0.0;
  Accumulator acc;
};

// Eval and probe streams with equal ShareKey can share the unablated pass
// (model, dataset shard, BOS policy).
std::string ShareKey(const LmTaskSpec& s) {
  return absl::StrCat(s.model.path, "\n", s.model.fingerprint, "\n",
                      s.model.dtype, "\n", s.model.tokenizer, "\n", s.data.path,
                      "\n", TextSplitName(s.data.split), "\n",
                      s.data.max_records, "\n", s.data.shard_index, "\n",
                      s.data.num_shards, "\n", s.windowing.bos_name());
}

std::string StreamKey(const LmTaskSpec& s) {
  return absl::StrCat(s.kind, "\n", s.model.path, "\n", s.model.fingerprint,
                      "\n", s.model.dtype, "\n", s.model.tokenizer, "\n",
                      s.data.path, "\n", TextSplitName(s.data.split), "\n",
                      s.data.max_records, "\n", s.data.shard_index, "\n",
                      s.data.num_shards, "\n", s.windowing.context_length, "\n",
                      s.windowing.stride, "\n", s.windowing.bos_name());
}

// The sequences of one stream (kind + shard + windowing), and its categories.
struct StreamData {
  std::vector<std::string> categories;  // [0] = "all"
  std::vector<Sequence> sequences;
  std::vector<Batch> batches;
  // eval: per record of the shard, the index of its first window in
  // `sequences` (-1 = the record has no window).
  std::vector<int> record_first_sequence;
};

absl::StatusOr<StreamData> BuildStream(const LmTaskSpec& spec,
                                       const Tokenizer& tokenizer,
                                       int64_t max_batch_tokens) {
  StreamData out;
  ASSIGN_OR_RETURN(std::vector<TextRecord> records, ReadShard(spec.data));
  out.categories.push_back("all");
  std::map<std::string, int> category_index;
  const Windowing& w = spec.windowing;
  for (const TextRecord& r : records) {
    int category = 0;
    if (!r.category.empty()) {
      auto [it, inserted] = category_index.emplace(
          r.category, static_cast<int>(out.categories.size()));
      if (inserted) out.categories.push_back(r.category);
      category = it->second;
    }
    const std::string where = absl::StrCat(spec.data.path, ":", r.line);
    if (spec.kind == kEvalKind) {
      absl::StatusOr<std::vector<int32_t>> ids =
          tokenizer.Encode(r.text, w.bos);
      if (!ids.ok()) return Annotate(ids.status(), where + ": text");
      const std::vector<TokenWindow> windows =
          MakeWindows(static_cast<int64_t>(ids->size()), w);
      out.record_first_sequence.push_back(
          windows.empty() ? -1 : static_cast<int>(out.sequences.size()));
      for (const TokenWindow& win : windows) {
        Sequence s;
        s.category = category;
        s.tokens.assign(ids->begin() + win.begin, ids->begin() + win.end);
        s.targets.assign(win.length(), -1);
        for (int64_t j = win.score_begin; j < win.end; ++j) {
          s.targets[j - 1 - win.begin] = (*ids)[j];
        }
        out.sequences.push_back(std::move(s));
      }
      continue;
    }
    // probe
    if (!r.prompt.empty()) {
      absl::StatusOr<std::vector<int32_t>> ids =
          tokenizer.Encode(r.prompt, w.bos);
      if (!ids.ok()) return Annotate(ids.status(), where + ": prompt");
      if (static_cast<int64_t>(ids->size()) > w.context_length) {
        ids->erase(ids->begin(), ids->end() - w.context_length);
      }
      Sequence s;
      s.category = category;
      s.tokens = std::move(*ids);
      s.targets.assign(s.tokens.size(), -1);
      if (!r.target.empty()) {
        absl::StatusOr<std::vector<int32_t>> target =
            tokenizer.Encode(r.target, BosPolicy::kOff);
        if (!target.ok()) return Annotate(target.status(), where + ": target");
        if (!target->empty()) {
          s.rank_pos = static_cast<int>(s.tokens.size()) - 1;
          s.targets[s.rank_pos] = (*target)[0];
        }
      }
      out.sequences.push_back(std::move(s));
      continue;
    }
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(r.text, w.bos);
    if (!ids.ok()) return Annotate(ids.status(), where + ": text");
    for (size_t b = 0; b < ids->size(); b += w.context_length) {
      const size_t e = std::min(ids->size(), b + w.context_length);
      Sequence s;
      s.category = category;
      s.tokens.assign(ids->begin() + b, ids->begin() + e);
      s.targets.assign(s.tokens.size(), -1);
      out.sequences.push_back(std::move(s));
    }
  }
  std::map<int64_t, std::vector<int>> by_length;
  for (size_t i = 0; i < out.sequences.size(); ++i) {
    by_length[static_cast<int64_t>(out.sequences[i].tokens.size())].push_back(
        static_cast<int>(i));
  }
  for (const auto& [len, members] : by_length) {
    const size_t per_batch =
        static_cast<size_t>(std::max<int64_t>(1, max_batch_tokens / len));
    for (size_t b = 0; b < members.size(); b += per_batch) {
      Batch batch;
      batch.seq = len;
      batch.members.assign(
          members.begin() + b,
          members.begin() + std::min(members.size(), b + per_batch));
      out.batches.push_back(std::move(batch));
    }
  }
  return out;
}

// Lets an eval stream carry the probe records of `probe` (same model, shard
// and BOS policy): for every record, the probe sequence (the prompt tokenised
// with the BOS policy) must be the first p tokens of the record's first eval
// window, uncut by the probe's context_length, and, when the record has a
// target, the eval target at position p - 1 must be the target's first token.
// The model is causal, so the eval forward's statistics at positions [0, p)
// are then those of the prompt-only forward. OK: every record's first window
// is marked (probe_len, probe_rank_pos). FAILED_PRECONDITION naming the first
// record that does not qualify: nothing is marked. Errors reading or
// tokenising the shard are returned as they are.
absl::Status AttachProbe(const LmTaskSpec& probe, const Tokenizer& tokenizer,
                         StreamData* eval) {
  ASSIGN_OR_RETURN(std::vector<TextRecord> records, ReadShard(probe.data));
  if (records.size() != eval->record_first_sequence.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat(probe.data.path, ": the shard holds ", records.size(),
                     " records for probe and ",
                     eval->record_first_sequence.size(), " for eval"));
  }
  struct Mark {
    int sequence, len, rank_pos;
  };
  std::vector<Mark> marks;
  marks.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const TextRecord& r = records[i];
    const std::string where = absl::StrCat(probe.data.path, ":", r.line);
    if (r.prompt.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(where,
                       ": the record has no prompt (probe chunks its "
                       "text)"));
    }
    const int seq = eval->record_first_sequence[i];
    if (seq < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          where, ": the record's text has no eval window (< 2 tokens)"));
    }
    const Sequence& window = eval->sequences[seq];
    absl::StatusOr<std::vector<int32_t>> ids =
        tokenizer.Encode(r.prompt, probe.windowing.bos);
    if (!ids.ok()) return Annotate(ids.status(), where + ": prompt");
    const size_t p = ids->size();
    if (p == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": the prompt has no tokens"));
    }
    if (p > static_cast<size_t>(probe.windowing.context_length)) {
      return absl::FailedPreconditionError(absl::StrCat(
          where, ": the prompt's ", p, " tokens exceed probe context_length ",
          probe.windowing.context_length));
    }
    if (p > window.tokens.size() ||
        !std::equal(ids->begin(), ids->end(), window.tokens.begin())) {
      return absl::FailedPreconditionError(absl::StrCat(
          where, ": the prompt's ", p,
          " tokens are not a prefix of the first eval window of the text (",
          window.tokens.size(), " tokens)"));
    }
    int rank_pos = -1;
    if (!r.target.empty()) {
      absl::StatusOr<std::vector<int32_t>> target =
          tokenizer.Encode(r.target, BosPolicy::kOff);
      if (!target.ok()) return Annotate(target.status(), where + ": target");
      if (!target->empty()) {
        rank_pos = static_cast<int>(p) - 1;
        if (window.targets[rank_pos] != (*target)[0]) {
          return absl::FailedPreconditionError(absl::StrCat(
              where, ": the eval target after the prompt (token ",
              window.targets[rank_pos], ") is not the target's first token (",
              (*target)[0], ")"));
        }
      }
    }
    marks.push_back(Mark{seq, static_cast<int>(p), rank_pos});
  }
  for (const Mark& m : marks) {
    eval->sequences[m.sequence].probe_len = m.len;
    eval->sequences[m.sequence].probe_rank_pos = m.rank_pos;
  }
  return absl::OkStatus();
}

engine::ForwardRequest MakeRequest(const StreamData& data, const Batch& batch) {
  engine::ForwardRequest req;
  req.batch = static_cast<int64_t>(batch.members.size());
  req.seq = batch.seq;
  req.tokens.reserve(req.batch * req.seq);
  req.targets.reserve(req.batch * req.seq);
  for (int m : batch.members) {
    const Sequence& s = data.sequences[m];
    req.tokens.insert(req.tokens.end(), s.tokens.begin(), s.tokens.end());
    req.targets.insert(req.targets.end(), s.targets.begin(), s.targets.end());
  }
  return req;
}

void AccumulateEval(const StreamData& data, const Batch& batch,
                    const engine::ForwardResult& r, Accumulator* acc) {
  const int64_t S = batch.seq;
  for (size_t b = 0; b < batch.members.size(); ++b) {
    const Sequence& s = data.sequences[batch.members[b]];
    double sum = 0.0;
    int64_t n = 0;
    for (int64_t p = 0; p < S; ++p) {
      const int64_t i = static_cast<int64_t>(b) * S + p;
      if (!r.target_valid[i]) continue;
      sum += r.nll[i];
      ++n;
    }
    acc->nll_sum[0] += sum;
    acc->tokens[0] += n;
    if (s.category > 0) {
      acc->nll_sum[s.category] += sum;
      acc->tokens[s.category] += n;
    }
  }
}

// `stats[L]` points at layer L's statistics (from the task's own forward or,
// below its start layer, from the shared unablated pass). With `from_eval`
// the batch is an eval stream's: only windows carrying a probe record count,
// over their positions [0, probe_len), ranked at probe_rank_pos.
void AccumulateProbe(const StreamData& data, const Batch& batch,
                     const std::vector<const engine::LayerStats*>& stats,
                     bool from_eval, Accumulator* acc) {
  const int64_t S = batch.seq;
  const int N = static_cast<int>(stats.size());
  for (size_t b = 0; b < batch.members.size(); ++b) {
    const Sequence& s = data.sequences[batch.members[b]];
    const int64_t len = from_eval ? s.probe_len : S;
    const int rank_pos = from_eval ? s.probe_rank_pos : s.rank_pos;
    if (len == 0) continue;
    const int cats[2] = {0, s.category};
    const int ncats = s.category > 0 ? 2 : 1;
    int decision = N;
    for (int L = 0; L < N; ++L) {
      const engine::LayerStats& st = *stats[L];
      double bi = 0.0, norm = 0.0;
      for (int64_t p = 0; p < len; ++p) {
        bi += st.block_influence[b * S + p];
        norm += st.resid_out_norm[b * S + p];
      }
      int64_t rank = -1;
      if (rank_pos >= 0) rank = st.target_rank[b * S + rank_pos];
      if (rank == 0 && decision == N) decision = L;
      for (int k = 0; k < ncats; ++k) {
        acc->bi_sum[cats[k]][L] += bi;
        acc->norm_sum[cats[k]][L] += norm;
        if (rank >= 0) {
          acc->rank_sum[cats[k]][L] += static_cast<double>(rank);
          if (rank == 0) ++acc->top1[cats[k]][L];
        }
      }
    }
    for (int k = 0; k < ncats; ++k) {
      acc->tokens[cats[k]] += len;
      if (rank_pos >= 0) {
        ++acc->prompts[cats[k]];
        acc->decision_sum[cats[k]] += decision;
      }
    }
  }
}

TaskOutput MakeOutput(const TaskRun& t, const StreamData& data, int layers) {
  TaskOutput out;
  const Accumulator& a = t.acc;
  out.metrics.push_back(
      MetricRow{"bos", t.spec.windowing.bos == BosPolicy::kOn ? 1.0 : 0.0, {}});
  for (size_t c = 0; c < data.categories.size(); ++c) {
    const std::map<std::string, std::string> cat = {
        {"category", data.categories[c]}};
    if (t.spec.kind == kEvalKind) {
      out.metrics.push_back(MetricRow{"nll_sum", a.nll_sum[c], cat});
      out.metrics.push_back(
          MetricRow{"tokens", static_cast<double>(a.tokens[c]), cat});
      if (a.tokens[c] > 0) {
        const double mean = a.nll_sum[c] / static_cast<double>(a.tokens[c]);
        out.metrics.push_back(MetricRow{"nll_mean", mean, cat});
        out.metrics.push_back(MetricRow{"ppl", std::exp(mean), cat});
      }
      continue;
    }
    out.metrics.push_back(
        MetricRow{"tokens", static_cast<double>(a.tokens[c]), cat});
    out.metrics.push_back(
        MetricRow{"prompts", static_cast<double>(a.prompts[c]), cat});
    const double tokens = static_cast<double>(a.tokens[c]);
    const double prompts = static_cast<double>(a.prompts[c]);
    for (int L = 0; L < layers; ++L) {
      std::map<std::string, std::string> labels = cat;
      labels["layer"] = std::to_string(L);
      if (a.tokens[c] > 0) {
        out.metrics.push_back(MetricRow{"bi", a.bi_sum[c][L] / tokens, labels});
        out.metrics.push_back(
            MetricRow{"resid_norm", a.norm_sum[c][L] / tokens, labels});
      }
      if (a.prompts[c] > 0) {
        out.metrics.push_back(
            MetricRow{"lens_rank", a.rank_sum[c][L] / prompts, labels});
        out.metrics.push_back(MetricRow{
            "lens_top1", static_cast<double>(a.top1[c][L]) / prompts, labels});
      }
    }
    if (a.prompts[c] > 0) {
      out.metrics.push_back(
          MetricRow{"decision_layer", a.decision_sum[c] / prompts, cat});
    }
  }
  out.wall_seconds = t.seconds;
  return out;
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
    streams[StreamKey(run.spec)].members.push_back(runs.size());
    runs.push_back(std::move(run));
  }
  if (options_.prefix_reuse) {
    // One unablated pass per shard: the baseline probe tasks ride on an eval
    // stream of the same model, shard and BOS policy (docs/JOBS.md).
    std::map<std::string, std::string> eval_by_share;
    for (const auto& [key, s] : streams) {
      const LmTaskSpec& spec = runs[s.members[0]].spec;
      if (spec.kind == kEvalKind) eval_by_share.emplace(ShareKey(spec), key);
    }
    for (auto& [key, s] : streams) {
      const LmTaskSpec& spec = runs[s.members[0]].spec;
      if (spec.kind != kProbeKind) continue;
      auto host = eval_by_share.find(ShareKey(spec));
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
    absl::StatusOr<StreamData> data =
        BuildStream(first, *model->tokenizer, options_.max_batch_tokens);
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
        absl::Status attached =
            AttachProbe(runs[riders[0]].spec, *model->tokenizer, &*data);
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
      const Batch& batch = data->batches[bi];
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
      const engine::ForwardRequest base = MakeRequest(*data, batch);
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
              const Sequence& s = data->sequences[batch.members[b]];
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
      TaskOutput out = MakeOutput(t, *data, N);
      out.determinism = record;
      finish(t, std::move(out));
    }
    ++streams_done;
    ctx.SetProgress(static_cast<double>(streams_done) / streams.size());
  }
}

}  // namespace sweepd
