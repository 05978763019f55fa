#include "coordinator/spec_paths.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/model_config.h"
#include "common/model_fingerprint.h"
#include "common/status.h"
#include "coordinator/spec_checks.h"

namespace sweepd::internal {
namespace {

// Collapses ".", ".." and repeated slashes without touching the file system.
std::string LexicallyNormal(const std::string& path) {
  std::vector<absl::string_view> out;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (!out.empty()) out.pop_back();
      continue;
    }
    out.push_back(part);
  }
  return absl::StrCat("/", absl::StrJoin(out, "/"));
}

bool IsInside(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root ||
         (path.size() > root.size() &&
          path.compare(0, root.size(), root) == 0 && path[root.size()] == '/');
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    return absl::ErrnoToStatus(errno, path);
  }
  return std::string(buf);
}

absl::StatusOr<std::string> CurrentDir() {
  char buf[PATH_MAX];
  if (getcwd(buf, sizeof(buf)) == nullptr)
    return absl::ErrnoToStatus(errno, "getcwd");
  return std::string(buf);
}

}  // namespace

absl::StatusOr<std::string> ResolveUnderRoot(const std::string& path,
                                             const std::string& root,
                                             absl::string_view field,
                                             absl::string_view what) {
  if (path.empty()) return Invalid(field, "required");
  std::string base = root;
  std::string real_root;
  if (root.empty()) {
    ASSIGN_OR_RETURN(base, CurrentDir());
  } else {
    auto r = RealPath(root);
    if (!r.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(field, ": the coordinator's ", what, " '", root,
                       "' is unusable: ", r.status().message()));
    }
    real_root = *r;
    base = real_root;
  }
  const std::string candidate =
      LexicallyNormal(path[0] == '/' ? path : absl::StrCat(base, "/", path));
  if (!root.empty() && !IsInside(candidate, real_root) &&
      !IsInside(candidate, LexicallyNormal(root))) {
    return absl::PermissionDeniedError(
        absl::StrCat(field, ": '", path, "' is outside the ", what, " ", root));
  }
  auto resolved = RealPath(candidate);
  if (!resolved.ok()) {
    if (absl::IsNotFound(resolved.status())) {
      return absl::NotFoundError(
          absl::StrCat(field, ": '", path, "' not found (", candidate, ")"));
    }
    return absl::Status(resolved.status().code(),
                        absl::StrCat(field, ": ", resolved.status().message()));
  }
  if (!root.empty() && !IsInside(*resolved, real_root)) {
    return absl::PermissionDeniedError(
        absl::StrCat(field, ": '", path, "' resolves to ", *resolved,
                     ", outside the ", what, " ", root));
  }
  return *resolved;
}

absl::StatusOr<ModelInfo> ReadModelInfo(const std::string& dir,
                                        const PlannerOptions& options) {
  absl::StatusOr<HfConfig> config =
      HfConfig::ReadFile(JoinPath(dir, "config.json"));
  if (absl::IsNotFound(config.status())) {
    return absl::NotFoundError(
        absl::StrCat("model directory ", dir, " has no config.json"));
  }
  RETURN_IF_ERROR(config.status());
  ModelInfo info;
  ASSIGN_OR_RETURN(info.num_hidden_layers,
                   config->RequiredCount("num_hidden_layers"));
  ASSIGN_OR_RETURN(info.num_attention_heads,
                   config->RequiredCount("num_attention_heads"));
  if (absl::StatusOr<int> hidden = config->RequiredCount("hidden_size");
      hidden.ok()) {
    info.hidden_size = *hidden;
  }
  ModelFingerprintOptions fingerprint_options;
  fingerprint_options.cache_path = options.fingerprint_cache;
  ASSIGN_OR_RETURN(info.fingerprint,
                   ComputeModelFingerprint(dir, fingerprint_options));
  return info;
}

}  // namespace sweepd::internal
