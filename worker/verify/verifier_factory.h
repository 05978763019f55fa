// MakeVerifier: the one place a VerifierSpec becomes a Verifier (the
// registration table of verifier kinds). Errors are INVALID_ARGUMENT naming
// the field ("verifier.kind", "verifier.pattern", ...). Thread-safe (keeps no
// state); the verifier is owned by the caller.
#ifndef SWEEPD_WORKER_VERIFY_VERIFIER_FACTORY_H_
#define SWEEPD_WORKER_VERIFY_VERIFIER_FACTORY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/verify/nll_verifier.h"
#include "worker/verify/verifier.h"
#include "worker/verify/verifier_spec.h"

namespace sweepd::verify {

// The kinds MakeVerifier knows, in documentation order.
const std::vector<std::string>& VerifierKinds();

// Builds the verifier of spec.kind. `nll_scorer` is needed (and used) only
// for kind "nll"; without it "nll" is INVALID_ARGUMENT. Nothing is started
// (a command verifier starts its process on first use).
absl::StatusOr<std::unique_ptr<Verifier>> MakeVerifier(
    const VerifierSpec& spec, NllScorer nll_scorer = nullptr);

}  // namespace sweepd::verify

#endif  // SWEEPD_WORKER_VERIFY_VERIFIER_FACTORY_H_
