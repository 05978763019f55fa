#include "common/tokenizer_cli.h"

#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

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

// Parses the flags; returns false after writing the reason to `err`.
bool ParseFlags(const std::vector<std::string>& args, Flags* flags,
                std::ostream& err) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string name = arg;
    std::string value;
    bool has_value = false;
    const size_t eq = arg.find('=');
    if (absl::StartsWith(arg, "--") && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    const auto take_value = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= args.size()) {
        err << "tokenize: " << name << " needs a value\n" << kUsage;
        return false;
      }
      value = args[++i];
      return true;
    };
    if (name == "--tokenizer") {
      if (!take_value()) return false;
      flags->tokenizer = value;
    } else if (name == "--bos") {
      if (!take_value()) return false;
      if (value == "on") {
        flags->bos = BosPolicy::kOn;
      } else if (value == "off") {
        flags->bos = BosPolicy::kOff;
      } else {
        err << "tokenize: --bos must be 'on' or 'off', got '" << value << "'\n";
        return false;
      }
    } else if (name == "--decode" && !has_value) {
      flags->decode = true;
    } else if (name == "--skip-special" && !has_value) {
      flags->skip_special = true;
    } else if (name == "--help" || name == "-h") {
      err << kUsage;
      return false;
    } else {
      err << "tokenize: unknown argument '" << arg << "'\n" << kUsage;
      return false;
    }
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
