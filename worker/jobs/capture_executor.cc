#include "worker/jobs/capture_executor.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/path_confinement.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "worker/calib/gram_file.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/determinism.h"
#include "worker/jobs/interventions.h"
#include "worker/jobs/job_artifacts.h"
#include "worker/jobs/task_loop.h"
#include "worker/jobs/windowing.h"

namespace sweepd {
namespace {

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [0, n) without modulo bias (rejection sampling).
uint64_t Below(uint64_t n, uint64_t* state) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  while (true) {
    const uint64_t r = SplitMix64(state);
    if (r < limit) return r % n;
  }
}

// The hidden_states off-by-one labels of a point (empty for other points).
std::map<std::string, std::string> PointLabels(const std::string& point) {
  std::map<std::string, std::string> labels;
  const std::string prefix = "hidden_states[";
  int k = 0;
  if (point.rfind(prefix, 0) == 0 && point.back() == ']' &&
      absl::SimpleAtoi(
          point.substr(prefix.size(), point.size() - prefix.size() - 1), &k)) {
    labels["hidden_states_index"] = absl::StrCat(k);
    labels["layer_index"] = absl::StrCat(k - 1);
  }
  return labels;
}

// One window of one document run through the engine, and the rows of it that
// are captured (window-relative positions, ascending).
struct Window {
  int64_t document = 0;  // global record index in the dataset
  int64_t begin = 0;     // token index of position 0 in the document
  std::vector<int32_t> tokens;
  std::vector<int64_t> rows;
};

// Raw rows of one point, keyed by (document, position).
struct RawRows {
  int64_t width = 0;
  std::vector<int64_t> tail_shape;  // shape after the token dim
  std::vector<std::tuple<int64_t, int64_t, std::vector<float>>> rows;
};

// A Gram accumulator's sums as a host Gram (no metadata).
calib::Gram ToHostGram(engine::GramSums sums) {
  calib::Gram g;
  g.d = sums.d;
  g.e = sums.e;
  g.xtx = std::move(sums.xtx);
  g.xty = std::move(sums.xty);
  g.yy = sums.yy;
  g.count = sums.count;
  return g;
}

// A Gram checkpoint (docs/CALIBRATION.md, "Checkpoints"): a text object
//   sweepd-capture-checkpoint 1
//   identity <sha256 of the task's inputs>
//   next_batch <n>
//   gram <object path> <sha256>     (one per point, in point order)
struct GramCheckpoint {
  std::string identity;
  size_t next_batch = 0;
  std::vector<std::pair<std::string, std::string>> grams;
};

std::string FormatCheckpoint(const GramCheckpoint& c) {
  std::string out =
      absl::StrCat("sweepd-capture-checkpoint 1\nidentity ", c.identity,
                   "\nnext_batch ", c.next_batch, "\n");
  for (const auto& [path, sha] : c.grams) {
    absl::StrAppend(&out, "gram ", path, " ", sha, "\n");
  }
  return out;
}

absl::StatusOr<GramCheckpoint> ParseCheckpoint(const std::string& text) {
  GramCheckpoint c;
  bool header = false;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() == 2 && f[0] == "sweepd-capture-checkpoint" && f[1] == "1") {
      header = true;
    } else if (f.size() == 2 && f[0] == "identity") {
      c.identity = f[1];
    } else if (f.size() == 2 && f[0] == "next_batch" &&
               absl::SimpleAtoi(f[1], &c.next_batch)) {
    } else if (f.size() == 3 && f[0] == "gram") {
      c.grams.emplace_back(f[1], f[2]);
    } else {
      return absl::DataLossError(
          absl::StrCat("capture checkpoint: bad line \"", line, "\""));
    }
  }
  if (!header) return absl::DataLossError("capture checkpoint: no header");
  return c;
}

}  // namespace

std::vector<int64_t> CapturePositionsOf(const CapturePositionsSpec& spec,
                                        int64_t document, int64_t num_tokens) {
  std::vector<int64_t> out;
  if (num_tokens <= 0) return out;
  switch (spec.mode) {
    case CapturePositionsSpec::Mode::kAll:
      out.resize(num_tokens);
      std::iota(out.begin(), out.end(), 0);
      return out;
    case CapturePositionsSpec::Mode::kLast:
      out.push_back(num_tokens - 1);
      return out;
    case CapturePositionsSpec::Mode::kSample:
      break;
  }
  const int64_t lo = std::max<int64_t>(spec.min_position, 0);
  if (lo >= num_tokens || spec.k <= 0) return out;
  const int64_t n = num_tokens - lo;
  const int64_t k = std::min<int64_t>(spec.k, n);
  const std::string key = Sha256Hex(
      absl::StrCat("sweepd.capture.sample\n", spec.seed, "\n", document));
  uint64_t state = 0;
  for (int i = 0; i < 16; ++i) {
    const char c = key[i];
    state =
        (state << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  // Floyd's algorithm: k distinct values of [0, n).
  std::set<int64_t> chosen;
  for (int64_t j = n - k; j < n; ++j) {
    const int64_t t = static_cast<int64_t>(Below(j + 1, &state));
    chosen.insert(chosen.count(t) ? j : t);
  }
  for (int64_t c : chosen) out.push_back(lo + c);
  return out;
}

absl::StatusOr<std::unique_ptr<CaptureExecutor>> CaptureExecutor::Create(
    std::shared_ptr<LmBackend> backend, const CaptureExecutorOptions& options) {
  if (backend == nullptr) {
    return absl::InvalidArgumentError("CaptureExecutor needs a backend");
  }
  if (options.max_batch_tokens < 1) {
    return absl::InvalidArgumentError(
        "CaptureExecutorOptions.max_batch_tokens must be >= 1");
  }
  if (options.checkpoint_tokens < 0) {
    return absl::InvalidArgumentError(
        "CaptureExecutorOptions.checkpoint_tokens must be >= 0");
  }
  return std::unique_ptr<CaptureExecutor>(
      new CaptureExecutor(std::move(backend), options));
}

CaptureExecutor::CaptureExecutor(std::shared_ptr<LmBackend> backend,
                                 const CaptureExecutorOptions& options)
    : backend_(std::move(backend)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

void CaptureExecutor::RunGroup(const std::vector<TaskInput>& tasks,
                               TaskContext& ctx, const TaskSink& sink) {
  RunTasksOneByOne<CaptureJobSpec>(
      kCaptureKind, tasks, ctx, sink,
      [&](const TaskInput& task, const CaptureJobSpec& job, size_t i) {
        return RunTask(task, job, ctx, i);
      });
}

absl::StatusOr<TaskOutput> CaptureExecutor::RunTask(const TaskInput& task,
                                                    const CaptureJobSpec& job,
                                                    TaskContext& ctx,
                                                    size_t index) {
  const int64_t t0 = clock_->NowMs();
  ASSIGN_OR_RETURN(ArtifactStore * store,
                   RequireArtifactStore(options_.artifacts, "capture"));
  if (job.data.path.empty()) {
    return absl::InvalidArgumentError("data.dataset.path: required");
  }
  if (!options_.data_roots.empty()) {
    RETURN_IF_ERROR(ConfinedRealPath(job.data.path, options_.data_roots,
                                     "data.dataset.path")
                        .status());
  }
  if (!job.gram_targets.empty() &&
      job.gram_targets.size() != job.points.size()) {
    return absl::InvalidArgumentError(
        "capture.gram_targets: one per point (\"\" = none)");
  }
  ASSIGN_OR_RETURN(LmBackend::Model model, backend_->Acquire(job.model));
  engine::Engine& engine = *model.engine;
  const ModelConfig& config = engine.config();
  std::vector<engine::Intervention> interventions = job.interventions;
  RETURN_IF_ERROR(ResolveInterventionArtifacts(
      options_.artifacts, job.intervention_artifacts, job.intervention_fields,
      &interventions));
  RETURN_IF_ERROR(
      CheckInterventions(interventions, job.intervention_fields, config));

  // Points: Gram accumulators (validated by the engine) and raw captures.
  std::vector<std::shared_ptr<engine::GramAccumulator>> grams;
  if (job.gram) {
    for (size_t i = 0; i < job.points.size(); ++i) {
      const std::string target =
          job.gram_targets.empty() ? "" : job.gram_targets[i];
      absl::StatusOr<std::shared_ptr<engine::GramAccumulator>> g =
          engine.NewGram(job.points[i], target);
      if (!g.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("capture.points[", i, "]: ", g.status().message()));
      }
      grams.push_back(std::move(*g));
    }
  }

  // Documents -> windows with their captured rows.
  ASSIGN_OR_RETURN(
      std::vector<TextRecord> all,
      ReadRecords(job.data.path, job.data.max_records, job.data.split));
  const auto [first, last] =
      ShardRange(static_cast<int64_t>(all.size()), job.data.shard_index,
                 job.data.num_shards);
  std::vector<Window> windows;
  for (int64_t doc = first; doc < last; ++doc) {
    const TextRecord& r = all[doc];
    const std::string& text = !r.text.empty() ? r.text : r.prompt;
    absl::StatusOr<std::vector<int32_t>> ids =
        model.tokenizer->Encode(text, job.windowing.bos);
    if (!ids.ok()) {
      return Annotate(ids.status(),
                      absl::StrCat(job.data.path, ":", r.line, ": text"));
    }
    const int64_t n = static_cast<int64_t>(ids->size());
    const std::vector<int64_t> keep = CapturePositionsOf(job.positions, doc, n);
    if (keep.empty()) continue;
    std::vector<TokenWindow> cut = MakeWindows(n, job.windowing);
    if (cut.empty()) cut.push_back(TokenWindow{0, n, 0});  // a 1-token document
    int64_t owned_from = 0;  // tokens before this were taken by earlier windows
    auto next = keep.begin();
    for (const TokenWindow& w : cut) {
      Window win;
      win.document = doc;
      win.begin = w.begin;
      while (next != keep.end() && *next < w.end) {
        if (*next >= owned_from) win.rows.push_back(*next - w.begin);
        ++next;
      }
      owned_from = w.end;
      if (win.rows.empty()) continue;
      win.tokens.assign(ids->begin() + w.begin, ids->begin() + w.end);
      windows.push_back(std::move(win));
    }
  }
  // Batches of equal length, in (length, document) order.
  std::map<int64_t, std::vector<size_t>> by_length;
  for (size_t i = 0; i < windows.size(); ++i) {
    by_length[static_cast<int64_t>(windows[i].tokens.size())].push_back(i);
  }
  std::vector<std::vector<size_t>> batches;
  for (const auto& [len, members] : by_length) {
    const size_t per = static_cast<size_t>(
        std::max<int64_t>(1, options_.max_batch_tokens / len));
    for (size_t b = 0; b < members.size(); b += per) {
      batches.emplace_back(members.begin() + b,
                           members.begin() + std::min(members.size(), b + per));
    }
  }

  // Gram-only tasks sum segments of checkpoint_tokens captured tokens on the
  // host and checkpoint them; a re-run resumes after the last checkpoint.
  const bool checkpointing =
      job.gram && !job.raw && options_.checkpoint_tokens > 0;
  const std::string checkpoint_key = absl::StrCat("capture\n", task.task_key);
  std::string identity;
  std::vector<calib::Gram> totals;  // host sums of the finished segments
  size_t first_batch = 0;
  if (checkpointing) {
    std::string inputs = absl::StrCat(
        "sweepd.capture.checkpoint\n", job.model.path, "\n",
        job.model.fingerprint, "\n", job.data.path, "\n", job.data.max_records,
        "\n", TextSplitName(job.data.split), "\n", job.data.shard_index, "/",
        job.data.num_shards, "\n", job.windowing.context_length, "/",
        job.windowing.stride, "/", job.windowing.bos_name(), "\n",
        absl::StrJoin(job.points, ","), "\n",
        absl::StrJoin(job.gram_targets, ","), "\n",
        static_cast<int>(job.positions.mode), "/", job.positions.k, "/",
        job.positions.min_position, "/", job.positions.seed, "\n",
        absl::StrJoin(job.intervention_fields, ","), "\n",
        options_.max_batch_tokens, "/", options_.checkpoint_tokens, "/",
        batches.size());
    identity = Sha256Hex(inputs);
    // A checkpoint that is missing, unreadable or of other inputs is ignored:
    // the task then starts from its first batch.
    auto resume = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(std::optional<ArtifactInfo> ref,
                       store->GetCheckpoint(checkpoint_key));
      if (!ref) return absl::OkStatus();
      ASSIGN_OR_RETURN(std::string text,
                       store->ReadBytes(ref->path, ref->sha256));
      ASSIGN_OR_RETURN(GramCheckpoint c, ParseCheckpoint(text));
      if (c.identity != identity || c.grams.size() != grams.size() ||
          c.next_batch == 0 || c.next_batch >= batches.size()) {
        return absl::FailedPreconditionError(
            "capture checkpoint of other inputs");
      }
      std::vector<calib::Gram> read;
      for (const auto& [path, sha] : c.grams) {
        ASSIGN_OR_RETURN(std::string file, store->Resolve(path, sha));
        ASSIGN_OR_RETURN(calib::Gram g, calib::ReadGramFile(file));
        read.push_back(std::move(g));
      }
      totals = std::move(read);
      first_batch = c.next_batch;
      return absl::OkStatus();
    };
    if (absl::Status s = resume(); !s.ok()) {
      SWEEPD_LOG(WARNING) << "task " << task.task_key
                          << ": ignoring its capture checkpoint: " << s;
    } else if (first_batch > 0) {
      SWEEPD_LOG(INFO) << "task " << task.task_key
                       << ": resuming capture at batch " << first_batch
                       << " of " << batches.size();
    }
  }
  // Adds the device sums to `totals` and starts new accumulators.
  auto flush_grams = [&]() -> absl::Status {
    for (size_t p = 0; p < grams.size(); ++p) {
      ASSIGN_OR_RETURN(engine::GramSums sums, engine.ReadGram(*grams[p]));
      calib::Gram g = ToHostGram(std::move(sums));
      if (totals.size() <= p) {
        totals.push_back(std::move(g));
      } else {
        RETURN_IF_ERROR(calib::AddGram(g, &totals[p]));
      }
      ASSIGN_OR_RETURN(grams[p],
                       engine.NewGram(grams[p]->point(), grams[p]->target()));
    }
    return absl::OkStatus();
  };
  int64_t segment_tokens = 0;

  std::vector<RawRows> raw(job.raw ? job.points.size() : 0);
  for (size_t bi = first_batch; bi < batches.size(); ++bi) {
    if (ctx.cancelled() || ctx.task_cancelled(index)) {
      return absl::CancelledError("task cancelled");
    }
    const std::vector<size_t>& batch = batches[bi];
    engine::ForwardRequest req;
    req.batch = static_cast<int64_t>(batch.size());
    req.seq = static_cast<int64_t>(windows[batch[0]].tokens.size());
    req.interventions = interventions;
    req.gram_rows.assign(req.batch * req.seq, 0);
    for (size_t b = 0; b < batch.size(); ++b) {
      const Window& w = windows[batch[b]];
      req.tokens.insert(req.tokens.end(), w.tokens.begin(), w.tokens.end());
      for (int64_t r : w.rows) req.gram_rows[b * req.seq + r] = 1;
    }
    // No NLL is needed: every target ignored.
    req.targets.assign(req.tokens.size(), -1);
    req.grams = grams;
    if (job.raw) req.captures = job.points;
    const int64_t f0 = clock_->NowMs();
    const int64_t layers0 = engine.total_layer_forwards();
    absl::StatusOr<engine::ForwardResult> result = engine.Forward(req);
    if (options_.metrics != nullptr) {
      options_.metrics->RecordForward(engine.total_layer_forwards() - layers0,
                                      (clock_->NowMs() - f0) / 1000.0);
    }
    if (!result.ok()) return Annotate(result.status(), "capture forward");
    for (size_t p = 0; p < raw.size(); ++p) {
      const engine::HostTensor& t = result->captures[job.points[p]];
      RawRows& rr = raw[p];
      rr.width = t.numel() / (req.batch * req.seq);
      rr.tail_shape.assign(t.shape.begin() + 2, t.shape.end());
      for (size_t b = 0; b < batch.size(); ++b) {
        const Window& w = windows[batch[b]];
        for (int64_t r : w.rows) {
          const float* src = t.data.data() + (b * req.seq + r) * rr.width;
          rr.rows.emplace_back(w.document, w.begin + r,
                               std::vector<float>(src, src + rr.width));
        }
      }
    }
    if (checkpointing) {
      for (size_t w : batch) segment_tokens += windows[w].rows.size();
      if (segment_tokens >= options_.checkpoint_tokens &&
          bi + 1 < batches.size()) {
        segment_tokens = 0;
        RETURN_IF_ERROR(flush_grams());
        GramCheckpoint c;
        c.identity = identity;
        c.next_batch = bi + 1;
        for (size_t p = 0; p < totals.size(); ++p) {
          ASSIGN_OR_RETURN(
              ArtifactInfo info,
              calib::PutGram(store,
                             absl::StrCat("checkpoint/gram/", job.points[p],
                                          "/", job.dataset_name, "/shard",
                                          job.data.shard_index),
                             totals[p]));
          c.grams.emplace_back(info.path, info.sha256);
        }
        ASSIGN_OR_RETURN(
            ArtifactInfo manifest,
            store->PutBytes(absl::StrCat("checkpoint/capture/", task.task_key),
                            FormatCheckpoint(c)));
        RETURN_IF_ERROR(store->SetCheckpoint(checkpoint_key, manifest));
      }
    }
    ctx.SetProgress(static_cast<double>(bi + 1) / batches.size());
  }
  if (!grams.empty()) RETURN_IF_ERROR(flush_grams());

  TaskOutput out;
  const engine::EngineOptions eopts = engine.options();
  const std::string compute_dtype = engine::DTypeName(eopts.dtype);
  const std::string shard = absl::StrCat(job.data.shard_index);
  auto labels_of = [&](const std::string& point) {
    std::map<std::string, std::string> labels = PointLabels(point);
    labels["point"] = point;
    labels["dataset"] = job.dataset_name;
    labels["shard"] = shard;
    return labels;
  };
  for (size_t p = 0; p < grams.size(); ++p) {
    calib::Gram& g = totals[p];
    const std::string target = grams[p]->target();
    g.metadata = PointLabels(job.points[p]);
    g.metadata["point"] = job.points[p];
    g.metadata["target"] = target;
    g.metadata["dataset"] = job.dataset_name;
    g.metadata["shard"] = shard;
    g.metadata["dtype"] = compute_dtype;
    const std::string name =
        absl::StrCat("gram/", job.points[p], "/", job.dataset_name, "/shard",
                     job.data.shard_index);
    ASSIGN_OR_RETURN(ArtifactInfo info, calib::PutGram(store, name, g));
    out.artifacts.push_back(ToArtifactRow(info));
    MetricRow row{"gram_tokens", static_cast<double>(g.count),
                  labels_of(job.points[p])};
    if (!target.empty()) row.labels["target"] = target;
    out.metrics.push_back(std::move(row));
  }
  if (checkpointing) {
    // The result is complete; the checkpoint's objects become garbage.
    if (absl::Status s = store->ClearCheckpoint(checkpoint_key); !s.ok()) {
      SWEEPD_LOG(WARNING) << "task " << task.task_key
                          << ": clearing its capture checkpoint: " << s;
    }
  }
  const bool bf16 = job.dtype == "bfloat16";
  for (size_t p = 0; p < raw.size(); ++p) {
    RawRows& rr = raw[p];
    // Canonical order: by (document, position), whatever the batching.
    std::sort(rr.rows.begin(), rr.rows.end(), [](const auto& a, const auto& b) {
      return std::tie(std::get<0>(a), std::get<1>(a)) <
             std::tie(std::get<0>(b), std::get<1>(b));
    });
    const int64_t n = static_cast<int64_t>(rr.rows.size());
    std::vector<int64_t> shape = {n};
    if (n == 0) {
      // No token captured: the width still follows from the point.
      shape.push_back(0);
    } else {
      shape.insert(shape.end(), rr.tail_shape.begin(), rr.tail_shape.end());
    }
    std::vector<int64_t> positions;
    positions.reserve(2 * n);
    std::string bytes;
    bytes.reserve(n * rr.width * (bf16 ? 2 : 4));
    for (const auto& [doc, pos, values] : rr.rows) {
      positions.push_back(doc);
      positions.push_back(pos);
      for (float v : values) {
        if (bf16) {
          const uint16_t b = FloatToBf16(v);
          bytes.append(reinterpret_cast<const char*>(&b), sizeof(b));
        } else {
          bytes.append(reinterpret_cast<const char*>(&v), sizeof(v));
        }
      }
    }
    SafetensorsWriter w;
    RETURN_IF_ERROR(w.Add("activations", bf16 ? StDtype::kBF16 : StDtype::kF32,
                          shape, bytes.data(), bytes.size()));
    RETURN_IF_ERROR(w.Add("positions", StDtype::kI64, {n, 2}, positions.data(),
                          positions.size() * sizeof(int64_t)));
    for (const auto& [k, v] : PointLabels(job.points[p])) w.SetMetadata(k, v);
    w.SetMetadata("point", job.points[p]);
    w.SetMetadata("dataset", job.dataset_name);
    w.SetMetadata("shard", shard);
    w.SetMetadata("dtype", job.dtype);
    w.SetMetadata("compute_dtype", compute_dtype);
    w.SetMetadata("tokens", absl::StrCat(n));
    const std::string name =
        absl::StrCat("raw/", job.points[p], "/", job.dataset_name, "/shard",
                     job.data.shard_index);
    ASSIGN_OR_RETURN(ArtifactInfo info, calib::PutSafetensors(store, name, w));
    out.artifacts.push_back(ToArtifactRow(info));
    out.metrics.push_back(MetricRow{"capture_tokens", static_cast<double>(n),
                                    labels_of(job.points[p])});
  }
  out.determinism = ToDeterminismRecord(engine::DescribeNumerics(eopts));
  out.wall_seconds = (clock_->NowMs() - t0) / 1000.0;
  return out;
}

}  // namespace sweepd
