// Model generator: writes a complete random-weight Gemma 4 model directory in
// Hugging Face layout (config.json, model.safetensors or shards +
// model.safetensors.index.json, tokenizer.json) from a config file and a seed.
// The weights are the same values that Engine::Create with random_weights and
// the same seed builds (worker/engine/random_init.h): matrices and embeddings
// N(0, initializer_range), RMSNorm weights 1 + 0.1·N(0, 1), and non-unit
// layer_scalar values U(0.5, 1.5). Stateless functions, thread-safe. The
// command line that calls it, `sweep-worker make-model`, is
// worker/make_model_command.h.
#ifndef SWEEPD_WORKER_ENGINE_MODEL_GENERATOR_H_
#define SWEEPD_WORKER_ENGINE_MODEL_GENERATOR_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace sweepd::engine {

struct MakeModelOptions {
  // "float32" or "bfloat16": the dtype the safetensors hold.
  std::string dtype = "float32";
  // > 0: shard the weights into files of at most this many bytes plus an index.
  uint64_t shard_bytes = 0;
  // Also write tokenizer.json (a generated tokenizer with exactly vocab_size
  // tokens).
  bool write_tokenizer = true;
};

// Creates `out_dir` (and parents) if needed; files are written atomically.
absl::Status MakeRandomModel(
    const std::string& config_path, uint64_t seed, const std::string& out_dir,
    const MakeModelOptions& options = MakeModelOptions());

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_MODEL_GENERATOR_H_
