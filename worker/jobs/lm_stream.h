// The token streams of the eval / probe executor (lm_executor.h): a stream is
// the tasks of one kind, model, dataset shard and windowing; it is read and
// tokenised once into sequences (eval windows, probe prompts or text chunks),
// which are batched by length into engine forward requests. An eval stream can
// also carry the records of a baseline probe task of the same shard (prefix
// sharing, docs/JOBS.md), so one unablated pass serves both.
//
// Internal to the executor (worker/jobs/lm_*.cc). Plain value types and
// functions; each returned LmStream is owned by the caller. Thread-compatible:
// the functions hold no state (the tokenizer is thread-safe).
#ifndef SWEEPD_WORKER_JOBS_LM_STREAM_H_
#define SWEEPD_WORKER_JOBS_LM_STREAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tokenizer.h"
#include "worker/engine/engine.h"
#include "worker/jobs/task.h"

namespace sweepd {

// One sequence fed to the engine: an eval window or a probe prompt/chunk.
struct LmSequence {
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

// Sequences of one length that run in one forward (batch x seq tokens).
struct LmBatch {
  int64_t seq = 0;
  std::vector<int> members;  // indices into the stream's sequences
};

// A task's job with its kind (eval / probe): the stream and share keys read
// both.
struct LmTaskSpec : LmJobSpec {
  std::string kind;
};

// Eval and probe streams with equal share keys can share the unablated pass
// (model, dataset shard, BOS policy).
std::string LmShareKey(const LmTaskSpec& s);

// The stream a task belongs to: kind, model, dataset shard and windowing.
std::string LmStreamKey(const LmTaskSpec& s);

// The sequences of one stream (kind + shard + windowing), and its categories.
struct LmStream {
  std::vector<std::string> categories;  // [0] = "all"
  std::vector<LmSequence> sequences;
  std::vector<LmBatch> batches;
  // eval: per record of the shard, the index of its first window in
  // `sequences` (-1 = the record has no window).
  std::vector<int> record_first_sequence;
};

// Reads the shard of `spec`, tokenises every record as the stream's kind asks
// (eval: strided windows of the text; probe: the prompt, cut to
// context_length from the left, ranked at its last position when the record
// has a target, else the text in chunks of context_length) and batches the
// sequences of equal length, up to `max_batch_tokens` per forward (at least
// one sequence). Errors name the file and line.
absl::StatusOr<LmStream> BuildLmStream(const LmTaskSpec& spec,
                                       const Tokenizer& tokenizer,
                                       int64_t max_batch_tokens);

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
absl::Status AttachProbeToEvalStream(const LmTaskSpec& probe,
                                     const Tokenizer& tokenizer,
                                     LmStream* eval);

// The unablated forward request of one batch: its sequences' tokens and
// targets, row after row.
engine::ForwardRequest MakeBatchRequest(const LmStream& data,
                                        const LmBatch& batch);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_LM_STREAM_H_
