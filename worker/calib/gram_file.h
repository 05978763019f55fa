// Gram artifacts (docs/CALIBRATION.md, "Capture"): the float64 sums XᵀX,
// XᵀY, Σ‖y‖² and the token count of one capture point over one dataset shard,
// as a safetensors object of the artifact store, and their reduction over
// shards (float64 sums in the order given, so the same order gives the same
// bytes whichever worker or TP degree produced each shard).
//
// File format (one object per capture task and point):
//   xtx   F64 [d, d]   Σ over kept tokens of xᵀx (attn_heads[L]: head-major)
//   xty   F64 [d, e]   only with a target point
//   yy    F64 [1]      only with a target point: Σ‖y‖² (for residuals)
//   count I64 [1]      tokens summed
//   metadata: point, target, dataset, shard, tokens, dtype (compute dtype)
//
// Plain C++ (no libtorch, no protobuf); value types and stateless functions,
// thread-safe.
#ifndef SWEEPD_WORKER_CALIB_GRAM_FILE_H_
#define SWEEPD_WORKER_CALIB_GRAM_FILE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/artifact_store.h"
#include "common/safetensors.h"

namespace sweepd::calib {

// The sums of one Gram (row-major float64).
struct Gram {
  int64_t d = 0;
  int64_t e = 0;  // 0 without a target
  std::vector<double> xtx;
  std::vector<double> xty;  // [d, e]; empty without a target
  double yy = 0.0;
  int64_t count = 0;
  // point, target, dataset, shard, tokens, dtype.
  std::map<std::string, std::string> metadata;
};

// Stores `gram` as the object `name` (metadata written as given, plus
// "tokens" = count). Deterministic: the same Gram gives the same bytes, so
// the same object path.
absl::StatusOr<ArtifactInfo> PutGram(ArtifactStore* store,
                                     const std::string& name, const Gram& gram);
// Parses a Gram file; INVALID_ARGUMENT naming `path` and the tensor when a
// tensor is missing or has the wrong dtype or shape.
absl::StatusOr<Gram> ReadGramFile(const std::string& path);

// a += b (float64, element by element); INVALID_ARGUMENT when the shapes or
// the presence of a target differ (names both by their metadata).
absl::Status AddGram(const Gram& b, Gram* a);

// Writes a SafetensorsWriter's file into the store as `name` (through a temp
// file under the store's tmp/ directory, removed afterwards).
absl::StatusOr<ArtifactInfo> PutSafetensors(ArtifactStore* store,
                                            const std::string& name,
                                            const SafetensorsWriter& writer);

}  // namespace sweepd::calib

#endif  // SWEEPD_WORKER_CALIB_GRAM_FILE_H_
