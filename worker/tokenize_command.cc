// `sweep-worker tokenize`. See tokenize_command.h.
#include "worker/tokenize_command.h"

#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/tokenizer.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

constexpr char kUsage[] =
    "usage: sweep-worker tokenize --tokenizer FILE [--bos on|off]  < text\n"
    "       sweep-worker tokenize --tokenizer FILE --decode [--skip-special]  "
    "< '[ids]'\n"
    "Encodes stdin (all bytes, including a trailing newline) and prints the "
    "ids as a JSON\n"
    "array; --bos defaults to on. --decode reads a JSON array of ids and "
    "prints the text.\n";

struct Flags {
  std::string tokenizer;
  BosPolicy bos = BosPolicy::kOn;
  bool decode = false;
  bool skip_special = false;
};

// Parses the flags with CLI11; returns false after writing the reason to
// `err`.
bool ParseFlags(const std::vector<std::string>& args, Flags* flags,
                std::ostream& err) {
  CLI::App app{"sweep-worker tokenize"};
  app.set_help_flag();
  app.allow_extras();
  bool help = false;
  std::string bos = "on";
  app.add_flag("--help,-h", help);
  app.add_option("--tokenizer", flags->tokenizer)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--bos", bos)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--decode", flags->decode)->disable_flag_override();
  app.add_flag("--skip-special", flags->skip_special)->disable_flag_override();
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ArgumentMismatch& e) {
    const std::string what = e.what();
    if (absl::StrContains(what, "disallowed flag override")) {
      err << "tokenize: unknown argument '--" << what.substr(0, what.find(' '))
          << "=...'\n"
          << kUsage;
    } else {
      err << "tokenize: " << what.substr(0, what.find(':'))
          << " needs a value\n"
          << kUsage;
    }
    return false;
  } catch (const CLI::ParseError& e) {
    err << "tokenize: " << e.what() << "\n" << kUsage;
    return false;
  }
  if (help) {
    err << kUsage;
    return false;
  }
  if (!app.remaining().empty()) {
    err << "tokenize: unknown argument '" << app.remaining().front() << "'\n"
        << kUsage;
    return false;
  }
  if (bos == "on") {
    flags->bos = BosPolicy::kOn;
  } else if (bos == "off") {
    flags->bos = BosPolicy::kOff;
  } else {
    err << "tokenize: --bos must be 'on' or 'off', got '" << bos << "'\n";
    return false;
  }
  if (flags->tokenizer.empty()) {
    err << "tokenize: --tokenizer FILE is required\n" << kUsage;
    return false;
  }
  return true;
}

}  // namespace

int RunTokenizeCommand(const std::vector<std::string>& args, std::istream& in,
                       std::ostream& out, std::ostream& err) {
  Flags flags;
  if (!ParseFlags(args, &flags, err)) return 2;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromFile(flags.tokenizer);
  if (!tokenizer.ok()) {
    err << "tokenize: " << tokenizer.status().message() << "\n";
    return 1;
  }
  const std::string input((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  if (flags.decode) {
    const nlohmann::json ids_json =
        nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/
                              false);
    if (!ids_json.is_array()) {
      err << "tokenize: --decode expects a JSON array of integer ids on "
             "stdin\n";
      return 1;
    }
    std::vector<int32_t> ids;
    for (size_t i = 0; i < ids_json.size(); ++i) {
      const nlohmann::json& v = ids_json[i];
      if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN ||
          v.get<int64_t>() > INT32_MAX) {
        err << "tokenize: element " << i
            << " of the input array is not a 32-bit integer\n";
        return 1;
      }
      ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
    absl::StatusOr<std::string> text =
        (*tokenizer)->Decode(ids, flags.skip_special);
    if (!text.ok()) {
      err << "tokenize: " << text.status().message() << "\n";
      return 1;
    }
    out << *text;
    out.flush();
    return 0;
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      (*tokenizer)->Encode(input, flags.bos);
  if (!ids.ok()) {
    err << "tokenize: " << ids.status().message() << "\n";
    return 1;
  }
  out << "[" << absl::StrJoin(*ids, ", ") << "]\n";
  out.flush();
  return 0;
}

int TokenizeMain(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return RunTokenizeCommand(args, std::cin, std::cout, std::cerr);
}

}  // namespace sweepd
