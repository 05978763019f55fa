// Internal to sweepd::kernels: the boundary between lm_head_pass_cuda.cc (host
// C++, absl) and lm_head_pass.cu (device code, no absl). Plain types only;
// functions return a cudaError_t value as int (0 = cudaSuccess) from the
// launch. Arguments are validated by the caller.
#ifndef SWEEPD_KERNELS_LM_HEAD_PASS_LAUNCH_H_
#define SWEEPD_KERNELS_LM_HEAD_PASS_LAUNCH_H_

#include <cstdint>

struct CUstream_st;

namespace sweepd::kernels::internal {

struct RowPassParams {
  const void* logits = nullptr;
  bool bf16 = true;
  int64_t num_rows = 0;
  int64_t vocab_shard = 0;
  int64_t row_stride = 0;
  int64_t vocab_offset = 0;
  float softcap = 0.0f;
  const void* targets = nullptr;
  bool targets_int64 = true;
};

int LaunchShardStats(const RowPassParams& p, float* row_max, float* row_sumexp,
                     float* target_logit, CUstream_st* stream);
int LaunchShardCountAbove(const RowPassParams& p, const float* target_logit,
                          int32_t* count, CUstream_st* stream);
int LaunchShardStatsAndRank(const RowPassParams& p, float* row_max,
                            float* row_sumexp, float* target_logit,
                            int32_t* count, float* lse, CUstream_st* stream);
int LaunchRescaleSumExp(const float* local_max, const float* local_sumexp,
                        const float* global_max, int64_t num_rows, float* out,
                        CUstream_st* stream);
int LaunchLseFromMaxSum(const float* global_max, const float* global_sumexp,
                        int64_t num_rows, float* lse, CUstream_st* stream);
int LaunchCombineShardStats(const float* shard_max, const float* shard_sumexp,
                            int num_shards, int64_t num_rows, float* lse,
                            CUstream_st* stream);

}  // namespace sweepd::kernels::internal

#endif  // SWEEPD_KERNELS_LM_HEAD_PASS_LAUNCH_H_
