// Path confinement: the check that a file sweepd or a worker is about to open
// really lies under one of its allowed roots (--model-root, --data-root) once
// every symlink is resolved. A directory inside a root may still hold a
// config.json or a shard that is a symlink to /etc or another user's files, so
// the check is made on each file opened, not only on the directory named.
// Roots are resolved too: a root that is itself a symlink is followed. A
// target anywhere under a root counts (a Hugging Face cache's snapshot links
// into its blobs/ directory stay inside the cache root).
//
// Stateless free functions; thread-safe. They touch the file system (realpath,
// readdir); keep them off gRPC reactor threads.
#ifndef SWEEPD_COMMON_PATH_CONFINEMENT_H_
#define SWEEPD_COMMON_PATH_CONFINEMENT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sweepd {

// realpath(path) when it lies under realpath(root) of one of `roots`; `roots`
// empty = no confinement (the resolved path is returned). PERMISSION_DENIED
// "<what> '<path>' resolves to <target>, outside <roots>"; NOT_FOUND when the
// file does not exist; FAILED_PRECONDITION when a root cannot be resolved.
absl::StatusOr<std::string> ConfinedRealPath(
    const std::string& path, const std::vector<std::string>& roots,
    absl::string_view what);

// Every file of model directory `dir` that a model loader or the fingerprint
// reads — config.json, tokenizer.json, *.safetensors, *.safetensors.index.json
// (those present) — and the directory itself resolve under `roots`. The first
// one that does not is named in the PERMISSION_DENIED error. `roots` empty =
// OK.
absl::Status CheckModelDirConfined(const std::string& dir,
                                   const std::vector<std::string>& roots);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_PATH_CONFINEMENT_H_
