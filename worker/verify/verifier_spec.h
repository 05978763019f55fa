// VerifierSpec: the plain description of a verifier chosen per sweep (what a
// `generate` job's spec converts to at the agent's edge). MakeVerifier
// (verifier_factory.h) validates it; errors name the field as
// "verifier.<field>". A value type; thread-compatible.
#ifndef SWEEPD_WORKER_VERIFY_VERIFIER_SPEC_H_
#define SWEEPD_WORKER_VERIFY_VERIFIER_SPEC_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace sweepd::verify {

struct VerifierSpec {
  // "exact" | "contains" | "regex" | "numeric" | "command" | "nll".
  std::string kind;

  // Text comparison (exact, contains; regex's {reference} substitution and
  // case): applied to sample and reference alike.
  bool strip = true;                 // drop leading/trailing whitespace
  bool collapse_whitespace = false;  // runs of whitespace -> one space
  bool case_insensitive = false;     // ASCII case folding (regex: RE2's)

  // regex: an RE2 pattern searched anywhere in the sample (PartialMatch). The
  // literal "{reference}" in it is replaced by the item's reference, quoted
  // (RE2::QuoteMeta), so `(?m)^Answer: {reference}$` checks a formatted answer.
  std::string pattern;

  // numeric: pass when |x - y| <= max(abs_tolerance, rel_tolerance * |y|),
  // x the sample's final number, y the reference's.
  double abs_tolerance = 1e-6;
  double rel_tolerance = 0;

  // command: argv of the external verifier (argv[0] searched in PATH), the
  // deadline for one batch's responses, and items per batch.
  std::vector<std::string> command;
  absl::Duration timeout = absl::Seconds(60);
  int batch_size = 64;

  // command (responses without "pass") and nll: pass = score >=
  // pass_threshold. Unset: command's pass = score > 0; nll's pass = false.
  std::optional<double> pass_threshold;
};

}  // namespace sweepd::verify

#endif  // SWEEPD_WORKER_VERIFY_VERIFIER_SPEC_H_
