// Verifier: scores generated samples (e.g. "is the final number the
// reference's?"). The built-in kinds and the external-command protocol are in
// docs/GENERATION.md, "Verifiers"; MakeVerifier (verifier_factory.h) builds
// one from a VerifierSpec (verifier_spec.h).
//
// Error contract: a verifier error is a per-sample error, never a crashed
// task. Score returns non-OK only for a bug or a broken spec; a sample that
// cannot be scored (no reference, a crashed or hung verifier command, garbage
// output) gets VerifyScore::error set and the rest of the batch is scored.
//
// Ownership and thread-safety: a Verifier is owned by its caller (a
// unique_ptr); Score may not be called concurrently on one object (the command
// verifier owns one child process). Different objects are independent.
#ifndef SWEEPD_WORKER_VERIFY_VERIFIER_H_
#define SWEEPD_WORKER_VERIFY_VERIFIER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sweepd::verify {

// One sample to score. `reference` may be empty (kinds that need it report a
// per-sample error).
struct VerifyItem {
  std::string prompt;
  std::string sample;
  std::string reference;
  std::string category;
};

// The verdict on one item. A non-empty `error` means the sample could not be
// scored; `score` and `pass` are then meaningless (0 and false).
struct VerifyScore {
  double score = 0;
  bool pass = false;
  std::string error;
};

class Verifier {
 public:
  virtual ~Verifier() = default;
  // One VerifyScore per item, in order.
  virtual absl::StatusOr<std::vector<VerifyScore>> Score(
      absl::Span<const VerifyItem> items) = 0;
  // The kind, e.g. "numeric" (for results and logs).
  virtual std::string name() const = 0;
};

}  // namespace sweepd::verify

#endif  // SWEEPD_WORKER_VERIFY_VERIFIER_H_
