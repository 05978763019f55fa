// The `command` verifier: an external process speaking JSONL on stdin/stdout
// (docs/GENERATION.md, "Verifiers", has the protocol; the shipped example is
// examples/verifiers/numeric_verifier.py).
//
// Per batch of at most batch_size items, one request line per item
//   {"id": 0, "prompt": "...", "sample": "...", "reference": "...",
//    "category": "..."}
// is written, and one response line per item is read, in any order, matched
// by id:
//   {"id": 0, "score": 1.0, "pass": true}   or   {"id": 0, "error": "..."}
// ("pass" optional: pass_threshold decides, else score > 0). ids are the
// items' indices in the Score call. The process is started on first use and
// kept across batches and calls. A batch that times out (spec.timeout for all
// its responses), whose process exits, or that gets a line that is not a valid
// response ends that process; the items still unanswered get a per-sample
// error naming what happened ("verifier command exited with status 3 after 2
// of 5 responses", "verifier command timed out after 200ms (0 of 5
// responses)"), and the next batch
// starts a new process. A command that cannot be started gives per-sample
// errors too. Score never fails for a sample's sake.
//
// Ownership: owns its child process (killed with its process group on
// destruction). Not thread-safe: one Score at a time.
#ifndef SWEEPD_WORKER_VERIFY_COMMAND_VERIFIER_H_
#define SWEEPD_WORKER_VERIFY_COMMAND_VERIFIER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "worker/verify/verifier.h"
#include "worker/verify/verifier_spec.h"

namespace sweepd::verify {

// INVALID_ARGUMENT naming verifier.command (empty argv or an empty argv[0]),
// verifier.timeout (<= 0) or verifier.batch_size (< 1). Starts nothing.
absl::StatusOr<std::unique_ptr<Verifier>> CreateCommandVerifier(
    const VerifierSpec& spec);

}  // namespace sweepd::verify

#endif  // SWEEPD_WORKER_VERIFY_COMMAND_VERIFIER_H_
