// The materialize executor; see materialize_executor.h.
#include "worker/jobs/materialize_executor.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/path_confinement.h"
#include "common/status.h"
#include "worker/calib/checkpoint_editor.h"
#include "worker/jobs/job_artifacts.h"
#include "worker/jobs/task_loop.h"

namespace sweepd {
namespace {

bool IsUnder(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir ||
         (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
          path[dir.size()] == '/');
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("realpath ", path));
  }
  return std::string(buf);
}

// "a/./b/../c" -> "a/c" on an absolute path; ".." at the top stays at "/".
std::string LexicallyNormalAbsolute(const std::string& path) {
  std::vector<std::string> parts;
  for (absl::string_view c : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (c == ".") continue;
    if (c == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.emplace_back(c);
  }
  std::string out;
  for (const std::string& p : parts) absl::StrAppend(&out, "/", p);
  return out.empty() ? "/" : out;
}

}  // namespace

absl::StatusOr<ResolvedOutDir> ResolveOutDirUnderRoot(
    const std::string& out_dir, const std::string& root) {
  if (out_dir.empty()) {
    return absl::InvalidArgumentError("materialize.out_dir: required");
  }
  absl::StatusOr<std::string> real_root = RealPath(root);
  if (!real_root.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("materialize.out_dir: the worker's --model-root '", root,
                     "' is unusable: ", real_root.status().message()));
  }
  // Lexically first: an absolute out_dir may name the root as given or as
  // resolved.
  std::string candidate;
  if (out_dir[0] == '/') {
    candidate = LexicallyNormalAbsolute(out_dir);
    const std::string given_root = LexicallyNormalAbsolute(root);
    if (!IsUnder(candidate, *real_root) && IsUnder(candidate, given_root)) {
      candidate = *real_root + candidate.substr(given_root.size());
    }
  } else {
    candidate = LexicallyNormalAbsolute(absl::StrCat(*real_root, "/", out_dir));
  }
  if (!IsUnder(candidate, *real_root) || candidate == *real_root) {
    return absl::PermissionDeniedError(
        absl::StrCat("materialize.out_dir: '", out_dir,
                     "' is outside the worker's model root ", root));
  }
  // Then component by component: an existing component must resolve inside
  // the root (no symlink out of it); missing ones are created here.
  const std::string relative = candidate.substr(real_root->size() + 1);
  std::vector<std::string> parts = absl::StrSplit(relative, '/');
  std::string cur = *real_root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const std::string next = absl::StrCat(cur, "/", parts[i]);
    struct stat st;
    if (::lstat(next.c_str(), &st) != 0) {
      if (::mkdir(next.c_str(), 0777) != 0 && errno != EEXIST) {
        return absl::PermissionDeniedError(
            absl::StrCat("materialize.out_dir: cannot create ", next, ": ",
                         std::strerror(errno)));
      }
    }
    ASSIGN_OR_RETURN(std::string resolved, RealPath(next));
    if (!IsUnder(resolved, *real_root)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "materialize.out_dir: '", out_dir, "': ", next, " resolves to ",
          resolved, ", outside the worker's model root ", root));
    }
    if (!IsDirectory(resolved)) {
      return absl::FailedPreconditionError(
          absl::StrCat("materialize.out_dir: '", out_dir, "': ", next,
                       " is not a directory"));
    }
    cur = resolved;
  }
  const std::string last = absl::StrCat(cur, "/", parts.back());
  struct stat st;
  if (::lstat(last.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    return absl::PermissionDeniedError(
        absl::StrCat("materialize.out_dir: '", out_dir,
                     "' is a symlink; the output must be a plain directory "
                     "inside the model root"));
  }
  ResolvedOutDir out;
  out.absolute = last;
  out.relative = last.substr(real_root->size() + 1);
  return out;
}

absl::StatusOr<std::unique_ptr<MaterializeExecutor>>
MaterializeExecutor::Create(const MaterializeExecutorOptions& options) {
  return std::unique_ptr<MaterializeExecutor>(new MaterializeExecutor(options));
}

MaterializeExecutor::MaterializeExecutor(
    const MaterializeExecutorOptions& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

absl::StatusOr<TaskOutput> MaterializeExecutor::RunTask(
    const MaterializeJobSpec& job) {
  if (options_.model_roots.empty()) {
    return absl::FailedPreconditionError(
        "materialize needs --model-root on the worker: out_dir is written "
        "under it");
  }
  ASSIGN_OR_RETURN(
      ResolvedOutDir out,
      ResolveOutDirUnderRoot(job.out_dir, options_.model_roots.front()));
  const std::string base =
      job.model.path.empty() ? options_.model_dir : job.model.path;
  if (base.empty()) {
    return absl::FailedPreconditionError(
        "materialize: the task names no model.path and the worker has no "
        "model");
  }
  absl::Status confined = CheckModelDirConfined(base, options_.model_roots);
  if (!confined.ok()) {
    return absl::Status(confined.code(),
                        absl::StrCat("model.path: ", confined.message()));
  }

  calib::MaterializeRequest request;
  request.base_dir = base;
  request.base_label = base;
  request.base_fingerprint =
      !job.model.fingerprint.empty() ? job.model.fingerprint
      : job.model.path.empty()       ? options_.model_fingerprint
                                     : std::string();
  request.out_dir = out.absolute;
  request.model_roots = options_.model_roots;
  request.threads = options_.threads;
  request.plan.mode = job.mode.empty() ? "mask" : job.mode;
  for (const MaterializeJobSpec::Pruned& p : job.pruned) {
    request.plan.pruned.push_back({p.layer, p.heads});
  }
  if (!job.heals.empty() && options_.artifacts == nullptr) {
    return absl::FailedPreconditionError(
        "materialize.heals: reading heal artifacts needs --artifact-root on "
        "the worker");
  }
  for (size_t i = 0; i < job.heals.size(); ++i) {
    const MaterializeJobSpec::Heal& h = job.heals[i];
    // A missing object is retryable (it may not be visible here yet).
    ASSIGN_OR_RETURN(
        std::string file,
        ResolveInputArtifact(
            options_.artifacts, h.path, h.sha256,
            absl::StrCat("materialize.heals[", i, "] (layer ", h.layer, ")")));
    calib::OProjHeal heal;
    heal.layer = h.layer;
    heal.file = file;
    heal.tensor = h.tensor;
    heal.artifact_path = h.path;
    // Resolve verified the content against the digest its path names.
    heal.sha256 = h.sha256.empty() ? BaseName(h.path) : h.sha256;
    request.plan.heals.push_back(std::move(heal));
  }
  if (job.has_layers) request.plan.layers = job.layers;

  const int64_t started = clock_->NowMs();
  ASSIGN_OR_RETURN(calib::MaterializeResult r,
                   calib::MaterializeCheckpoint(request));
  const double seconds = (clock_->NowMs() - started) / 1000.0;

  TaskOutput output;
  output.metrics.push_back(
      {"materialized_model",
       1.0,
       {{"path", out.relative}, {"fingerprint", r.fingerprint}}});
  output.metrics.push_back(
      {"materialized_bytes_written", static_cast<double>(r.bytes_written), {}});
  output.metrics.push_back({"materialized_tensors_changed",
                            static_cast<double>(r.changed_tensors.size()),
                            {}});
  output.metrics.push_back(
      {"materialized_tensors_total", static_cast<double>(r.tensors_total), {}});
  output.metrics.push_back({"materialized_reused", r.reused ? 1.0 : 0.0, {}});
  output.metrics.push_back({"materialize_seconds", seconds, {}});
  output.metrics.push_back(
      {"materialize_fingerprint_seconds", r.fingerprint_seconds, {}});
  output.wall_seconds = seconds;
  return output;
}

void MaterializeExecutor::RunGroup(const std::vector<TaskInput>& tasks,
                                   TaskContext& ctx, const TaskSink& sink) {
  RunTasksOneByOne<MaterializeJobSpec>(
      kMaterializeKind, tasks, ctx, sink,
      [&](const TaskInput&, const MaterializeJobSpec& job, size_t) {
        return RunTask(job);
      });
}

}  // namespace sweepd
