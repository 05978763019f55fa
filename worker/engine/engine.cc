// The plain functions of engine.h: names and parsers of the option enums,
// FirstTouchedLayer, HostTensor. No libtorch.
#include "worker/engine/engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sweepd::engine {

const char* DTypeName(DType dtype) {
  return dtype == DType::kBFloat16 ? "bfloat16" : "float32";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "float32" || name == "fp32") return DType::kFloat32;
  if (name == "bfloat16" || name == "bf16") return DType::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype must be float32 or bfloat16, got '", name, "'"));
}

const char* AttentionPathName(AttentionPath path) {
  switch (path) {
    case AttentionPath::kFlash:
      return "flash";
    case AttentionPath::kSdpa:
      return "sdpa";
    case AttentionPath::kChunkedGemm:
      return "chunked";
    case AttentionPath::kAuto:
      break;
  }
  return "auto";
}

absl::StatusOr<AttentionPath> ParseAttentionPath(absl::string_view name) {
  if (name == "auto") return AttentionPath::kAuto;
  if (name == "flash") return AttentionPath::kFlash;
  if (name == "sdpa") return AttentionPath::kSdpa;
  if (name == "chunked") return AttentionPath::kChunkedGemm;
  return absl::InvalidArgumentError(absl::StrCat(
      "attention path must be auto, flash, sdpa or chunked, got '", name, "'"));
}

const char* GemmTuningName(GemmTuning tuning) {
  return tuning == GemmTuning::kAutotune ? "autotune" : "off";
}

absl::StatusOr<GemmTuning> ParseGemmTuning(absl::string_view name) {
  if (name == "off") return GemmTuning::kOff;
  if (name == "autotune") return GemmTuning::kAutotune;
  return absl::InvalidArgumentError(
      absl::StrCat("gemm tuning must be off or autotune, got '", name, "'"));
}

int FirstTouchedLayer(const std::vector<Intervention>& interventions,
                      int num_layers) {
  int first = num_layers;
  for (const Intervention& iv : interventions)
    first = std::min(first, iv.layer);
  return first;
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace sweepd::engine
