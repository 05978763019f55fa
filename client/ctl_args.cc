// CLI11 glue for sweepctl. See ctl_args.h.
#include "client/ctl_args.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sweepd {

CLI::Option* AddCtlValueFlag(CLI::App& app, const std::string& name,
                             std::string* value) {
  return app.add_option(name, *value)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

CLI::Option* AddCtlListFlag(CLI::App& app, const std::string& name,
                            std::vector<std::string>* values) {
  return app.add_option(name, *values)->allow_extra_args(false);
}

CLI::Option* AddCtlBoolFlag(CLI::App& app, const std::string& name,
                            bool* value) {
  return app.add_flag(name, *value)->disable_flag_override();
}

absl::Status ParseCtlArgs(CLI::App& app, const std::vector<std::string>& args,
                          std::vector<std::string>* positional,
                          std::vector<std::string>* rest) {
  app.set_help_flag();
  app.allow_extras();
  if (positional != nullptr) app.add_option("args", *positional);
  // CLI11 takes its arguments last first.
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ArgumentMismatch& e) {
    // "--x: 1 required TEXT missing" or "x was given a disallowed flag
    // override".
    const std::string what = e.what();
    if (absl::StrContains(what, "disallowed flag override")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", what.substr(0, what.find(' ')), " takes no value"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(what.substr(0, what.find(':')), " needs a value"));
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  std::vector<std::string> extras = app.remaining();
  if (positional == nullptr) {
    *rest = std::move(extras);
    return absl::OkStatus();
  }
  for (const std::string& extra : extras) {
    if (extra == "--") continue;
    if (absl::StartsWith(extra, "-")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", extra.substr(0, extra.find('='))));
    }
    positional->push_back(extra);
  }
  return absl::OkStatus();
}

absl::Status CheckPositionalCount(const std::vector<std::string>& positional,
                                  size_t min, size_t max,
                                  const std::string& missing) {
  if (positional.size() < min) return absl::InvalidArgumentError(missing);
  if (positional.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", positional[max], "'"));
  }
  return absl::OkStatus();
}

}  // namespace sweepd
