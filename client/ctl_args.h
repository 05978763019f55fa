// CLI11 glue for sweepctl: declares a command's flags on a CLI::App and parses
// the command's arguments with it, reporting errors in sweepctl's words
// ("unknown flag --x", "--x needs a value", "--x takes no value", "missing
// argument", "unexpected argument 'y'"), so every command parses the same
// way. Flag values are kept as text; commands convert them and name the flag
// in their own errors.
//
// Stateless free functions; the App and the bound variables are the
// caller's. Not thread-safe per App (CLI11 is not).
#ifndef SWEEPD_CLIENT_CTL_ARGS_H_
#define SWEEPD_CLIENT_CTL_ARGS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace sweepd {

// "--name VALUE" or "--name=VALUE"; the last occurrence wins.
CLI::Option* AddCtlValueFlag(CLI::App& app, const std::string& name,
                             std::string* value);
// Repeatable "--name VALUE"; every occurrence is appended, in order.
CLI::Option* AddCtlListFlag(CLI::App& app, const std::string& name,
                            std::vector<std::string>* values);
// "--name" without a value.
CLI::Option* AddCtlBoolFlag(CLI::App& app, const std::string& name,
                            bool* value);

// Parses `args` with `app` (its help flag is turned off: sweepctl prints its
// own help). With `positional` set, arguments that are not flags go there, in
// order, and unknown flags are INVALID_ARGUMENT "unknown flag --x"; without
// it, everything `app` does not know is left for `rest` (which must then be
// set), in order, as the global parse of sweepctl needs.
absl::Status ParseCtlArgs(CLI::App& app, const std::vector<std::string>& args,
                          std::vector<std::string>* positional,
                          std::vector<std::string>* rest = nullptr);

// INVALID_ARGUMENT `missing` when fewer than `min` positional arguments were
// given, "unexpected argument 'x'" when more than `max`.
absl::Status CheckPositionalCount(const std::vector<std::string>& positional,
                                  size_t min, size_t max,
                                  const std::string& missing);

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_CTL_ARGS_H_
