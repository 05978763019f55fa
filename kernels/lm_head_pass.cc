// CPU reference of the fused LM-head logits pass (see lm_head_pass.h). Also the
// CPU engine's implementation: rows are independent, statistics accumulate in
// float64.
#include "kernels/lm_head_pass.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "kernels/lm_head_pass_validate.h"
#include "kernels/softcap_math.h"

namespace sweepd::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

float LoadLogit(const LogitsShard& s, int64_t row, int64_t v) {
  const int64_t i = row * s.row_stride + v;
  if (s.type == LogitsType::kBFloat16) {
    return internal::Bf16BitsToFloat(static_cast<const uint16_t*>(s.data)[i]);
  }
  return static_cast<const float*>(s.data)[i];
}

int64_t LoadTarget(const TargetIds& t, int64_t row) {
  if (t.type == TargetIdType::kInt32)
    return static_cast<const int32_t*>(t.data)[row];
  return static_cast<const int64_t*>(t.data)[row];
}

// Local index of the row's target in this shard, or -1.
int64_t LocalTarget(const LogitsShard& s, const TargetIds& t, int64_t row) {
  const int64_t id = LoadTarget(t, row);
  if (id < 0) return -1;
  const int64_t local = id - s.vocab_offset;
  return (local >= 0 && local < s.vocab_shard) ? local : -1;
}

// The statistics definition shared with the kernel: z = c * tanh(x / c) in
// float, max over the row, sum of exp(z - max) accumulated in float64.
void RowStats(const LogitsShard& s, int64_t row, std::vector<float>& z,
              float* out_max, float* out_sumexp) {
  const float c = s.softcap;
  float m = kNegInf;
  for (int64_t v = 0; v < s.vocab_shard; ++v) {
    const float x = LoadLogit(s, row, v);
    const float zv = c > 0.0f ? c * std::tanh(x / c) : x;
    z[v] = zv;
    m = std::fmax(m, zv);
  }
  double sum = 0.0;
  if (m != kNegInf) {
    for (int64_t v = 0; v < s.vocab_shard; ++v)
      sum += std::exp(static_cast<double>(z[v]) - m);
  }
  *out_max = m;
  *out_sumexp = static_cast<float>(sum);
}

int32_t CountAtOrAbove(const LogitsShard& s, int64_t row, float threshold) {
  int32_t n = 0;
  for (int64_t v = 0; v < s.vocab_shard; ++v)
    n += LoadLogit(s, row, v) >= threshold ? 1 : 0;
  return n;
}

int Width(LogitsType type) { return type == LogitsType::kBFloat16 ? 16 : 32; }

}  // namespace

float SoftcapExactF32(float x, float softcap) {
  return internal::SoftcapExact(x, softcap);
}

float SoftcapThreshold(float z, float softcap, LogitsType type) {
  return internal::SoftcapThresholdImpl(z, softcap, Width(type));
}

absl::Status ShardStatsCpu(const LogitsShard& logits, const TargetIds& targets,
                           const ShardStatsOutputs& out) {
  RETURN_IF_ERROR(internal::ValidateShard(logits, "ShardStats"));
  if (out.target_logit != nullptr) {
    RETURN_IF_ERROR(internal::ValidateTargets(targets, "ShardStats"));
  }
  if (out.row_max == nullptr || out.row_sumexp == nullptr) {
    return absl::InvalidArgumentError(
        "ShardStats: row_max and row_sumexp must be non-null");
  }
  std::vector<float> z(logits.vocab_shard);
  for (int64_t t = 0; t < logits.num_rows; ++t) {
    RowStats(logits, t, z, &out.row_max[t], &out.row_sumexp[t]);
    if (out.target_logit != nullptr) {
      const int64_t local = LocalTarget(logits, targets, t);
      out.target_logit[t] =
          local >= 0
              ? SoftcapExactF32(LoadLogit(logits, t, local), logits.softcap)
              : kNegInf;
    }
  }
  return absl::OkStatus();
}

absl::Status ShardCountAboveCpu(const LogitsShard& logits,
                                const TargetIds& targets,
                                const float* target_logit, int32_t* count) {
  RETURN_IF_ERROR(internal::ValidateShard(logits, "ShardCountAbove"));
  RETURN_IF_ERROR(internal::ValidateTargets(targets, "ShardCountAbove"));
  if (target_logit == nullptr || count == nullptr) {
    return absl::InvalidArgumentError(
        "ShardCountAbove: target_logit and count must be non-null");
  }
  for (int64_t t = 0; t < logits.num_rows; ++t) {
    if (LoadTarget(targets, t) < 0) {
      count[t] = 0;
      continue;
    }
    count[t] = CountAtOrAbove(
        logits, t,
        SoftcapThreshold(target_logit[t], logits.softcap, logits.type));
  }
  return absl::OkStatus();
}

absl::Status ShardStatsAndRankCpu(const LogitsShard& logits,
                                  const TargetIds& targets,
                                  const StatsAndRankOutputs& out) {
  RETURN_IF_ERROR(internal::ValidateShard(logits, "ShardStatsAndRank"));
  RETURN_IF_ERROR(internal::ValidateTargets(targets, "ShardStatsAndRank"));
  if (out.row_max == nullptr || out.row_sumexp == nullptr ||
      out.target_logit == nullptr || out.count == nullptr) {
    return absl::InvalidArgumentError(
        "ShardStatsAndRank: row_max, row_sumexp, target_logit and count must "
        "be non-null");
  }
  std::vector<float> z(logits.vocab_shard);
  for (int64_t t = 0; t < logits.num_rows; ++t) {
    RowStats(logits, t, z, &out.row_max[t], &out.row_sumexp[t]);
    const int64_t local = LocalTarget(logits, targets, t);
    if (local < 0) {
      out.target_logit[t] = kNegInf;
      out.count[t] = 0;
    } else {
      const float zt =
          SoftcapExactF32(LoadLogit(logits, t, local), logits.softcap);
      out.target_logit[t] = zt;
      out.count[t] = CountAtOrAbove(
          logits, t, SoftcapThreshold(zt, logits.softcap, logits.type));
    }
    if (out.lse != nullptr)
      out.lse[t] = out.row_max[t] + std::log(out.row_sumexp[t]);
  }
  return absl::OkStatus();
}

absl::Status RescaleSumExpCpu(const float* local_max, const float* local_sumexp,
                              const float* global_max, int64_t num_rows,
                              float* out_rescaled) {
  if (local_max == nullptr || local_sumexp == nullptr ||
      global_max == nullptr || out_rescaled == nullptr || num_rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RescaleSumExp: null pointer or negative num_rows (", num_rows, ")"));
  }
  for (int64_t t = 0; t < num_rows; ++t) {
    out_rescaled[t] =
        local_max[t] == kNegInf
            ? 0.0f
            : local_sumexp[t] * std::exp(local_max[t] - global_max[t]);
  }
  return absl::OkStatus();
}

absl::Status LseFromMaxSumCpu(const float* global_max,
                              const float* global_sumexp, int64_t num_rows,
                              float* lse) {
  if (global_max == nullptr || global_sumexp == nullptr || lse == nullptr ||
      num_rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LseFromMaxSum: null pointer or negative num_rows (", num_rows, ")"));
  }
  for (int64_t t = 0; t < num_rows; ++t)
    lse[t] = global_max[t] + std::log(global_sumexp[t]);
  return absl::OkStatus();
}

absl::Status CombineShardStatsCpu(const float* shard_max,
                                  const float* shard_sumexp, int num_shards,
                                  int64_t num_rows, float* lse) {
  if (shard_max == nullptr || shard_sumexp == nullptr || lse == nullptr ||
      num_rows < 0 || num_shards < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("CombineShardStats: null pointer, num_shards < 1 (",
                     num_shards, ") or negative num_rows (", num_rows, ")"));
  }
  for (int64_t t = 0; t < num_rows; ++t) {
    float m = kNegInf;
    for (int s = 0; s < num_shards; ++s)
      m = std::fmax(m, shard_max[s * num_rows + t]);
    float sum = 0.0f;
    for (int s = 0; s < num_shards; ++s) {
      const float ms = shard_max[s * num_rows + t];
      if (ms != kNegInf)
        sum += shard_sumexp[s * num_rows + t] * std::exp(ms - m);
    }
    lse[t] = m + std::log(sum);
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
