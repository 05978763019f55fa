// Fused vocab-parallel LM-head logits pass: softcap, softmax statistics, target
// logit and target rank per token, over one vocabulary shard of logits, without
// materialising fp32 logits.
//
// Used by NLL (eval) and the logit lens (probe). Every function here exists
// twice: a CPU reference (`...Cpu`, always built; also the CPU engine's path)
// and a CUDA launcher (`...Cuda`, only when the library is built with CUDA:
// `SWEEPD_KERNELS_CUDA` is then defined to 1 for every target that links
// sweepd::kernels). docs/KERNELS.md has the math, the call sequences for TP = 1
// and TP > 1, the tie semantics and the performance numbers.
//
// Ownership: all pointers are borrowed; nothing is allocated, no workspace is
// needed. CPU functions take host pointers; CUDA functions take device pointers
// and a `cudaStream_t` passed as `void*` (nullptr = legacy default stream),
// enqueue asynchronously and return after launch (launch errors are returned;
// errors of the running kernel surface at the next synchronisation).
// Thread-safety: all functions are reentrant; concurrent calls must not share
// output buffers.
//
// Definitions (per token row t, shard entries v = 0..vocab_shard-1, x = the
// logit as float, exact for bf16):
//   z_v      = softcap(x_v) = c * tanh(x_v / c)   (c = softcap; c <= 0 means
//   z_v = x_v) row_max  = max_v z_v            row_sumexp = sum_v exp(z_v -
//   row_max)   (fp32 accumulation) target   = targets[t] - vocab_offset, in
//   this shard iff 0 <= target < vocab_shard target_logit =
//   SoftcapExactF32(x_target) if in shard, else -infinity (so an all-reduce MAX
//                  over shards yields the owner's value)
//   count    = #{v : x_v >= SoftcapThreshold(target_logit)} — equal to
//              #{v : SoftcapExactF32(x_v) > target_logit} (strictly larger
//              softcapped fp32 value, ties not counted) because SoftcapExactF32
//              is monotone; see docs/KERNELS.md.
//   Rows whose target id is negative (none) get target_logit = -infinity and
//   count = 0.
#ifndef SWEEPD_KERNELS_LM_HEAD_PASS_H_
#define SWEEPD_KERNELS_LM_HEAD_PASS_H_

#include <cstdint>

#include "absl/status/status.h"

namespace sweepd::kernels {

enum class LogitsType {
  kFloat32,
  kBFloat16
};  // bf16 is passed as raw uint16_t bits on the CPU
enum class TargetIdType { kInt32, kInt64 };

// One vocabulary shard of logits: row t, entry v at element t * row_stride + v.
struct LogitsShard {
  const void* data = nullptr;
  LogitsType type = LogitsType::kBFloat16;
  int64_t num_rows = 0;      // T (tokens)
  int64_t vocab_shard = 0;   // entries per row in this shard (may be odd)
  int64_t row_stride = 0;    // elements between rows, >= vocab_shard
  int64_t vocab_offset = 0;  // global id of entry 0 of this shard
  float softcap = 0.0f;      // c; <= 0 disables the softcap
};

// Per-token global target ids, -1 (any negative) = no target.
struct TargetIds {
  const void* data = nullptr;
  TargetIdType type = TargetIdType::kInt64;
};

// Pass-1 outputs, each [num_rows] floats. target_logit may be nullptr (not
// computed).
struct ShardStatsOutputs {
  float* row_max = nullptr;
  float* row_sumexp = nullptr;
  float* target_logit = nullptr;
};

// Single-pass (target local to this shard, e.g. TP = 1) outputs, each
// [num_rows]. `lse` may be nullptr; when given it receives row_max +
// log(row_sumexp) (the full log-sum-exp at TP = 1).
struct StatsAndRankOutputs {
  float* row_max = nullptr;
  float* row_sumexp = nullptr;
  float* target_logit = nullptr;
  int32_t* count = nullptr;
  float* lse = nullptr;
};

// ---- Scalar definitions shared bit for bit by the CPU reference and the CUDA
// kernels. ----

// The softcapped value of x as fp32 used for target logits and rank thresholds:
// c*tanh(x/c) evaluated in float64 with explicit, contraction-free operations
// (identical on host and device), rounded once to float. Returns x when c <= 0.
// Monotone non-decreasing in x.
float SoftcapExactF32(float x, float softcap);

// The smallest value x representable in `type` (non-NaN, -inf..+inf) with
// SoftcapExactF32(x) > z; +inf's successor does not exist, so returns NaN when
// no value qualifies (then `x >= result` is false for every x). Binary search
// over the ordered bit patterns of `type` (16 steps for bf16, 32 for fp32).
float SoftcapThreshold(float z, float softcap, LogitsType type);

// ---- CPU reference (host pointers). ----

// Pass 1 for TP > 1: statistics of this shard and the target logit if the
// target is here.
absl::Status ShardStatsCpu(const LogitsShard& logits, const TargetIds& targets,
                           const ShardStatsOutputs& out);

// Pass 2 for TP > 1: count[t] = entries of this shard strictly above
// `target_logit[t]` (the global target logit after the all-reduce), 0 for rows
// without a target.
absl::Status ShardCountAboveCpu(const LogitsShard& logits,
                                const TargetIds& targets,
                                const float* target_logit, int32_t* count);

// Single pass when every row's target lies in this shard (TP = 1): stats,
// target logit, count. A row whose target is outside the shard gets
// target_logit = -inf and count = 0.
absl::Status ShardStatsAndRankCpu(const LogitsShard& logits,
                                  const TargetIds& targets,
                                  const StatsAndRankOutputs& out);

// out_rescaled[t] = local_sumexp[t] * exp(local_max[t] - global_max[t]) (0 when
// the local max is -inf): the per-shard term of an all-reduce SUM that yields
// the global sum of exponentials.
absl::Status RescaleSumExpCpu(const float* local_max, const float* local_sumexp,
                              const float* global_max, int64_t num_rows,
                              float* out_rescaled);

// lse[t] = global_max[t] + log(global_sumexp[t]).
absl::Status LseFromMaxSumCpu(const float* global_max,
                              const float* global_sumexp, int64_t num_rows,
                              float* lse);

// Combines per-shard stats gathered as [num_shards][num_rows] arrays into
// lse[num_rows].
absl::Status CombineShardStatsCpu(const float* shard_max,
                                  const float* shard_sumexp, int num_shards,
                                  int64_t num_rows, float* lse);

#if SWEEPD_KERNELS_CUDA
// ---- CUDA launchers (device pointers; `stream` is a cudaStream_t). Same
// contracts as above. --
absl::Status ShardStatsCuda(const LogitsShard& logits, const TargetIds& targets,
                            const ShardStatsOutputs& out, void* stream);
absl::Status ShardCountAboveCuda(const LogitsShard& logits,
                                 const TargetIds& targets,
                                 const float* target_logit, int32_t* count,
                                 void* stream);
// Two launches: a per-row kernel reads the target logit once and computes its
// rank threshold (parked in `count`), then one streaming pass computes the
// stats and the count.
absl::Status ShardStatsAndRankCuda(const LogitsShard& logits,
                                   const TargetIds& targets,
                                   const StatsAndRankOutputs& out,
                                   void* stream);
absl::Status RescaleSumExpCuda(const float* local_max,
                               const float* local_sumexp,
                               const float* global_max, int64_t num_rows,
                               float* out_rescaled, void* stream);
absl::Status LseFromMaxSumCuda(const float* global_max,
                               const float* global_sumexp, int64_t num_rows,
                               float* lse, void* stream);
absl::Status CombineShardStatsCuda(const float* shard_max,
                                   const float* shard_sumexp, int num_shards,
                                   int64_t num_rows, float* lse, void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_LM_HEAD_PASS_H_
