// Executors' access to the artifact store. See job_artifacts.h.
#include "worker/jobs/job_artifacts.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sweepd {

absl::StatusOr<ArtifactStore*> RequireArtifactStore(
    const std::shared_ptr<ArtifactStore>& store, absl::string_view what) {
  if (store == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        what,
        " needs --artifact-root on the worker (sweep-worker --artifact-root "
        "DIR, the store sweepd's --artifact-root names; docs/ARTIFACTS.md)"));
  }
  return store.get();
}

namespace {

absl::Status AsInputError(const absl::Status& status, absl::string_view what) {
  const absl::StatusCode code = status.code() == absl::StatusCode::kNotFound
                                    ? absl::StatusCode::kUnavailable
                                    : status.code();
  return absl::Status(code, absl::StrCat(what, ": ", status.message()));
}

}  // namespace

absl::StatusOr<std::string> ResolveInputArtifact(
    const std::shared_ptr<ArtifactStore>& store, const std::string& path,
    const std::string& sha256, absl::string_view what) {
  absl::StatusOr<ArtifactStore*> s = RequireArtifactStore(store, what);
  if (!s.ok()) return s.status();
  absl::StatusOr<std::string> resolved = (*s)->Resolve(path, sha256);
  if (!resolved.ok()) return AsInputError(resolved.status(), what);
  return resolved;
}

absl::StatusOr<std::string> ReadInputArtifact(
    const std::shared_ptr<ArtifactStore>& store, const std::string& path,
    const std::string& sha256, absl::string_view what) {
  absl::StatusOr<ArtifactStore*> s = RequireArtifactStore(store, what);
  if (!s.ok()) return s.status();
  absl::StatusOr<std::string> bytes = (*s)->ReadBytes(path, sha256);
  if (!bytes.ok()) return AsInputError(bytes.status(), what);
  return bytes;
}

ArtifactRow ToArtifactRow(const ArtifactInfo& info) {
  ArtifactRow row;
  row.name = info.name;
  row.path = info.path;
  row.bytes = info.bytes;
  row.sha256 = info.sha256;
  return row;
}

}  // namespace sweepd
