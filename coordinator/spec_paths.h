// Where a spec's files are, for the planner: resolving the model and dataset
// paths of a SweepSpec under the coordinator's roots (symlinks resolved, the
// result required to stay inside the root), and reading what the planner needs
// from a model directory (layer and head counts from config.json, the model
// fingerprint). Split out of planner.cc, which calls them from PlanOneStage.
// Internal to coordinator/.
//
// Stateless free functions; thread-safe. They read the file system
// (realpath, config.json, the model's files): call them off gRPC reactor
// threads.
#ifndef SWEEPD_COORDINATOR_SPEC_PATHS_H_
#define SWEEPD_COORDINATOR_SPEC_PATHS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coordinator/planner.h"

namespace sweepd::internal {

// Resolves `path` (relative to `root`, or absolute) and requires the result,
// symlinks resolved, to stay inside `root`. `what` names the root in messages
// ("model root"); `field` names the spec field ("model.path"). An empty `root`
// means no restriction, relative to the working directory. INVALID_ARGUMENT
// for an empty path, PERMISSION_DENIED outside the root, NOT_FOUND when it
// does not exist, FAILED_PRECONDITION when the root itself is unusable.
absl::StatusOr<std::string> ResolveUnderRoot(const std::string& path,
                                             const std::string& root,
                                             absl::string_view field,
                                             absl::string_view what);

// What the planner reads from a model directory: the counts it checks layer
// and head indices against (config.json through the common parser; both are
// required, no defaults) and the model fingerprint.
struct ModelInfo {
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  // 0 = config.json has no usable one (steering vector lengths are then
  // checked by the worker only).
  int hidden_size = 0;
  std::string fingerprint;
};

// Reads config.json of model directory `dir` (NOT_FOUND naming the directory
// when it has none) and fingerprints the model (common/model_fingerprint.h,
// with options.fingerprint_cache).
absl::StatusOr<ModelInfo> ReadModelInfo(const std::string& dir,
                                        const PlannerOptions& options);

}  // namespace sweepd::internal

#endif  // SWEEPD_COORDINATOR_SPEC_PATHS_H_
