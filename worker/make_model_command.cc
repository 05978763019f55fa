// `sweep-worker make-model`. See make_model_command.h.
#include "worker/make_model_command.h"

#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "worker/engine/model_generator.h"

namespace sweepd {
namespace {

constexpr char kUsage[] =
    "usage: sweep-worker make-model --config FILE --seed N --out DIR "
    "[--dtype float32|bfloat16] [--shard-bytes N]\n";

struct Flags {
  std::string config;
  std::string out;
  uint64_t seed = 0;
  engine::MakeModelOptions options;
};

// Parses the flags with CLI11; returns 0 when the command should run, else the
// exit code (0 after --help, 2 after a usage error, written to `err`).
// `help` is set when --help was given.
int ParseFlags(const std::vector<std::string>& args, Flags* flags, bool* help,
               std::ostream& out, std::ostream& err) {
  CLI::App app{"sweep-worker make-model"};
  app.set_help_flag();
  app.allow_extras();
  // Every flag takes a value; a repeated flag keeps its last one.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--help,-h", *help);
  std::string seed, shard_bytes;
  app.add_option("--config", flags->config);
  app.add_option("--out", flags->out);
  const CLI::Option* seed_flag = app.add_option("--seed", seed);
  app.add_option("--dtype", flags->options.dtype);
  const CLI::Option* shard_flag = app.add_option("--shard-bytes", shard_bytes);
  // CLI11 takes the arguments in reverse order.
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ArgumentMismatch& e) {
    // "--seed: 1 required TEXT missing": a flag without its value.
    const std::string what = e.what();
    err << "make-model: flag " << what.substr(0, what.find(':'))
        << " needs a value\n"
        << kUsage;
    return 2;
  } catch (const CLI::ParseError& e) {
    err << "make-model: " << e.what() << "\n" << kUsage;
    return 2;
  }
  if (*help) {
    out << kUsage;
    return 0;
  }
  if (!app.remaining().empty()) {
    err << "make-model: unknown flag " << app.remaining().front() << "\n"
        << kUsage;
    return 2;
  }
  if (seed_flag->count() > 0 && !absl::SimpleAtoi(seed, &flags->seed)) {
    err << "make-model: --seed must be a non-negative integer, got " << seed
        << "\n";
    return 2;
  }
  if (shard_flag->count() > 0 &&
      !absl::SimpleAtoi(shard_bytes, &flags->options.shard_bytes)) {
    err << "make-model: --shard-bytes must be a non-negative integer, got "
        << shard_bytes << "\n";
    return 2;
  }
  if (flags->config.empty() || flags->out.empty() || seed_flag->count() == 0) {
    err << "make-model: --config, --seed and --out are required\n" << kUsage;
    return 2;
  }
  return 0;
}

}  // namespace

int RunMakeModelCommand(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err) {
  Flags flags;
  bool help = false;
  if (const int code = ParseFlags(args, &flags, &help, out, err);
      code != 0 || help) {
    return code;
  }
  const absl::Status s = engine::MakeRandomModel(flags.config, flags.seed,
                                                 flags.out, flags.options);
  if (!s.ok()) {
    err << "make-model: " << s << "\n";
    return 1;
  }
  out << "wrote " << flags.out << " (config.json, safetensors"
      << (flags.options.write_tokenizer ? ", tokenizer.json" : "") << ")\n";
  return 0;
}

int MakeModelMain(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return RunMakeModelCommand(args, std::cout, std::cerr);
}

}  // namespace sweepd
