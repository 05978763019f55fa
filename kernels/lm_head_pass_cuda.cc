// CUDA launchers of lm_head_pass.h: validate arguments, translate to the plain
// launch boundary (lm_head_pass_launch.h) and turn CUDA errors into
// absl::Status. Built only with CUDA.
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "kernels/lm_head_pass.h"
#include "kernels/lm_head_pass_launch.h"
#include "kernels/lm_head_pass_validate.h"

namespace sweepd::kernels {
namespace {

internal::RowPassParams ToParams(const LogitsShard& s, const TargetIds& t) {
  internal::RowPassParams p;
  p.logits = s.data;
  p.bf16 = s.type == LogitsType::kBFloat16;
  p.num_rows = s.num_rows;
  p.vocab_shard = s.vocab_shard;
  p.row_stride = s.row_stride;
  p.vocab_offset = s.vocab_offset;
  p.softcap = s.softcap;
  p.targets = t.data;
  p.targets_int64 = t.type == TargetIdType::kInt64;
  return p;
}

absl::Status FromCuda(int err, absl::string_view what) {
  if (err == 0) return absl::OkStatus();
  const auto e = static_cast<cudaError_t>(err);
  return absl::InternalError(
      absl::StrCat(what, ": CUDA launch failed: ", cudaGetErrorName(e), " (",
                   cudaGetErrorString(e), ")"));
}

absl::Status CheckRows(const void* a, const void* b, const void* c,
                       int64_t num_rows, absl::string_view fn) {
  if (a == nullptr || b == nullptr || c == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": null pointer argument"));
  }
  if (num_rows < 0 || num_rows > (int64_t{1} << 40)) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": num_rows ", num_rows, " out of range"));
  }
  return absl::OkStatus();
}

CUstream_st* AsStream(void* stream) {
  return static_cast<CUstream_st*>(stream);
}

}  // namespace

absl::Status ShardStatsCuda(const LogitsShard& logits, const TargetIds& targets,
                            const ShardStatsOutputs& out, void* stream) {
  RETURN_IF_ERROR(internal::ValidateShard(logits, "ShardStatsCuda"));
  if (out.target_logit != nullptr) {
    RETURN_IF_ERROR(internal::ValidateTargets(targets, "ShardStatsCuda"));
  }
  if (out.row_max == nullptr || out.row_sumexp == nullptr) {
    return absl::InvalidArgumentError(
        "ShardStatsCuda: row_max and row_sumexp must be non-null");
  }
  return FromCuda(internal::LaunchShardStats(
                      ToParams(logits, targets), out.row_max, out.row_sumexp,
                      out.target_logit, AsStream(stream)),
                  "ShardStatsCuda");
}

absl::Status ShardCountAboveCuda(const LogitsShard& logits,
                                 const TargetIds& targets,
                                 const float* target_logit, int32_t* count,
                                 void* stream) {
  RETURN_IF_ERROR(internal::ValidateShard(logits, "ShardCountAboveCuda"));
  RETURN_IF_ERROR(internal::ValidateTargets(targets, "ShardCountAboveCuda"));
  if (target_logit == nullptr || count == nullptr) {
    return absl::InvalidArgumentError(
        "ShardCountAboveCuda: target_logit and count must be non-null");
  }
  return FromCuda(
      internal::LaunchShardCountAbove(ToParams(logits, targets), target_logit,
                                      count, AsStream(stream)),
      "ShardCountAboveCuda");
}

absl::Status ShardStatsAndRankCuda(const LogitsShard& logits,
                                   const TargetIds& targets,
                                   const StatsAndRankOutputs& out,
                                   void* stream) {
  RETURN_IF_ERROR(internal::ValidateShard(logits, "ShardStatsAndRankCuda"));
  RETURN_IF_ERROR(internal::ValidateTargets(targets, "ShardStatsAndRankCuda"));
  if (out.row_max == nullptr || out.row_sumexp == nullptr ||
      out.target_logit == nullptr || out.count == nullptr) {
    return absl::InvalidArgumentError(
        "ShardStatsAndRankCuda: row_max, row_sumexp, target_logit and count "
        "must be non-null");
  }
  return FromCuda(internal::LaunchShardStatsAndRank(
                      ToParams(logits, targets), out.row_max, out.row_sumexp,
                      out.target_logit, out.count, out.lse, AsStream(stream)),
                  "ShardStatsAndRankCuda");
}

absl::Status RescaleSumExpCuda(const float* local_max,
                               const float* local_sumexp,
                               const float* global_max, int64_t num_rows,
                               float* out_rescaled, void* stream) {
  RETURN_IF_ERROR(CheckRows(local_max, local_sumexp, global_max, num_rows,
                            "RescaleSumExpCuda"));
  if (out_rescaled == nullptr) {
    return absl::InvalidArgumentError(
        "RescaleSumExpCuda: out_rescaled is null");
  }
  return FromCuda(
      internal::LaunchRescaleSumExp(local_max, local_sumexp, global_max,
                                    num_rows, out_rescaled, AsStream(stream)),
      "RescaleSumExpCuda");
}

absl::Status LseFromMaxSumCuda(const float* global_max,
                               const float* global_sumexp, int64_t num_rows,
                               float* lse, void* stream) {
  RETURN_IF_ERROR(
      CheckRows(global_max, global_sumexp, lse, num_rows, "LseFromMaxSumCuda"));
  return FromCuda(
      internal::LaunchLseFromMaxSum(global_max, global_sumexp, num_rows, lse,
                                    AsStream(stream)),
      "LseFromMaxSumCuda");
}

absl::Status CombineShardStatsCuda(const float* shard_max,
                                   const float* shard_sumexp, int num_shards,
                                   int64_t num_rows, float* lse, void* stream) {
  RETURN_IF_ERROR(CheckRows(shard_max, shard_sumexp, lse, num_rows,
                            "CombineShardStatsCuda"));
  if (num_shards < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("CombineShardStatsCuda: num_shards ", num_shards, " < 1"));
  }
  return FromCuda(
      internal::LaunchCombineShardStats(shard_max, shard_sumexp, num_shards,
                                        num_rows, lse, AsStream(stream)),
      "CombineShardStatsCuda");
}

}  // namespace sweepd::kernels
