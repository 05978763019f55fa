// The one place that hides libtorch API differences between Debian's
// libtorch 1.13 (CPU builds) and PyTorch 2.x (GPU machines). Internal to
// sweepd::engine; header-only, stateless, thread-safe.
#ifndef SWEEPD_WORKER_ENGINE_TORCH_COMPAT_H_
#define SWEEPD_WORKER_ENGINE_TORCH_COMPAT_H_

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <utility>

#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define SWEEPD_TORCH_HAS_SDPA_SCALE 1
#else
#define SWEEPD_TORCH_HAS_SDPA_SCALE 0
#endif

// at::_flash_attention_forward with window_size_left/right (PyTorch >= 2.5):
// FlashAttention-2 with a sliding window and grouped KV heads, no mask tensor.
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define SWEEPD_TORCH_HAS_FLASH_WINDOW 1
#else
#define SWEEPD_TORCH_HAS_FLASH_WINDOW 0
#endif

// at::_scaled_dot_product_cudnn_attention with attn_bias and the log-sum-exp
// (PyTorch >= 2.6; the op behind SDPA's cuDNN backend).
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6)
#define SWEEPD_TORCH_HAS_CUDNN_ATTENTION 1
#else
#define SWEEPD_TORCH_HAS_CUDNN_ATTENTION 0
#endif

namespace sweepd::engine::compat {

inline constexpr bool kHasSdpa = SWEEPD_TORCH_HAS_SDPA_SCALE;
inline constexpr bool kHasFlashWindow = SWEEPD_TORCH_HAS_FLASH_WINDOW;
inline constexpr bool kHasCudnnAttention = SWEEPD_TORCH_HAS_CUDNN_ATTENTION;

// softmax(q kᵀ · scale + mask) v over the last two dims; q [B,H,Sq,D], k/v
// [B,H,Sk,D] (heads already expanded for GQA), `allowed` a bool [Sq,Sk] (true =
// may attend). Eager math as transformers' eager_attention_forward: scores and
// the weighted sum in the input dtype, softmax in float32. On torch >= 2.1 SDPA
// (flash / memory-efficient kernels) is used instead.
inline at::Tensor Attention(const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& allowed,
                            double scale, bool prefer_sdpa) {
#if SWEEPD_TORCH_HAS_SDPA_SCALE
  if (prefer_sdpa) {
    return at::scaled_dot_product_attention(q, k, v, allowed, /*dropout_p=*/0.0,
                                            /*is_causal=*/false, scale);
  }
#endif
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1));
  if (scale != 1.0) scores = scores * scale;
  scores = scores.masked_fill(allowed.logical_not(),
                              -std::numeric_limits<float>::infinity());
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(probs, v);
}

// Causal attention without a mask tensor: SDPA with is_causal (flash or
// memory-efficient kernels skip the blocks above the diagonal) on torch >= 2.1,
// else the eager path with a lower-triangular mask. Same layouts as Attention.
inline at::Tensor CausalAttention(const at::Tensor& q, const at::Tensor& k,
                                  const at::Tensor& v, double scale,
                                  bool prefer_sdpa) {
#if SWEEPD_TORCH_HAS_SDPA_SCALE
  if (prefer_sdpa) {
    return at::scaled_dot_product_attention(q, k, v, {}, /*dropout_p=*/0.0,
                                            /*is_causal=*/true, scale);
  }
#endif
  const int64_t s = q.size(-2);
  at::Tensor allowed = at::ones({s, s}, q.options().dtype(at::kBool)).tril();
  return Attention(q.contiguous(), k.contiguous(), v.contiguous(), allowed,
                   scale, /*prefer_sdpa=*/false);
}

#if SWEEPD_TORCH_HAS_FLASH_WINDOW
// FlashAttention-2, causal, on q [B, S, H, D] and k/v [B, S, KV, D] (KV divides
// H: grouped heads without expanding K/V; D <= 256, multiple of 8, fp16/bf16,
// CUDA). window > 0: query i sees keys j with 0 <= i - j < window. Returns
// [B, S, H, D].
inline at::Tensor FlashCausalAttention(const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, double scale,
                                       int64_t window) {
  std::optional<int64_t> left;
  std::optional<int64_t> right;
  if (window > 0) {
    left = window - 1;
    right = 0;
  }
  auto out = at::_flash_attention_forward(
      q, k, v, {}, {}, q.size(1), k.size(1), /*dropout_p=*/0.0,
      /*is_causal=*/true, /*return_debug_mask=*/false, scale, left, right);
  return std::get<0>(out);
}

// FlashAttention-2 without the causal flag, with FA2's local window: query i
// of Sq sees key j of Sk when i + Sk − Sq − left <= j <= i + Sk − Sq + right
// (right < 0: no upper bound). q [B, Sq, H, D], k/v [B, Sk, KV, D] (strided
// batch and sequence dims allowed). Every query must see at least one key.
// Returns {out [B, Sq, H, D], log-sum-exp float32 [B, H, Sq]}.
inline std::pair<at::Tensor, at::Tensor> FlashLocalAttentionLse(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
    int64_t left, int64_t right) {
  auto out = at::_flash_attention_forward(
      q, k, v, {}, {}, q.size(1), k.size(1), /*dropout_p=*/0.0,
      /*is_causal=*/false, /*return_debug_mask=*/false, scale, left, right);
  return {std::get<0>(out), std::get<1>(out)};
}
#endif

#if SWEEPD_TORCH_HAS_CUDNN_ATTENTION
// cuDNN fused attention, causal (query i sees keys 0..i), on q [N, S, H, D] and
// k/v [N, S, KV, D] (KV divides H: grouped heads without expanding K/V; fp16 /
// bf16, D <= 256 on Hopper, CUDA). Returns {out [N, S, H, D] (contiguous),
// log-sum-exp float32 [N, H, S]}.
inline std::pair<at::Tensor, at::Tensor> CudnnCausalAttentionLse(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    double scale) {
  auto r = at::_scaled_dot_product_cudnn_attention(
      q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
      /*attn_bias=*/{}, /*compute_log_sumexp=*/true, /*dropout_p=*/0.0,
      /*is_causal=*/true, /*return_debug_mask=*/false, scale);
  at::Tensor out = std::get<0>(r).transpose(1, 2).contiguous();
  at::Tensor lse = std::get<1>(r).reshape({q.size(0), q.size(2), q.size(1)});
  return {out, lse};
}
#endif

// Integer floor division usable on every version (bitwise shifts changed
// names).
inline at::Tensor FloorDiv(const at::Tensor& x, int64_t d) {
  return at::div(x, d, "floor");
}

}  // namespace sweepd::engine::compat

#endif  // SWEEPD_WORKER_ENGINE_TORCH_COMPAT_H_
