// The one place that hides libtorch API differences between Debian's
// libtorch 1.13 (CPU builds) and PyTorch 2.x (GPU machines). Internal to
// sweepd::engine; header-only, stateless, thread-safe.
#ifndef SWEEPD_WORKER_ENGINE_TORCH_COMPAT_H_
#define SWEEPD_WORKER_ENGINE_TORCH_COMPAT_H_

#include <ATen/ATen.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define SWEEPD_TORCH_HAS_SDPA_SCALE 1
#else
#define SWEEPD_TORCH_HAS_SDPA_SCALE 0
#endif

namespace sweepd::engine::compat {

inline constexpr bool kHasSdpa = SWEEPD_TORCH_HAS_SDPA_SCALE;

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

// Integer floor division usable on every version (bitwise shifts changed
// names).
inline at::Tensor FloorDiv(const at::Tensor& x, int64_t d) {
  return at::div(x, d, "floor");
}

}  // namespace sweepd::engine::compat

#endif  // SWEEPD_WORKER_ENGINE_TORCH_COMPAT_H_
