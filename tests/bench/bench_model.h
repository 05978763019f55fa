// The model set-up the engine benchmarks share (tests/bench/*_bench.cc): the
// model flags (--model DIR | --random-weights --config FILE [--seed N],
// --tp, --dtype, --device, --threads) parsed into EngineOptions, a model
// directory for code that loads models by path (LmBackend, the jobs), random
// token batches, wall-clock seconds and peak device memory.
//
// Plain functions and a flags struct; no state shared between calls, safe on
// any thread.
#ifndef SWEEPD_TESTS_BENCH_BENCH_MODEL_H_
#define SWEEPD_TESTS_BENCH_BENCH_MODEL_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/engine.h"

namespace sweepd::bench {

// The model flags, bound to CLI options by AddModelFlags.
struct ModelFlags {
  engine::EngineOptions engine;  // model_dir, config_path, random_weights,
                                 // seed, tp_size, device, cpu_threads_per_rank
  std::string dtype = engine::DTypeName(engine::EngineOptions().dtype);
};

// Adds --model, --config, --random-weights, --seed, --tp, --dtype, --device
// and --threads to `app`, bound to `flags` (whose current values are the
// defaults).
void AddModelFlags(CLI::App& app, ModelFlags& flags);

// After parsing: sets flags.engine.dtype from flags.dtype; INVALID_ARGUMENT
// naming the flag for an unknown dtype, for neither --model nor --config, or
// for --config without --random-weights (and no --model).
absl::Status FinishModelFlags(ModelFlags& flags);

// The usage text of the model flags, for a binary's usage line.
inline constexpr char kModelFlagsUsage[] =
    "(--model DIR | --random-weights --config FILE [--seed N]) [--tp N] "
    "[--dtype float32|bfloat16] [--device cpu|cuda] [--threads N]";

// A model directory for code that loads a model by path (LmBackend, the job
// executors): --model as is, or (random weights) a fresh temp directory under
// /tmp holding the config as config.json and a generated tokenizer.json of the
// config's vocabulary; `*temp_dir` is set to it (the caller removes it, "" for
// --model). The engine options to load it get model_dir = that directory.
absl::StatusOr<std::string> ModelDirFor(const ModelFlags& flags,
                                        std::string* temp_dir);

// Makes `dir` (and parents) a random-weights model directory: the config
// copied as config.json and a generated tokenizer.json of its vocabulary.
absl::Status WriteConfigAndTokenizer(const std::string& config_path,
                                     const std::string& dir);

// `batch` x `seq` uniform random tokens in [0, vocab) from `seed`.
engine::ForwardRequest RandomRequest(int64_t batch, int64_t seq, int vocab,
                                     uint32_t seed);

// Seconds since `start`.
double Seconds(std::chrono::steady_clock::time_point start);

// Peak allocated bytes of `device` since the last reset, in GB (1e9); -1
// where the backend does not report it (CPU).
double PeakDeviceGb(int device);

}  // namespace sweepd::bench

#endif  // SWEEPD_TESTS_BENCH_BENCH_MODEL_H_
