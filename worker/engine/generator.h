// Continuous-batching generation over a DecodeSession (docs/GENERATION.md,
// "Continuous batching"): prompts wait in order; a prompt's samples join the
// decode batch as soon as the session has room for them (a prompt with more
// samples than fit joins in parts, each prefilling it again; prompts joining
// together are prefilled in one forward), every step
// decodes one token for every live sequence, and a sequence leaves the batch
// the moment it finishes (stop token, stop condition or max_new_tokens),
// making room for the next prompt. Plain C++.
//
// Thread-safety: Generate runs on the caller's thread; the callbacks are
// called on it.
#ifndef SWEEPD_WORKER_ENGINE_GENERATOR_H_
#define SWEEPD_WORKER_ENGINE_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "worker/engine/decode.h"

namespace sweepd::engine {

enum class FinishReason {
  kStopToken,      // a stop token (EOS, end of turn) was generated; kept
  kStopCondition,  // GenerationOptions::should_stop said so
  kLength,         // max_new_tokens reached
};
const char* FinishReasonName(FinishReason reason);  // stop / stop / length

struct GenerationPrompt {
  std::vector<int32_t> tokens;
  // One entry per sample.
  std::vector<SamplingParams> samples;
  int max_new_tokens = 64;
  // Generating any of these ends the sample (the token is kept).
  std::vector<int32_t> stop_tokens;
};

struct GeneratedSample {
  int prompt = 0;  // index into the prompts
  int sample = 0;  // index into the prompt's samples
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // per token, log p under the model
  double logprob_sum = 0;
  FinishReason finish = FinishReason::kLength;
  // Seconds from the Generate call (when every prompt is queued) to the
  // sample's first token and to its last.
  double time_to_first_token = 0;
  double seconds = 0;
};

struct GenerationOptions {
  // Most sequences decoded together (also bounded by the session).
  int max_batch = 64;
  // Prompts admitted together are prefilled in one forward of
  // prompts x longest-prompt tokens (padded); at most this many.
  int64_t max_prefill_tokens = 8192;
  // Called after each new token of a sample; true ends it (stop strings).
  std::function<bool(int prompt, int sample,
                     const std::vector<int32_t>& tokens)>
      should_stop;
  // Called once per finished sample, in finishing order.
  std::function<void(GeneratedSample)> on_sample;
  // Polled before every step; true stops generation with CANCELLED.
  std::function<bool()> cancelled;
  // Called after every decode step with its seconds and the sequences it
  // advanced (each sequence's inter-token latency).
  std::function<void(double seconds, int sequences)> on_step;
};

struct GenerationStats {
  int64_t prefills = 0;  // prefill forwards (each of one or more prompts)
  int64_t steps = 0;
  int64_t tokens = 0;  // generated, all samples
  absl::Duration prefill_time;
  absl::Duration decode_time;
  // Mean time from a prompt's admission to its first tokens (the prefill).
  absl::Duration mean_time_to_first_token;
  int max_live = 0;
};

// Runs every prompt to completion. INVALID_ARGUMENT for a prompt the session
// could never hold (named by index); other session errors pass through.
absl::StatusOr<GenerationStats> Generate(
    DecodeSession* session, const std::vector<GenerationPrompt>& prompts,
    const GenerationOptions& options);

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_GENERATOR_H_
