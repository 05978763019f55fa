#include "worker/jobs/generate_executor.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/chat_format.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/path_confinement.h"
#include "common/status.h"
#include "common/token_bans.h"
#include "worker/calib/checkpoint_editor.h"
#include "worker/calib/manifest_canary.h"
#include "worker/engine/decode.h"
#include "worker/engine/generator.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/determinism.h"
#include "worker/jobs/interventions.h"
#include "worker/verify/verifier_factory.h"

namespace sweepd {
namespace {

// Most bytes of samples one task result carries (ListResults pages are 3 MB;
// gRPC's default receive limit is 4 MB).
constexpr int64_t kMaxResultBytes = int64_t{3} << 20;

// The inline prompts, then the shard's records.
absl::StatusOr<std::vector<PromptSpec>> Prompts(
    const GenerateJobSpec& job, const std::vector<std::string>& data_roots) {
  std::vector<PromptSpec> prompts = job.prompts;
  if (!job.has_data) return prompts;
  if (!data_roots.empty()) {
    RETURN_IF_ERROR(
        ConfinedRealPath(job.data.path, data_roots, "data.dataset.path")
            .status());
  }
  ASSIGN_OR_RETURN(std::vector<TextRecord> records,
                   ReadRecords(job.data.path, job.data.max_records));
  const auto [begin, end] =
      ShardRange(static_cast<int64_t>(records.size()), job.data.shard_index,
                 job.data.num_shards);
  for (int64_t i = begin; i < end; ++i) {
    const TextRecord& r = records[i];
    PromptSpec p;
    p.text = !r.prompt.empty() ? r.prompt : r.text;
    p.reference = !r.reference.empty() ? r.reference : r.target;
    p.category = r.category;
    p.id = !r.id.empty() ? r.id : absl::StrCat(job.dataset_name, "/", i);
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// The position of the earliest stop string in `text`, or npos.
size_t FirstStop(const std::string& text,
                 const std::vector<std::string>& stop) {
  size_t first = std::string::npos;
  for (const std::string& s : stop) {
    const size_t at = text.find(s);
    if (at < first) first = at;
  }
  return first;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GenerateExecutor>> GenerateExecutor::Create(
    const std::string& kind, std::shared_ptr<LmBackend> backend,
    const GenerateExecutorOptions& options) {
  if (kind != kGenerateKind && kind != kCanaryKind) {
    return absl::InvalidArgumentError(
        absl::StrCat("GenerateExecutor runs \"generate\" or \"canary\", not \"",
                     kind, "\""));
  }
  if (backend == nullptr) {
    return absl::InvalidArgumentError("GenerateExecutor needs an LmBackend");
  }
  return std::unique_ptr<GenerateExecutor>(
      new GenerateExecutor(kind, std::move(backend), options));
}

GenerateExecutor::GenerateExecutor(std::string kind,
                                   std::shared_ptr<LmBackend> backend,
                                   const GenerateExecutorOptions& options)
    : kind_(std::move(kind)),
      backend_(std::move(backend)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

void GenerateExecutor::RunGroup(const std::vector<TaskInput>& tasks,
                                TaskContext& ctx, const TaskSink& sink) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (ctx.task_cancelled(i)) {
      sink(i, absl::CancelledError("task cancelled"));
      continue;
    }
    sink(i, RunTask(tasks[i], ctx, i));
    ctx.SetProgress(static_cast<double>(i + 1) / tasks.size());
  }
}

absl::StatusOr<TaskOutput> GenerateExecutor::RunTask(const TaskInput& task,
                                                     TaskContext& ctx,
                                                     size_t index) {
  const auto* job = std::get_if<GenerateJobSpec>(&task.job);
  if (job == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("task ", task.task_key,
                                                   " of kind ", task.kind,
                                                   " carries no generate job"));
  }
  const bool canary = task.kind == kCanaryKind;
  const int64_t t0 = clock_->NowMs();
  ASSIGN_OR_RETURN(LmBackend::Model model, backend_->Acquire(job->model));
  const ModelConfig& cfg = model.engine->config();
  const Tokenizer& tok = *model.tokenizer;
  std::vector<engine::Intervention> interventions = job->interventions;
  RETURN_IF_ERROR(ResolveInterventionArtifacts(
      options_.artifacts, job->intervention_artifacts, job->intervention_fields,
      &interventions));
  RETURN_IF_ERROR(
      CheckInterventions(interventions, job->intervention_fields, cfg));
  ASSIGN_OR_RETURN(std::vector<PromptSpec> prompts,
                   Prompts(*job, options_.data_roots));
  if (prompts.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(task.kind, ": the task has no prompts"));
  }

  if (job->verifier.kind == "command" && !job->verifier.command.empty() &&
      std::find(options_.verifier_commands.begin(),
                options_.verifier_commands.end(),
                job->verifier.command[0]) == options_.verifier_commands.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "generate.verifier_spec.command: this worker does not run \"",
        job->verifier.command[0],
        "\"; its operator allows a program with sweep-worker "
        "--verifier-command ",
        job->verifier.command[0], " (docs/SECURITY.md)"));
  }

  // Prompt tokens, with the job's BOS policy (and chat turns).
  const BosPolicy bos = job->bos ? BosPolicy::kOn : BosPolicy::kOff;
  std::vector<std::vector<int32_t>> encoded;
  int64_t longest = 0;
  for (const PromptSpec& p : prompts) {
    absl::StatusOr<std::vector<int32_t>> ids;
    if (job->chat) {
      std::vector<ChatMessage> messages;
      if (!job->system.empty()) messages.push_back({"system", job->system});
      messages.push_back({"user", p.text});
      ids = EncodeGemmaChat(tok, messages, ChatOptions(), bos);
    } else {
      ids = tok.Encode(p.text, bos);
    }
    if (!ids.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt ", p.id, ": cannot be encoded: ", ids.status().message()));
    }
    if (ids->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt ", p.id, " has no tokens (empty text and bos off)"));
    }
    longest = std::max<int64_t>(longest, static_cast<int64_t>(ids->size()));
    encoded.push_back(std::move(*ids));
  }

  // Sampling parameters shared by every sample.
  auto banned = std::make_shared<std::vector<int32_t>>(job->banned_tokens);
  int64_t family_size = 0;
  if (!job->ban_strings.empty()) {
    ASSIGN_OR_RETURN(TokenFamily family,
                     FindTokenFamily(tok, job->ban_strings));
    family_size = family.size();
    banned->insert(banned->end(), family.ids.begin(), family.ids.end());
  }
  std::sort(banned->begin(), banned->end());
  banned->erase(std::unique(banned->begin(), banned->end()), banned->end());
  for (int32_t t : *banned) {
    if (t >= cfg.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "generate.banned_tokens: token ", t,
          " is outside the model's vocabulary of ", cfg.vocab_size));
    }
  }
  auto bias =
      std::make_shared<std::vector<std::pair<int32_t, float>>>(job->logit_bias);
  for (const auto& [t, b] : *bias) {
    if (t >= cfg.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "generate.logit_bias: token ", t,
          " is outside the model's vocabulary of ", cfg.vocab_size));
    }
  }
  std::vector<int32_t> stop_tokens;
  for (const char* name : {"<eos>", "<end_of_turn>"}) {
    if (auto id = tok.TokenToId(name); id.has_value())
      stop_tokens.push_back(*id);
  }
  const uint64_t task_hash = Hash64(task.task_key);
  std::vector<engine::GenerationPrompt> gen(prompts.size());
  for (size_t p = 0; p < prompts.size(); ++p) {
    gen[p].tokens = encoded[p];
    gen[p].max_new_tokens = job->max_new_tokens;
    gen[p].stop_tokens = stop_tokens;
    for (int s = 0; s < job->samples; ++s) {
      engine::SamplingParams sp;
      sp.temperature = job->temperature;
      sp.top_k = job->top_k;
      sp.top_p = job->top_p;
      sp.min_p = job->min_p;
      if (!bias->empty()) sp.logit_bias = bias;
      if (!banned->empty()) sp.banned = banned;
      sp.seed = engine::SampleSeed(task_hash, p, s);
      gen[p].samples.push_back(sp);
    }
  }

  // Generate.
  engine::DecodeOptions d;
  d.interventions = interventions;
  d.max_sequences = std::max(1, job->max_batch);
  d.max_sequence_tokens = longest + job->max_new_tokens + 1;
  d.page_size = options_.page_size;
  ASSIGN_OR_RETURN(std::unique_ptr<engine::DecodeSession> session,
                   model.engine->StartDecode(d));
  std::vector<std::vector<engine::GeneratedSample>> out(prompts.size());
  for (size_t p = 0; p < prompts.size(); ++p) out[p].resize(job->samples);
  engine::GenerationOptions g;
  g.max_batch = d.max_sequences;
  const int64_t total = static_cast<int64_t>(prompts.size()) * job->samples;
  int64_t finished = 0;
  WorkerMetrics* const metrics = options_.metrics;
  if (metrics != nullptr) {
    int64_t prompt_tokens = 0;
    for (const auto& e : encoded)
      prompt_tokens += static_cast<int64_t>(e.size());
    metrics->RecordPromptTokens(prompt_tokens);
    g.on_step = [metrics](double seconds, int sequences) {
      for (int i = 0; i < sequences; ++i)
        metrics->RecordInterTokenLatency(seconds);
    };
  }
  const int64_t forwards_before = session->layer_forwards();
  const int64_t forward_t0 = clock_->NowMs();
  g.on_sample = [&](engine::GeneratedSample s) {
    if (metrics != nullptr) {
      metrics->RecordGeneratedTokens(static_cast<int64_t>(s.tokens.size()));
      metrics->RecordTimeToFirstToken(s.time_to_first_token);
      metrics->RecordRequestLatency(s.seconds);
    }
    const int p = s.prompt, i = s.sample;
    out[p][i] = std::move(s);
    ctx.SetProgress(static_cast<double>(++finished) / total);
  };
  g.cancelled = [&] { return ctx.task_cancelled(index); };
  size_t longest_stop = 0;
  for (const std::string& s : job->stop) {
    longest_stop = std::max(longest_stop, s.size());
  }
  if (!job->stop.empty()) {
    // Decode only a tail long enough to hold any stop string (every token is
    // at least one byte; byte-fallback pieces may need a few more).
    g.should_stop = [&](int, int, const std::vector<int32_t>& tokens) {
      const size_t n = std::min(tokens.size(), longest_stop + 8);
      auto text = tok.Decode(
          absl::MakeConstSpan(tokens).subspan(tokens.size() - n), true);
      return text.ok() && FirstStop(*text, job->stop) != std::string::npos;
    };
  }
  ASSIGN_OR_RETURN(engine::GenerationStats stats,
                   engine::Generate(session.get(), gen, g));
  if (metrics != nullptr) {
    metrics->RecordForward(session->layer_forwards() - forwards_before,
                           (clock_->NowMs() - forward_t0) / 1000.0);
  }
  session.reset();

  // Samples.
  TaskOutput output;
  std::vector<verify::VerifyItem> items;
  int64_t tokens = 0, stopped = 0;
  double logprob_total = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (const engine::GeneratedSample& s : out[p]) {
      SampleRow row;
      row.prompt_index = static_cast<int>(p);
      row.sample_index = s.sample;
      row.prompt_id = prompts[p].id;
      row.category = prompts[p].category;
      ASSIGN_OR_RETURN(row.text, tok.Decode(s.tokens, /*skip_special=*/true));
      const size_t cut = FirstStop(row.text, job->stop);
      if (cut != std::string::npos) row.text.resize(cut);
      row.num_tokens = static_cast<int>(s.tokens.size());
      row.finish_reason = engine::FinishReasonName(s.finish);
      row.logprob_sum = s.logprob_sum;
      if (job->token_logprobs) {
        row.token_logprobs = s.logprobs;
        row.token_ids = s.tokens;
      }
      tokens += row.num_tokens;
      logprob_total += s.logprob_sum;
      if (s.finish != engine::FinishReason::kLength) ++stopped;
      items.push_back({prompts[p].text, row.text, prompts[p].reference,
                       prompts[p].category});
      output.samples.push_back(std::move(row));
    }
  }

  // A task's result travels in one message and is listed in pages of a few
  // MB: refuse a result that would not fit, naming the remedy.
  int64_t result_bytes = 0;
  for (const SampleRow& row : output.samples) {
    result_bytes +=
        static_cast<int64_t>(row.text.size() + row.prompt_id.size() +
                             row.category.size()) +
        8 * static_cast<int64_t>(row.token_ids.size()) + 48;
  }
  if (result_bytes > kMaxResultBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        task.kind, ": the task's ", output.samples.size(), " samples take ",
        result_bytes >> 20, " MB, over the ", kMaxResultBytes >> 20,
        " MB a task result may hold; cut the dataset into more shards "
        "(datasets[].shards) or lower samples / max_new_tokens"));
  }

  // Scores.
  if (canary) {
    int passed = 0;
    for (size_t i = 0; i < output.samples.size(); ++i) {
      SampleRow& row = output.samples[i];
      const PromptSpec& p = prompts[row.prompt_index];
      int found = 0;
      for (const std::string& e : p.expect) {
        if (absl::StrContains(row.text, e)) ++found;
      }
      row.has_score = true;
      row.score =
          p.expect.empty() ? 1.0 : static_cast<double>(found) / p.expect.size();
      row.pass = found == static_cast<int>(p.expect.size());
      passed += row.pass;
      output.metrics.push_back(
          {"canary_pass",
           row.pass ? 1.0 : 0.0,
           {{"case", p.id}, {"bos", job->bos ? "on" : "off"}}});
    }
    output.metrics.push_back(
        {"canary_pass_rate",
         static_cast<double>(passed) / output.samples.size(),
         {{"bos", job->bos ? "on" : "off"}}});
    // On a materialized checkpoint (a sweepd manifest in its directory) the
    // verdict is also merged into the manifest, keyed by this task; a canary
    // run under interventions judges the model plus them, not the checkpoint,
    // and is not recorded.
    if (interventions.empty() && !model.model_dir.empty() &&
        PathExists(JoinPath(model.model_dir, calib::kManifestFile))) {
      calib::CanaryTaskReport report;
      report.task = task.task_key;
      report.cases = static_cast<int>(output.samples.size());
      report.passed = passed;
      for (const SampleRow& row : output.samples) {
        if (!row.pass) report.failed_cases.push_back(row.prompt_id);
      }
      if (absl::Status s = calib::RecordManifestCanary(model.model_dir, report);
          !s.ok()) {
        // The ledger holds the canary's rows either way.
        SWEEPD_LOG(WARNING)
            << "task " << task.task_key
            << ": canary status not recorded in the manifest of "
            << model.model_dir << ": " << s;
      }
    }
  } else if (!job->verifier.kind.empty()) {
    std::map<std::string, size_t> prompt_index;
    for (size_t p = 0; p < prompts.size(); ++p) {
      prompt_index.emplace(prompts[p].text, p);
    }
    // nll: the reference after the prompt's tokens (as generated from) and
    // the sample's text.
    verify::NllScorer nll = [&](absl::Span<const verify::VerifyItem> batch)
        -> absl::StatusOr<std::vector<double>> {
      std::vector<double> means;
      for (const verify::VerifyItem& item : batch) {
        std::vector<int32_t> seq = encoded[prompt_index.at(item.prompt)];
        ASSIGN_OR_RETURN(std::vector<int32_t> sample,
                         tok.Encode(item.sample, BosPolicy::kOff));
        seq.insert(seq.end(), sample.begin(), sample.end());
        ASSIGN_OR_RETURN(std::vector<int32_t> ref,
                         tok.Encode(item.reference, BosPolicy::kOff));
        if (ref.empty()) {
          return absl::InvalidArgumentError("the reference has no tokens");
        }
        engine::ForwardRequest r;
        r.tokens = seq;
        r.tokens.insert(r.tokens.end(), ref.begin(), ref.end());
        r.seq = static_cast<int64_t>(r.tokens.size());
        r.targets.assign(r.seq, -1);
        for (size_t j = 0; j < ref.size(); ++j) {
          r.targets[seq.size() - 1 + j] = ref[j];
        }
        // Steering positions as the generation resolved them.
        r.interventions = PromptRelativeSteering(
            interventions,
            static_cast<int64_t>(encoded[prompt_index.at(item.prompt)].size()));
        ASSIGN_OR_RETURN(engine::ForwardResult f, model.engine->Forward(r));
        double sum = 0;
        for (size_t j = 0; j < ref.size(); ++j)
          sum += f.nll[seq.size() - 1 + j];
        means.push_back(-sum / ref.size());
      }
      return means;
    };
    ASSIGN_OR_RETURN(std::unique_ptr<verify::Verifier> verifier,
                     verify::MakeVerifier(job->verifier, nll));
    ASSIGN_OR_RETURN(std::vector<verify::VerifyScore> scores,
                     verifier->Score(items));
    int64_t passed = 0, errors = 0, scored = 0;
    double score_sum = 0;
    for (size_t i = 0; i < scores.size(); ++i) {
      SampleRow& row = output.samples[i];
      if (!scores[i].error.empty()) {
        row.verifier_error = scores[i].error;
        ++errors;
        continue;
      }
      row.has_score = true;
      row.score = scores[i].score;
      row.pass = scores[i].pass;
      passed += row.pass;
      score_sum += row.score;
      ++scored;
    }
    const std::map<std::string, std::string> labels = {
        {"verifier", job->verifier.kind}};
    output.metrics.push_back(
        {"pass_rate", scored > 0 ? static_cast<double>(passed) / scored : 0.0,
         labels});
    output.metrics.push_back(
        {"mean_score", scored > 0 ? score_sum / scored : 0.0, labels});
    output.metrics.push_back(
        {"verifier_errors", static_cast<double>(errors), labels});
  }
  const int64_t n = static_cast<int64_t>(output.samples.size());
  output.metrics.push_back({"samples", static_cast<double>(n), {}});
  output.metrics.push_back(
      {"generated_tokens", static_cast<double>(tokens), {}});
  output.metrics.push_back(
      {"mean_token_logprob", tokens > 0 ? logprob_total / tokens : 0.0, {}});
  output.metrics.push_back(
      {"stop_fraction", n > 0 ? static_cast<double>(stopped) / n : 0.0, {}});
  output.metrics.push_back(
      {"decode_seconds", absl::ToDoubleSeconds(stats.decode_time), {}});
  if (!job->ban_strings.empty() || !job->banned_tokens.empty()) {
    output.metrics.push_back(
        {"banned_tokens",
         static_cast<double>(banned->size()),
         {{"families", absl::StrJoin(job->ban_strings, " ")},
          {"family_size", absl::StrCat(family_size)}}});
  }
  output.determinism =
      ToDeterminismRecord(engine::DescribeNumerics(model.engine->options()));
  output.wall_seconds = (clock_->NowMs() - t0) / 1000.0;
  return output;
}

}  // namespace sweepd
