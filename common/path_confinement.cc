#include "common/path_confinement.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sweepd {
namespace {

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    return absl::ErrnoToStatus(errno, path);
  }
  return std::string(buf);
}

bool IsUnder(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root ||
         (path.size() > root.size() &&
          path.compare(0, root.size(), root) == 0 && path[root.size()] == '/');
}

// Files of a model directory that loaders open (see the header).
bool IsModelFile(const std::string& name) {
  return name == "config.json" || name == "tokenizer.json" ||
         absl::EndsWith(name, ".safetensors") ||
         absl::EndsWith(name, ".safetensors.index.json");
}

}  // namespace

absl::StatusOr<std::string> ConfinedRealPath(
    const std::string& path, const std::vector<std::string>& roots,
    absl::string_view what) {
  absl::StatusOr<std::string> target = RealPath(path);
  if (!target.ok()) {
    return absl::Status(
        target.status().code(),
        absl::StrCat(what, " '", path, "': ", target.status().message()));
  }
  if (roots.empty()) return target;
  for (const std::string& root : roots) {
    absl::StatusOr<std::string> real_root = RealPath(root);
    if (!real_root.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "root '", root, "' is unusable: ", real_root.status().message()));
    }
    if (IsUnder(*target, *real_root)) return target;
  }
  return absl::PermissionDeniedError(
      absl::StrCat(what, " '", path, "' resolves to ", *target, ", outside ",
                   roots.size() == 1 ? "the root " : "the roots ",
                   absl::StrJoin(roots, ", ")));
}

absl::Status CheckModelDirConfined(const std::string& dir,
                                   const std::vector<std::string>& roots) {
  if (roots.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> real_dir =
      ConfinedRealPath(dir, roots, "model directory");
  if (!real_dir.ok()) return real_dir.status();
  DIR* d = opendir(real_dir->c_str());
  if (d == nullptr) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("model directory '", dir, "'"));
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (IsModelFile(name)) names.push_back(name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    absl::StatusOr<std::string> file = ConfinedRealPath(
        absl::StrCat(*real_dir, "/", name), roots, "model file");
    // A dangling link is the loader's "missing file" error, not ours.
    if (!file.ok() && !absl::IsNotFound(file.status())) return file.status();
  }
  return absl::OkStatus();
}

}  // namespace sweepd
