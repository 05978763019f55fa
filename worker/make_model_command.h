// `sweep-worker make-model`: writes a random-weight Gemma 4 model directory
// (config.json, safetensors, tokenizer.json) from a config file and a seed, by
// calling engine::MakeRandomModel (worker/engine/model_generator.h).
//
//   sweep-worker make-model --config FILE --seed N --out DIR
//                           [--dtype float32|bfloat16] [--shard-bytes N]
//
// Exit status: 0 success (prints "wrote DIR (...)"), 1 runtime error (bad
// config, unwritable directory), 2 usage error; messages go to the error
// stream. --help prints the usage and exits 0. Flags are parsed with CLI11; a
// repeated flag keeps its last value. Thread-safe (no shared state besides the
// streams). Part of the sweep-worker binary's library (sweepd::worker): the
// engine keeps the generator, this is a command.
#ifndef SWEEPD_WORKER_MAKE_MODEL_COMMAND_H_
#define SWEEPD_WORKER_MAKE_MODEL_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace sweepd {

// The command with its arguments (without the program and subcommand names)
// and explicit streams, for tests.
int RunMakeModelCommand(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err);

// Entry point for the dispatch table of sweep-worker: argv[0] is the
// subcommand name ("make-model"), the flags follow; uses std::cout /
// std::cerr.
int MakeModelMain(int argc, char** argv);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_MAKE_MODEL_COMMAND_H_
