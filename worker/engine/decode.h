// Token generation on an Engine: a DecodeSession holds a paged KV cache for a
// set of live sequences, prefills each prompt once, forks it into N sampled
// sequences that share the prompt's cache pages, and decodes one token for
// every live sequence per Step (docs/GENERATION.md). Plain C++ (no libtorch,
// no protobuf), like engine.h.
//
// Ownership: a session borrows its Engine, which must outlive it, and owns its
// cache memory on every rank until destroyed. Thread-safety: a session is used
// from one thread at a time; its calls and the engine's Forward calls are
// serialised by the engine (each holds all ranks for its duration).
#ifndef SWEEPD_WORKER_ENGINE_DECODE_H_
#define SWEEPD_WORKER_ENGINE_DECODE_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sweepd::engine {

struct Intervention;

// How one sequence picks its tokens (docs/GENERATION.md, "Sampling"). The
// logits are the model's softcapped logits z. In order: z += logit_bias;
// banned tokens -> -inf; temperature 0 picks the argmax (lowest id on ties);
// otherwise z / temperature, then top-k, top-p (nucleus: the smallest set of
// highest-probability tokens whose mass reaches top_p), min-p (tokens whose
// probability is at least min_p times the largest), and one draw by inverse
// CDF over the vocabulary in id order from the uniform of (seed, step).
struct SamplingParams {
  double temperature = 1.0;  // 0 = greedy
  int top_k = 0;             // 0 = off
  double top_p = 1.0;        // 1 = off
  double min_p = 0.0;        // 0 = off
  // (token, bias) added after the final softcap. Shared between sequences.
  std::shared_ptr<const std::vector<std::pair<int32_t, float>>> logit_bias;
  // Sorted, unique token ids that are never picked. Shared between sequences.
  std::shared_ptr<const std::vector<int32_t>> banned;
  // The sequence's counter-based generator key: the draw of step t is a pure
  // function of (seed, t), whatever else is in the batch and whichever worker
  // runs it (SampleSeed below derives it from task, prompt and sample).
  uint64_t seed = 0;
};

// A 64-bit key from its parts (SplitMix64 of each part in turn).
uint64_t SampleSeed(uint64_t task_hash, uint64_t prompt_index,
                    uint64_t sample_index);
// The uniform in (0, 1) of step `step` of the sequence keyed `seed`.
double SampleUniform(uint64_t seed, int64_t step);

// How a decode step attends over the cache where every row reads its own pages
// (the flat plan, docs/GENERATION.md "Shared-prefix attention"; the cascade
// keeps the ATen ops).
enum class DecodeAttention {
  // The fused paged kernel (kernels/paged_decode_attention.h) on CUDA, the
  // ATen ops elsewhere.
  kAuto,
  // The ATen ops: gathers of the pages, K re-derived, GEMM, softmax, GEMM.
  kAten,
  // The fused kernel everywhere; on CPU its reference implementation (slow:
  // for tests of the wiring).
  kFused,
};

struct DecodeOptions {
  // Applied to every forward of the session (prefill and decode), as in
  // ForwardRequest: skip, zero, re-init, head masks, replace_layer, and
  // steering, whose negative positions count from the prompt's length (an
  // empty list steers every prompt and generated token; docs/ENGINE.md).
  std::vector<Intervention> interventions;
  // Cache capacity: tokens per layer group the session may hold at once,
  // summed over its sequences (shared prompt pages count once). 0 = enough
  // for max_sequences sequences of max_sequence_tokens each.
  int64_t max_cached_tokens = 0;
  int max_sequences = 64;              // live at once
  int64_t max_sequence_tokens = 4096;  // prompt + generated
  int page_size = 16;                  // tokens per cache page
  // Shared-prefix attention (docs/GENERATION.md): a layer group's step
  // attends to a prompt's shared pages once for all its samples only when
  // that saves at least this many key reads per layer ((samples - 1) x
  // shared keys, summed over prompts); below it every row reads its own
  // pages, which takes ~3x fewer kernel launches. 0 = always.
  int64_t shared_attention_min_keys = 16384;
  // kAuto: the fused kernel on CUDA (it passed paged_decode_attention_gpu_test
  // and decode_gpu_test on an H100, and is faster: docs/GENERATION.md).
  DecodeAttention decode_attention = DecodeAttention::kAuto;
  // The LM head and sampler of a step as fused kernels on one CUDA rank
  // (kernels/token_sampler.h; docs/GENERATION.md, "Fused sampler"), captured
  // in the step's CUDA graph with the layers: the same semantics as the ATen
  // sampler, up to the summation order of floats. Where available (a build
  // with the CUDA kernels, TP 1); on by default (token_sampler_gpu_test and
  // decode_gpu_test's FusedSamplerEqualsTheAtenSampler passed on an H100, and
  // it is faster: docs/GENERATION.md); off, the ATen sampler runs eagerly
  // after the graph of the layers.
  bool fused_sampler = true;
  // CUDA graphs of the decode step's layers (with fused_sampler also the final
  // norm, LM head and sampler), one per batch-size bucket (docs/GENERATION.md,
  // "CUDA graphs"): used where the step can be replayed (one CUDA rank,
  // libtorch with CUDA, the fused attention on every layer, no steering or
  // head masks, a flat plan, no phase profiling); other steps run eagerly. On
  // by default; false runs every step eagerly.
  bool cuda_graphs = true;
  // The fused attention's key splits per (row, KV head) on CUDA (flash-
  // decoding blocks merged by log-sum-exp): 0 = PagedDecodeAttentionSplits'
  // choice for the step's rows and the device; n >= 1 forces n (tuning and
  // benchmarks: generate_bench --attention-key-splits).
  int attention_key_splits = 0;
};

// One sequence's token of a step.
struct DecodedToken {
  int64_t sequence = 0;
  int32_t token = 0;
  // log p(token) under the model's distribution softmax(z) (softcapped
  // logits, before bias, bans, temperature and truncation).
  float logprob = 0;
};

// One prompt for AddPrompts: its tokens and one SamplingParams per sample.
struct PromptRequest {
  std::vector<int32_t> tokens;
  std::vector<SamplingParams> samples;
};

// A prompt's size for admission: tokens, samples, and tokens each sample may
// generate.
struct AdmitSize {
  int64_t prompt_tokens = 0;
  int samples = 0;
  int64_t new_tokens = 0;
};

class DecodeSession {
 public:
  virtual ~DecodeSession() = default;

  // Prefills each prompt once and starts one sequence per entry of its
  // `samples`, all sharing their prompt's cache; returns each new sequence's
  // first token (step 0), per prompt in the order of `samples`. The prompts
  // are prefilled together in one forward, right-padded to the longest (pads
  // come after every real token, so causal attention never sees them).
  // RESOURCE_EXHAUSTED when the cache or max_sequences has no room for all of
  // them (nothing is changed then); INVALID_ARGUMENT for an empty or too long
  // prompt, a token outside the vocabulary or bad sampling parameters (named
  // by prompt index).
  virtual absl::StatusOr<std::vector<std::vector<DecodedToken>>> AddPrompts(
      const std::vector<PromptRequest>& prompts) = 0;
  // AddPrompts of one prompt.
  absl::StatusOr<std::vector<DecodedToken>> AddPrompt(
      const std::vector<int32_t>& prompt,
      const std::vector<SamplingParams>& samples);

  // Feeds every live sequence its last token and decodes the next one: one
  // token per live sequence, in ascending sequence id. FAILED_PRECONDITION
  // once a sequence reaches max_sequence_tokens (release it first).
  virtual absl::StatusOr<std::vector<DecodedToken>> Step() = 0;

  // Ends a sequence and frees the cache pages only it used.
  virtual void Release(int64_t sequence) = 0;

  virtual int live_sequences() const = 0;
  // Whether these prompts fit together now, each sample with room to grow
  // by the prompt's new_tokens.
  virtual bool CanAdmit(const std::vector<AdmitSize>& prompts) const = 0;
  bool CanAdmit(int64_t prompt_tokens, int samples, int64_t new_tokens) const {
    return CanAdmit({{prompt_tokens, samples, new_tokens}});
  }

  // Decoder layers executed by the session's forwards (one count per layer
  // per forward, skipped layers not counted, as ForwardResult).
  virtual int64_t layer_forwards() const = 0;
};

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_DECODE_H_
