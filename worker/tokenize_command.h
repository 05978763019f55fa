// `sweep-worker tokenize`: a debugging command that shows exactly which ids a
// tokenizer.json produces for a text (BOS problems show up as a missing or
// doubled id 2 for Gemma).
//
//   sweep-worker tokenize --tokenizer FILE [--bos on|off]   < text   -> [2,
//   818, 5279] sweep-worker tokenize --tokenizer FILE --decode [--skip-special]
//   < '[2, 818]' -> text
//
// Encoding reads all of stdin byte for byte (a trailing newline is tokenized
// too: use `printf %s` rather than `echo`) and prints the ids as one JSON array
// and a newline.
// --bos defaults to "on" (what Hugging Face's encode does by default); say
// --bos off to get the text's ids only. Decoding reads a JSON array of integer
// ids and prints the text with no added newline. Exit status: 0 success, 1
// runtime error (unreadable tokenizer, bad input), 2 usage error; messages go
// to stderr. Flags are parsed with CLI11. Thread-safe (no shared state besides
// the streams). Part of the sweep-worker binary's library (sweepd::worker), not
// of common/: common keeps the tokenizer, this is a command.
#ifndef SWEEPD_WORKER_TOKENIZE_COMMAND_H_
#define SWEEPD_WORKER_TOKENIZE_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace sweepd {

// The command with its arguments (without the program and subcommand names) and
// explicit streams, for tests.
int RunTokenizeCommand(const std::vector<std::string>& args, std::istream& in,
                       std::ostream& out, std::ostream& err);

// Entry point for the dispatch table of sweep-worker: argv[0] is the subcommand
// name
// ("tokenize"), the flags follow; uses std::cin / std::cout / std::cerr.
int TokenizeMain(int argc, char** argv);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_TOKENIZE_COMMAND_H_
