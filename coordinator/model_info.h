// Model directory inspection for the planner: reads the shape facts the planner
// validates against (layer and head counts from config.json) and computes the
// model fingerprint that ties every task and result to exact weights.
//
// The fingerprint is the lower-case hex SHA-256 over, in this order:
//   - "config.json", its byte length and its bytes;
//   - for every *.safetensors file of the directory, sorted by name: the name,
//   the file size
//     and the header bytes (the 8-byte little-endian header length followed by
//     that many JSON bytes) — not the tensor data, so fingerprinting a 60 GB
//     checkpoint reads kilobytes;
//   - every *.safetensors.index.json file (sorted): its name, length and bytes.
// Each piece is length-prefixed, so no two different directories hash the same
// stream.
//
// Stateless free functions; thread-safe. They read files: keep them off gRPC
// reactor threads.
#ifndef SWEEPD_COORDINATOR_MODEL_INFO_H_
#define SWEEPD_COORDINATOR_MODEL_INFO_H_

#include <string>

#include "absl/status/statusor.h"

namespace sweepd {

struct ModelInfo {
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  std::string fingerprint;
};

// Parses config.json text. The counts are read from "text_config" when present
// (multimodal Gemma 4 layout), else from the top level. INVALID_ARGUMENT naming
// `source` and the key when the JSON is malformed or a count is missing or not
// a positive integer.
absl::StatusOr<ModelInfo> ParseModelConfig(const std::string& config_json,
                                           const std::string& source);

// Lower-case hex fingerprint of the model directory `dir` (see above).
// NOT_FOUND when config.json or every *.safetensors file is missing;
// INVALID_ARGUMENT naming the file when a safetensors header is truncated or
// larger than the file.
absl::StatusOr<std::string> ComputeModelFingerprint(const std::string& dir);

// ParseModelConfig(dir/config.json) plus ComputeModelFingerprint(dir).
absl::StatusOr<ModelInfo> ReadModelInfo(const std::string& dir);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_MODEL_INFO_H_
