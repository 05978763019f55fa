#include "worker/engine/fused_sampler.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "kernels/token_sampler.h"
#include "worker/engine/host_upload.h"
#if SWEEPD_KERNELS_CUDA
#include "worker/engine/cuda_check.h"
#include "worker/engine/device_stats.h"
#endif

namespace sweepd::engine::internal {
namespace {

constexpr int64_t kMinEditCapacity = 4096;

}  // namespace

bool FusedSampler::Available(const RankShard& shard, int tp) {
#if SWEEPD_KERNELS_CUDA
  return tp == 1 && shard.device.is_cuda() &&
         (shard.dtype == at::kBFloat16 || shard.dtype == at::kFloat);
#else
  (void)shard;
  (void)tp;
  return false;
#endif
}

FusedSampler::FusedSampler(const RankShard& shard, float softcap,
                           int64_t max_rows, bool skinny_gemm)
    : s_(shard),
      softcap_(softcap),
      max_rows_(max_rows),
      skinny_gemm_(skinny_gemm) {
  auto opts = at::TensorOptions().device(s_.device);
  temperature_ = at::zeros({max_rows}, opts.dtype(at::kFloat));
  top_k_ = at::zeros({max_rows}, opts.dtype(at::kInt));
  top_p_ = at::ones({max_rows}, opts.dtype(at::kFloat));
  min_p_ = at::zeros({max_rows}, opts.dtype(at::kFloat));
  uniform_ = at::full({max_rows}, 0.5, opts.dtype(at::kDouble));
  edit_count_ = at::zeros({1}, opts.dtype(at::kInt));
  edit_row_ = at::zeros({kMinEditCapacity}, opts.dtype(at::kInt));
  edit_token_ = at::zeros({kMinEditCapacity}, opts.dtype(at::kInt));
  edit_value_ = at::zeros({kMinEditCapacity}, opts.dtype(at::kFloat));
  workspace_ =
      at::empty({kernels::TokenSamplerWorkspaceBytes(max_rows, s_.vocab_len)},
                opts.dtype(at::kByte));
  token_ = at::full({max_rows}, -1, opts.dtype(at::kLong));
  logprob_ = at::zeros({max_rows}, opts.dtype(at::kFloat));
}

bool FusedSampler::Fill(const SamplerBatch& batch, int64_t rows) {
  const int64_t n = batch.rows();
  if (n > rows || rows > max_rows_) {
    throw std::logic_error("FusedSampler::Fill: more rows than the buffers");
  }
  std::vector<float> temperature(batch.temperature), top_p(batch.top_p),
      min_p(batch.min_p);
  std::vector<int32_t> top_k;
  for (int64_t k : batch.top_k) {
    top_k.push_back(static_cast<int32_t>(std::min<int64_t>(k, s_.vocab_len)));
  }
  std::vector<double> uniform(batch.uniform);
  temperature.resize(max_rows_, 0.0f);  // greedy padding rows
  top_k.resize(max_rows_, 0);
  top_p.resize(max_rows_, 1.0f);
  min_p.resize(max_rows_, 0.0f);
  uniform.resize(max_rows_, 0.5);
  UploadInto(temperature_, temperature.data());
  UploadInto(top_k_, top_k.data());
  UploadInto(top_p_, top_p.data());
  UploadInto(min_p_, min_p.data());
  UploadInto(uniform_, uniform.data());

  const size_t edits = batch.bias_row.size() + batch.ban_row.size();
  std::vector<int32_t> row, token;
  std::vector<float> value;
  row.reserve(edits);
  token.reserve(edits);
  value.reserve(edits);
  for (size_t i = 0; i < batch.bias_row.size(); ++i) {
    row.push_back(static_cast<int32_t>(batch.bias_row[i]));
    token.push_back(static_cast<int32_t>(batch.bias_token[i]));
    value.push_back(batch.bias_value[i]);
  }
  for (size_t i = 0; i < batch.ban_row.size(); ++i) {
    row.push_back(static_cast<int32_t>(batch.ban_row[i]));
    token.push_back(static_cast<int32_t>(batch.ban_token[i]));
    value.push_back(-std::numeric_limits<float>::infinity());
  }
  bool grew = false;
  const int64_t count = static_cast<int64_t>(edits);
  if (count > edit_row_.numel()) {
    int64_t capacity = edit_row_.numel();
    while (capacity < count) capacity *= 2;
    edit_row_ = at::empty({capacity}, edit_row_.options());
    edit_token_ = at::empty({capacity}, edit_token_.options());
    edit_value_ = at::empty({capacity}, edit_value_.options());
    grew = true;
  }
  if (count > 0) {
    UploadInto(edit_row_.narrow(0, 0, count), row.data());
    UploadInto(edit_token_.narrow(0, 0, count), token.data());
    UploadInto(edit_value_.narrow(0, 0, count), value.data());
  }
  const int32_t c = static_cast<int32_t>(count);
  UploadInto(edit_count_, &c);
  return grew;
}

void FusedSampler::Sample(const at::Tensor& x) {
  at::Tensor flat = x.reshape({-1, x.size(-1)});
  const int64_t rows = flat.size(0);
  if (rows > max_rows_) {
    throw std::logic_error("FusedSampler::Sample: more rows than the buffers");
  }
#if SWEEPD_KERNELS_CUDA
  void* const stream = CurrentCudaStream(static_cast<int>(s_.device.index()));
#else
  void* const stream = nullptr;
#endif
  at::Tensor logits =  // [rows, vocab], raw
      skinny_gemm_ && SkinnyLinear::Takes(flat, s_.embed)
          ? skinny_.Run(flat, s_.embed, stream)
          : at::mm(flat, s_.embed.t());
  kernels::TokenSamplerArgs a;
  a.dtype = s_.dtype == at::kBFloat16 ? kernels::Dtype::kBFloat16
                                      : kernels::Dtype::kFloat32;
  a.logits = logits.data_ptr();
  a.row_stride = logits.stride(0);
  a.rows = rows;
  a.vocab = s_.vocab_len;
  a.softcap = softcap_;
  // As LocalLogits' `z / cap` computes it on CUDA: times the reciprocal.
  a.softcap_reciprocal = true;
  a.temperature = temperature_.data_ptr<float>();
  a.top_k = top_k_.data_ptr<int32_t>();
  a.top_p = top_p_.data_ptr<float>();
  a.min_p = min_p_.data_ptr<float>();
  a.uniform = uniform_.data_ptr<double>();
  a.edit_row = edit_row_.data_ptr<int32_t>();
  a.edit_token = edit_token_.data_ptr<int32_t>();
  a.edit_value = edit_value_.data_ptr<float>();
  a.edit_count = edit_count_.data_ptr<int32_t>();
  a.edit_capacity = edit_row_.numel();
  a.workspace = workspace_.data_ptr();
  a.token = token_.data_ptr<int64_t>();
  a.logprob = logprob_.data_ptr<float>();
#if SWEEPD_KERNELS_CUDA
  CudaCheck(kernels::TokenSamplerCuda(a, stream), "TokenSampler");
#else
  throw std::logic_error("FusedSampler needs a build with the CUDA kernels");
#endif
}

void FusedSampler::CopyOut(int64_t n, std::vector<DecodedToken>* out) const {
  at::Tensor tok = token_.narrow(0, 0, n).to(at::kCPU);
  at::Tensor lp = logprob_.narrow(0, 0, n).to(at::kCPU);
  out->resize(n);
  for (int64_t i = 0; i < n; ++i) {
    (*out)[i].token = static_cast<int32_t>(tok.data_ptr<int64_t>()[i]);
    (*out)[i].logprob = lp.data_ptr<float>()[i];
  }
}

}  // namespace sweepd::engine::internal
