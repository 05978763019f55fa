#include "worker/verify/text_verifiers.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "re2/re2.h"

namespace sweepd::verify {
namespace {

constexpr absl::string_view kReferencePlaceholder = "{reference}";

VerifyScore Verdict(bool match) {
  VerifyScore s;
  s.pass = match;
  s.score = match ? 1.0 : 0.0;
  return s;
}

VerifyScore Error(std::string message) {
  VerifyScore s;
  s.error = std::move(message);
  return s;
}

// exact and contains: one comparison of normalised texts.
class CompareVerifier : public Verifier {
 public:
  CompareVerifier(VerifierSpec spec, bool substring)
      : spec_(std::move(spec)), substring_(substring) {}

  absl::StatusOr<std::vector<VerifyScore>> Score(
      absl::Span<const VerifyItem> items) override {
    std::vector<VerifyScore> out;
    out.reserve(items.size());
    for (const VerifyItem& item : items) {
      if (item.reference.empty()) {
        out.push_back(Error(
            absl::StrCat(name(), " verifier: the item has no reference")));
        continue;
      }
      const std::string sample = NormalizeText(item.sample, spec_);
      const std::string reference = NormalizeText(item.reference, spec_);
      out.push_back(Verdict(substring_ ? absl::StrContains(sample, reference)
                                       : sample == reference));
    }
    return out;
  }
  std::string name() const override {
    return substring_ ? "contains" : "exact";
  }

 private:
  const VerifierSpec spec_;
  const bool substring_;
};

RE2::Options Re2Options(const VerifierSpec& spec) {
  RE2::Options options;
  options.set_log_errors(false);
  options.set_case_sensitive(!spec.case_insensitive);
  return options;
}

class RegexVerifier : public Verifier {
 public:
  // `fixed` is the compiled pattern when it has no {reference}, else null.
  RegexVerifier(VerifierSpec spec, std::unique_ptr<RE2> fixed)
      : spec_(std::move(spec)), fixed_(std::move(fixed)) {}

  absl::StatusOr<std::vector<VerifyScore>> Score(
      absl::Span<const VerifyItem> items) override {
    std::vector<VerifyScore> out;
    out.reserve(items.size());
    for (const VerifyItem& item : items) {
      if (fixed_ != nullptr) {
        out.push_back(Verdict(RE2::PartialMatch(item.sample, *fixed_)));
        continue;
      }
      if (item.reference.empty()) {
        out.push_back(Error(
            "regex verifier: the pattern uses {reference} but the item has no "
            "reference"));
        continue;
      }
      const std::string pattern = absl::StrReplaceAll(
          spec_.pattern,
          {{kReferencePlaceholder,
            RE2::QuoteMeta(NormalizeText(item.reference, spec_))}});
      RE2 re(pattern, Re2Options(spec_));
      if (!re.ok()) {  // cannot happen for a pattern that compiled with "x"
        out.push_back(Error(absl::StrCat("regex verifier: ", re.error())));
        continue;
      }
      out.push_back(Verdict(RE2::PartialMatch(item.sample, re)));
    }
    return out;
  }
  std::string name() const override { return "regex"; }

 private:
  const VerifierSpec spec_;
  const std::unique_ptr<RE2> fixed_;
};

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
         c == '\f';
}

}  // namespace

std::string NormalizeText(absl::string_view text, const VerifierSpec& spec) {
  if (spec.strip) text = absl::StripAsciiWhitespace(text);
  std::string out;
  out.reserve(text.size());
  bool in_space = false;
  for (char c : text) {
    if (spec.collapse_whitespace && IsAsciiSpace(c)) {
      if (!in_space) out.push_back(' ');
      in_space = true;
      continue;
    }
    in_space = false;
    out.push_back(spec.case_insensitive
                      ? absl::ascii_tolower(static_cast<unsigned char>(c))
                      : c);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Verifier>> CreateExactVerifier(
    const VerifierSpec& spec) {
  return std::make_unique<CompareVerifier>(spec, /*substring=*/false);
}

absl::StatusOr<std::unique_ptr<Verifier>> CreateContainsVerifier(
    const VerifierSpec& spec) {
  return std::make_unique<CompareVerifier>(spec, /*substring=*/true);
}

absl::StatusOr<std::unique_ptr<Verifier>> CreateRegexVerifier(
    const VerifierSpec& spec) {
  if (spec.pattern.empty()) {
    return absl::InvalidArgumentError(
        "verifier.pattern: required for kind 'regex'");
  }
  const bool uses_reference =
      absl::StrContains(spec.pattern, kReferencePlaceholder);
  // With {reference}, check the pattern with a literal in its place.
  const std::string probe =
      uses_reference
          ? absl::StrReplaceAll(spec.pattern, {{kReferencePlaceholder, "x"}})
          : spec.pattern;
  auto re = std::make_unique<RE2>(probe, Re2Options(spec));
  if (!re->ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("verifier.pattern: invalid regular expression '",
                     spec.pattern, "': ", re->error()));
  }
  return std::make_unique<RegexVerifier>(
      spec, uses_reference ? nullptr : std::move(re));
}

}  // namespace sweepd::verify
