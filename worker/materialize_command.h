// `sweep-worker materialize`: runs the checkpoint editor behind the
// `materialize` job (worker/calib/checkpoint_editor.h, the same
// MaterializeCheckpoint the executor calls) on a local base directory, without
// a coordinator or an artifact store: for checking a plan by hand, for the
// transformers cross-check (tests/golden/check_materialized.py, with
// `sweep-worker dump-logits`) and for timing a large base.
//
//   sweep-worker materialize --base DIR --out DIR [--prune L:H,H,...]...
//                            [--heal L:FILE]... [--layers SELECTOR]
//                            [--threads N] [--base-fingerprint FP]
//
// --prune L:H,H,... prunes heads H of layer L (mask mode); --heal L:FILE
// replaces layer L's o_proj by the tensor "self_attn.o_proj.weight" of the
// safetensors FILE (the heal job's artifact; its SHA-256 is recorded in the
// manifest). At least one --prune or --heal. --layers restricts which layers'
// edits are written (common/layer_selector.h grammar, e.g. "0-3").
// --base-fingerprint skips hashing the base (recorded in the manifest as
// given). A relative --out is made absolute. Editor errors name the i-th
// --prune / --heal as "materialize.pruned[i]" / "materialize.heals[i]".
// Re-running the same edit into the same --out reuses the complete result
// ("reused": true, nothing written); another edit there is refused.
//
// Prints one JSON object (out, manifest, fingerprint, base_fingerprint,
// bytes_written, tensors_changed, tensors_total, reused, seconds,
// fingerprint_seconds). Exit status: 0 success, 1 runtime error (missing base,
// a plan the checkpoint rejects, an occupied --out), 2 usage error; messages
// go to the error stream. Thread-safe (no shared state besides the streams).
#ifndef SWEEPD_WORKER_MATERIALIZE_COMMAND_H_
#define SWEEPD_WORKER_MATERIALIZE_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace sweepd {

// The command with its arguments (without the program and subcommand names)
// and explicit streams, for tests.
int RunMaterializeCommand(const std::vector<std::string>& args,
                          std::ostream& out, std::ostream& err);

// Entry point for sweep-worker's dispatch table (argv[0] = "materialize").
int MaterializeMain(int argc, char** argv);

// Parses "L:H,H,..." (a layer and its heads, as --prune and dump-logits' --mask
// take them); false when malformed.
bool ParseLayerHeadsFlag(const std::string& text, int* layer,
                         std::vector<int>* heads);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_MATERIALIZE_COMMAND_H_
