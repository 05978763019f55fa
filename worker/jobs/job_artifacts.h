// What executors share to use the worker's artifact store (sweep-worker
// --artifact-root, docs/ARTIFACTS.md): the one error a job that needs the
// store gets on a worker without one, verified reads of the input artifacts a
// spec names (a missing one is retryable), and the store's object reference
// as a result row. Executors take the store as `std::shared_ptr<ArtifactStore>
// artifacts` in their options struct (null = the worker has none);
// RegisterLmExecutors hands every executor the worker's store.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_WORKER_JOBS_JOB_ARTIFACTS_H_
#define SWEEPD_WORKER_JOBS_JOB_ARTIFACTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/artifact_store.h"
#include "worker/jobs/executor.h"

namespace sweepd {

// The store, or FAILED_PRECONDITION (a permanent task failure,
// IsPermanentTaskError) "<what> needs --artifact-root on the worker ..." when
// `store` is null. `what` names the job or the part of it that reads or
// writes artifacts ("capture", "steer intervention at layer 3").
absl::StatusOr<ArtifactStore*> RequireArtifactStore(
    const std::shared_ptr<ArtifactStore>& store, absl::string_view what);

// An input artifact a task's spec names (an ArtifactRef {path, sha256}; an
// empty sha256 = the one in the path), verified against its SHA-256: its
// absolute local path (ResolveInputArtifact) or its bytes
// (ReadInputArtifact). Fails as RequireArtifactStore without a store; other
// errors are the store's, prefixed with `what`, except that a missing object
// is UNAVAILABLE (retryable) rather than NOT_FOUND (permanent): on a bucket
// mount or a synced store it may not be visible on this box yet. DATA_LOSS
// stays retryable, INVALID_ARGUMENT (not an object path) permanent.
absl::StatusOr<std::string> ResolveInputArtifact(
    const std::shared_ptr<ArtifactStore>& store, const std::string& path,
    const std::string& sha256, absl::string_view what);
absl::StatusOr<std::string> ReadInputArtifact(
    const std::shared_ptr<ArtifactStore>& store, const std::string& path,
    const std::string& sha256, absl::string_view what);

// A committed object as a result's artifact row (TaskOutput::artifacts).
ArtifactRow ToArtifactRow(const ArtifactInfo& info);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_JOB_ARTIFACTS_H_
