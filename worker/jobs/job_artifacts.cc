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

ArtifactRow ToArtifactRow(const ArtifactInfo& info) {
  ArtifactRow row;
  row.name = info.name;
  row.path = info.path;
  row.bytes = info.bytes;
  row.sha256 = info.sha256;
  return row;
}

}  // namespace sweepd
