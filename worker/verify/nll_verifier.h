// The `nll` verifier: the mean log-probability of the item's reference as a
// continuation of prompt + sample, computed by the engine. This library has no
// engine: the caller passes an NllScorer callback (the generate job wires it
// to the engine) and NllVerifier is a thin adapter over it. score = the mean
// log-prob (<= 0, higher is better); pass = score >= pass_threshold when the
// spec sets one, else false. Items without a reference get a per-sample error
// and are not sent to the scorer; a scorer failure or a wrong number of
// values becomes a per-sample error on the items it was asked about.
//
// Ownership: keeps a copy of the callback (whatever it captures must outlive
// the verifier). Thread-safety: as the callback's.
#ifndef SWEEPD_WORKER_VERIFY_NLL_VERIFIER_H_
#define SWEEPD_WORKER_VERIFY_NLL_VERIFIER_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "worker/verify/verifier.h"
#include "worker/verify/verifier_spec.h"

namespace sweepd::verify {

// For each item: the mean over the reference's tokens of log p(token | prompt
// + sample + earlier reference tokens), in nats. One value per item, in order.
using NllScorer = std::function<absl::StatusOr<std::vector<double>>(
    absl::Span<const VerifyItem>)>;

// INVALID_ARGUMENT "verifier.kind: 'nll' needs the engine ..." if `scorer` is
// empty; "verifier.pass_threshold" if it is set and not finite.
absl::StatusOr<std::unique_ptr<Verifier>> CreateNllVerifier(
    const VerifierSpec& spec, NllScorer scorer);

}  // namespace sweepd::verify

#endif  // SWEEPD_WORKER_VERIFY_NLL_VERIFIER_H_
