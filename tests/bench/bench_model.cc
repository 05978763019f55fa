// The shared model set-up of the engine benchmarks (bench_model.h).
#include "tests/bench/bench_model.h"

#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/model_config.h"
#include "common/status.h"
#include "common/tokenizer_gen.h"
#include "worker/engine/device_stats.h"

namespace sweepd::bench {

void AddModelFlags(CLI::App& app, ModelFlags& flags) {
  app.add_option("--model", flags.engine.model_dir, "checkpoint directory");
  app.add_option("--config", flags.engine.config_path,
                 "config.json of a random-weight model");
  app.add_flag("--random-weights", flags.engine.random_weights,
               "random weights built from --config on the device");
  app.add_option("--seed", flags.engine.seed, "random weights' seed");
  app.add_option("--tp", flags.engine.tp_size, "tensor-parallel ranks");
  app.add_option("--dtype", flags.dtype, "float32 | bfloat16 (bf16)");
  app.add_option("--device", flags.engine.device, "cpu | cuda");
  app.add_option("--threads", flags.engine.cpu_threads_per_rank,
                 "CPU threads per rank (0 = all)");
}

absl::Status FinishModelFlags(ModelFlags& flags) {
  absl::StatusOr<engine::DType> d = engine::ParseDType(flags.dtype);
  if (!d.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype: ", d.status().message()));
  }
  flags.engine.dtype = *d;
  if (flags.engine.model_dir.empty() && flags.engine.config_path.empty()) {
    return absl::InvalidArgumentError("give --model DIR or --config FILE");
  }
  if (flags.engine.model_dir.empty() && !flags.engine.random_weights) {
    return absl::InvalidArgumentError(
        "--config without --model needs --random-weights");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ModelDirFor(const ModelFlags& flags,
                                        std::string* temp_dir) {
  temp_dir->clear();
  if (!flags.engine.model_dir.empty()) return flags.engine.model_dir;
  ASSIGN_OR_RETURN(std::string dir, MakeTempDir("/tmp/sweepd_bench_model."));
  *temp_dir = dir;
  RETURN_IF_ERROR(WriteConfigAndTokenizer(flags.engine.config_path, dir));
  return dir;
}

absl::Status WriteConfigAndTokenizer(const std::string& config_path,
                                     const std::string& dir) {
  ASSIGN_OR_RETURN(ModelConfig cfg, ModelConfig::FromFile(config_path));
  RETURN_IF_ERROR(MakeDirs(dir));
  RETURN_IF_ERROR(CopyFile(config_path, dir + "/config.json"));
  ASSIGN_OR_RETURN(std::string tok, GenerateTokenizerJson(cfg.vocab_size));
  std::ofstream out(dir + "/tokenizer.json", std::ios::binary);
  out << tok;
  out.close();
  if (!out) {
    return absl::InternalError(
        absl::StrCat("cannot write ", dir, "/tokenizer.json"));
  }
  return absl::OkStatus();
}

engine::ForwardRequest RandomRequest(int64_t batch, int64_t seq, int vocab,
                                     uint32_t seed) {
  std::mt19937 rng(seed);
  engine::ForwardRequest req;
  req.batch = batch;
  req.seq = seq;
  req.tokens.resize(batch * seq);
  for (auto& t : req.tokens) t = static_cast<int32_t>(rng() % vocab);
  return req;
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

double PeakDeviceGb(int device) {
  const int64_t peak = engine::DevicePeakAllocatedBytes(device);
  return peak >= 0 ? peak / 1e9 : -1.0;
}

}  // namespace sweepd::bench
