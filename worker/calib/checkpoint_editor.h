// Checkpoint editor: writes an edited copy of a Hugging Face safetensors
// checkpoint (seed 001's "materialize"), without the engine. Mask mode keeps
// every shape: the pruned heads' q_proj rows and o_proj columns are zero, and
// a layer's o_proj may be replaced by a healed weight (the `heal` job's
// artifact, a safetensors file holding "self_attn.o_proj.weight" of the full
// shape, F32, with the removed heads' columns zero). docs/CALIBRATION.md,
// "Materialize".
//
// Output layout. The base's safetensors files are rewritten under the same
// names with the same headers (byte for byte: same tensors, dtypes, shapes and
// offsets), so the shard split, the tensor -> file mapping and the index are
// the base's; the index and config.json, generation_config.json and the
// tokenizer files are copied byte for byte. Tensor data that is not edited is
// copied by the kernel from the base file without decoding, and every digest
// (per tensor, per file, the base's when its fingerprint is not given) is
// taken from memory on the way, in parallel (shard_rewriter.h): nothing is
// read back. Zeroing rows/columns works on raw bytes; only a healed o_proj is
// converted (F32 -> the base tensor's dtype, round to nearest even for BF16);
// edited layers are prepared in parallel. A file without an edited tensor is
// therefore identical to the base's. "sweepd_manifest.json" records
// the base (path, fingerprint), the edit (mode, pruned heads and heal
// artifacts per layer with each artifact's safetensors metadata — the heal's
// statistics —, which layers were written), the canary status ("pending";
// the canary stage records its verdicts: manifest_canary.h), the
// SHA-256 of every tensor, exactly which tensors differ from the base (byte
// comparison, not "touched"), and the result's model fingerprint
// (common/model_fingerprint.h; the manifest itself is not covered by it).
//
// Atomicity and re-runs. Everything is written into a fresh temp directory
// next to the output (".<name>.partial.XXXXXX"), fsynced, and renamed into
// place at the end, so the output directory is either absent or complete.
// Stale temp directories of an earlier, killed attempt are removed first. An
// existing non-empty output directory is refused unless its manifest records
// the same edit (same base fingerprint, mode, pruned heads, heal artifacts'
// SHA-256 and layer list) and its files still hash to the fingerprint the
// manifest records: then it is reused as is (idempotent re-run after
// preemption). The same inputs always give the same bytes (no timestamps).
//
// Stateless free functions; thread-safe for different output directories.
// They read and write whole checkpoints: keep them off gRPC reactor threads.
#ifndef SWEEPD_WORKER_CALIB_CHECKPOINT_EDITOR_H_
#define SWEEPD_WORKER_CALIB_CHECKPOINT_EDITOR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sweepd::calib {

inline constexpr char kManifestFile[] = "sweepd_manifest.json";
inline constexpr char kManifestFormat[] = "sweepd-materialize-manifest-v1";

// Heads of one layer to prune (global head indices).
struct HeadPrune {
  int layer = 0;
  std::vector<int> heads;
};

// A healed o_proj for one layer.
struct OProjHeal {
  int layer = 0;
  // Local safetensors file (already verified against its checksum by the
  // caller, e.g. ArtifactStore::Resolve).
  std::string file;
  // Tensor within it; "" = "self_attn.o_proj.weight".
  std::string tensor;
  // Recorded in the manifest and the edit's identity: the artifact reference
  // (store path and SHA-256 of the file). An empty sha256 is computed from
  // `file`.
  std::string artifact_path;
  std::string sha256;
};

struct EditPlan {
  // "mask" ("" = "mask"); the only mode.
  std::string mode = "mask";
  std::vector<HeadPrune> pruned;
  std::vector<OProjHeal> heals;
  // Layers whose edits are written; nullopt = every layer. Edits of other
  // layers are recorded in the manifest as not written (seed 001's salvage:
  // only L0-L3 of a full-model plan kept).
  std::optional<std::vector<int>> layers;
};

struct MaterializeRequest {
  std::string base_dir;
  // "" = computed from base_dir.
  std::string base_fingerprint;
  // How the manifest names the base ("" = base_dir).
  std::string base_label;
  // The output directory (absolute; its parent is created if missing). The
  // caller confines it (the executor resolves it under --model-root).
  std::string out_dir;
  EditPlan plan;
  // Every file copied from the base must resolve under one of these
  // (common/path_confinement.h); empty = any.
  std::vector<std::string> model_roots;
  // Jobs run at once: edited layers, then the write pass's copies and digest
  // streams (shard_rewriter.h); 0 = hardware threads, at most 8.
  int threads = 0;
};

struct MaterializeResult {
  std::string fingerprint;  // of the output directory
  std::string base_fingerprint;
  uint64_t bytes_written = 0;  // every file written (0 when reused)
  int tensors_total = 0;
  std::vector<std::string> changed_tensors;  // sorted
  bool reused = false;  // a complete previous result was found and kept
  // Of the output's fingerprint: the weight files' digests are taken while
  // they are written, so only the small files are read (a full re-read of
  // the output when reused).
  double fingerprint_seconds = 0.0;
};

// Writes the edited checkpoint (see the header comment). Errors name what is
// wrong: INVALID_ARGUMENT "materialize.pruned[i].heads[j]: head 9 is out of
// range [0, 4) of layer 1", "materialize.heals[i] (layer L): ..." for a heal
// of the wrong shape or dtype, non-zero columns of pruned heads or a missing
// tensor; FAILED_PRECONDITION for an output directory that exists and is not
// a complete result of the same edit; NOT_FOUND for a missing base.
absl::StatusOr<MaterializeResult> MaterializeCheckpoint(
    const MaterializeRequest& request);

}  // namespace sweepd::calib

#endif  // SWEEPD_WORKER_CALIB_CHECKPOINT_EDITOR_H_
