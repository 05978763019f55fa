#include "worker/engine/cuda_attention.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "kernels/causal_softmax.h"
#include "kernels/layout_copy.h"
#include "kernels/lse_merge.h"
#include "worker/engine/cuda_check.h"
#include "worker/engine/torch_compat.h"

namespace sweepd::engine::internal {

#if SWEEPD_TORCH_HAS_FLASH_WINDOW
namespace {

// Banded causal attention on q [B, S, H, D], k/v [B, S, KV, D]: query i sees
// keys j with j <= i and, window > 0, i - j < window.
using AttentionFn =
    std::function<at::Tensor(const at::Tensor& q, const at::Tensor& k,
                             const at::Tensor& v, int64_t window)>;

// Runs `fn` on grouped heads and the shapes given as (sequence, window) pairs
// and compares it with a float32 banded-mask reference; logs the verdict.
bool CheckAttention(at::Device device, const std::string& name,
                    const AttentionFn& fn,
                    const std::vector<std::pair<int64_t, int64_t>>& shapes) {
  bool ok = true;
  std::string why;
  try {
    for (const auto& [S, W] : shapes) {
      const int64_t B = 2, H = 4, KV = 2, D = 64;
      auto opts = at::TensorOptions().dtype(at::kBFloat16).device(device);
      at::Tensor q = at::randn({B, S, H, D}, opts);
      at::Tensor k = at::randn({B, S, KV, D}, opts);
      at::Tensor v = at::randn({B, S, KV, D}, opts);
      at::Tensor got = fn(q, k, v, W).to(at::kFloat);
      at::Tensor qf = q.to(at::kFloat).transpose(1, 2);
      at::Tensor kf =
          k.to(at::kFloat).repeat_interleave(H / KV, 2).transpose(1, 2);
      at::Tensor vf =
          v.to(at::kFloat).repeat_interleave(H / KV, 2).transpose(1, 2);
      auto lopts = at::TensorOptions().dtype(at::kLong).device(device);
      at::Tensor qi = at::arange(S, lopts).unsqueeze(1);
      at::Tensor ki = at::arange(S, lopts).unsqueeze(0);
      at::Tensor allowed = ki.le(qi);
      if (W > 0) allowed = allowed.logical_and((qi - ki).lt(W));
      at::Tensor scores =
          at::matmul(qf, kf.transpose(-2, -1))
              .masked_fill(allowed.logical_not(),
                           -std::numeric_limits<float>::infinity());
      at::Tensor ref = at::matmul(at::softmax(scores, -1), vf).transpose(1, 2);
      const double err = (got - ref).abs().max().item<double>();
      absl::StrAppend(&why, why.empty() ? "" : ", ", "S ", S, " window ", W,
                      ": max |got - float32 reference| = ", err);
      ok = ok && err < 0.05;
    }
  } catch (const std::exception& e) {
    ok = false;
    why = e.what();
  }
  if (ok) {
    SWEEPD_LOG(INFO) << "device " << static_cast<int>(device.index()) << ": "
                     << name << " checked (" << why << ")";
  } else {
    SWEEPD_LOG(WARNING) << "device " << static_cast<int>(device.index()) << ": "
                        << name << " unusable, falling back: " << why;
  }
  return ok;
}

// The fused attention kernels (private ATen ops, and the banded composition
// built from them) are used only after they reproduced the float32 reference
// on this device once per engine (CheckAttention): a build whose kernels
// ignored the window or mishandled a layout would otherwise be silently wrong.
// The verdict is cached per (name, device) in the engine's diagnostics.
bool AttentionUsable(EngineDiagnostics* diagnostics, at::Device device,
                     const std::string& name, const AttentionFn& fn,
                     const std::vector<std::pair<int64_t, int64_t>>& shapes) {
  return diagnostics->CheckOnce(name, static_cast<int>(device.index()), [&] {
    return CheckAttention(device, name, fn, shapes);
  });
}

}  // namespace

bool CudaAttention::FlashWindowUsable() {
  return AttentionUsable(
      diagnostics_, s_.device, "FlashAttention-2 with a sliding window",
      [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
         int64_t window) {
        return compat::FlashCausalAttention(q, k, v, 1.0, window);
      },
      {{40, 16}});
}
#endif

at::Tensor CudaAttention::Forward(int L, const at::Tensor& q, at::Tensor k,
                                  at::Tensor v) {
  const LayerGeom& g = s_.geom[L];
  const int window = cfg_.layers[L].sliding_window;
  const int64_t S = q.size(1);
  const bool banded = window > 0 && S > window;
  const AttentionPath path = opts_.attention_path;
  if (path == AttentionPath::kChunkedGemm ||
      ((path == AttentionPath::kAuto || path == AttentionPath::kFlash) &&
       opts_.use_sdpa && g.head_dim > 256)) {
    return ChunkedAttention(q, k, v, banded ? window : 0);
  }
#if SWEEPD_TORCH_HAS_FLASH_WINDOW
  const bool fused = opts_.use_sdpa && s_.dtype == at::kBFloat16 &&
                     g.head_dim <= 256 && g.head_dim % 8 == 0;
#if SWEEPD_TORCH_HAS_CUDNN_ATTENTION
  if (path == AttentionPath::kAuto && fused && CudnnAttentionUsable()) {
    return CudnnAttention(q, k, v, banded ? window : 0);
  }
#endif
  if (fused && FlashWindowUsable()) {
    return compat::FlashCausalAttention(q, k, v, 1.0, banded ? window : 0);
  }
#endif
  const int64_t groups = g.heads_local / g.kv_local;
  if (groups > 1) {
    k = k.repeat_interleave(groups, 2);
    v = v.repeat_interleave(groups, 2);
  }
  at::Tensor qt = q.transpose(1, 2), kt = k.transpose(1, 2),
             vt = v.transpose(1, 2);
  at::Tensor o =
      banded
          ? compat::Attention(qt.contiguous(), kt.contiguous(), vt.contiguous(),
                              f_->AllowedMask(L, S), 1.0, opts_.use_sdpa)
          : compat::CausalAttention(qt, kt, vt, 1.0, opts_.use_sdpa);
  return o.transpose(1, 2).contiguous();
}

#if SWEEPD_TORCH_HAS_CUDNN_ATTENTION && SWEEPD_TORCH_HAS_FLASH_WINDOW
bool CudaAttention::CudnnAttentionUsable() {
  // Sequences: not a multiple of the window, a multiple (one batched
  // cuDNN call), two blocks, and shorter than the window (plain causal).
  return AttentionUsable(
      diagnostics_, s_.device, "cuDNN attention (banded by window blocks)",
      [this](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
             int64_t window) { return CudnnAttention(q, k, v, window); },
      {{40, 16}, {48, 16}, {32, 16}, {12, 16}});
}

// Causal attention through cuDNN's fused kernel; with window > 0 and a
// sequence longer than the window, the band (query i sees keys j with
// 0 <= i - j < window) is composed exactly (docs/ENGINE.md, "GPU path"):
// the sequence is cut into blocks of `window` positions; the window of
// query i of block b is the causal part of block b (keys 0..i of it) plus
// the keys of block b - 1 after offset i. cuDNN computes every block
// causally (one call when S is a multiple of the window); the part of the
// previous block (offsets i < window - 1 only: the last query of a block
// sees no earlier block) comes from cuDNN on reversed rows when S is a
// multiple of the window, else from FlashAttention-2's local attention; and
// LseMerge combines the two by their log-sum-exps. q [B, S, H, D], k/v
// [B, S, KV, D] contiguous -> [B, S, H, D].
at::Tensor CudaAttention::CudnnAttention(const at::Tensor& q,
                                         const at::Tensor& k,
                                         const at::Tensor& v, int64_t window) {
  const int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t KV = k.size(2);
  if (window <= 0 || S <= window) {
    return compat::CudnnCausalAttentionLse(q, k, v, 1.0).first;
  }
  const int64_t W = window, n = (S + W - 1) / W;
  // Sub-phases in the profile (the phase itself ends at the caller's next
  // mark).
  clock()->Mark("attention_sliding.blocks");
  at::Tensor out;
  at::Tensor lse;  // [B, H, n, W]: block b's log-sum-exps at [:, :, b]
  if (S % W == 0) {
    auto [o, l] = compat::CudnnCausalAttentionLse(
        q.reshape({B * n, W, H, D}), k.reshape({B * n, W, KV, D}),
        v.reshape({B * n, W, KV, D}), 1.0);
    out = o.view({B, S, H, D});
    lse = l.view({B, n, H, W}).permute({0, 2, 1, 3});
  } else {
    out = at::empty({B, S, H, D}, q.options());
    lse = at::empty({B, H, n, W}, q.options().dtype(at::kFloat));
    for (int64_t b = 0; b < n; ++b) {
      const int64_t s0 = b * W, len = std::min(W, S - s0);
      auto [o, l] = compat::CudnnCausalAttentionLse(
          q.narrow(1, s0, len).contiguous(), k.narrow(1, s0, len).contiguous(),
          v.narrow(1, s0, len).contiguous(), 1.0);
      out.narrow(1, s0, len).copy_(o);
      lse.select(2, b).narrow(2, 0, len).copy_(l);
    }
  }
  // out[:, s0 : s0 + rows] (the first `rows` queries of a block, with
  // log-sum-exps lb [B, H, rows]) absorbs the previous block's part `other`
  // ([B, rows, H, D] at the given element strides, lse likewise).
  auto merge = [&](int64_t s0, int64_t rows, const at::Tensor& lb,
                   const void* other, const int64_t(&other_stride)[3],
                   const float* other_lse,
                   const int64_t(&other_lse_stride)[3]) {
    clock()->Mark("attention_sliding.merge");
    at::Tensor ob = out.narrow(1, s0, rows);
    kernels::LseMergeArgs a;
    a.dtype = OpDtype();
    a.batch = B;
    a.rows = rows;
    a.heads = H;
    a.head_dim = D;
    a.out = ob.data_ptr();
    a.out_lse = lb.data_ptr<float>();
    a.other = other;
    a.other_lse = other_lse;
    for (int d = 0; d < 3; ++d) {
      a.out_stride[d] = ob.stride(d);
      a.out_lse_stride[d] = lb.stride(d);
      a.other_stride[d] = other_stride[d];
      a.other_lse_stride[d] = other_lse_stride[d];
    }
    CudaCheck(kernels::LseMergeCuda(a, stream_), "LseMerge");
  };
  if (S % W == 0 && W > 1) {
    // Every block's previous-block part in one cuDNN call: with the rows of
    // block b's queries and of block b - 1's keys/values reversed, "keys
    // after my offset" is causal. Reversed query a (offset W - 1 - a) sees
    // reversed keys 0..a - 1, i.e. queries 1..W - 1 against keys 0..W - 2
    // under the plain causal mask; its output row a is offset W - 2 - a
    // (read back with a negative row stride).
    clock()->Mark("attention_sliding.previous");
    const int64_t m = n - 1, esz = q.element_size();
    auto reversed = [&](const at::Tensor& t, int64_t first_block) {
      const int64_t heads = t.size(2), row = heads * D * esz;
      at::Tensor r = at::empty({B * m, W, heads, D}, t.options());
      CudaCheck(
          kernels::ReverseRowsCuda(
              static_cast<const char*>(t.data_ptr()) + first_block * W * row, B,
              m, W, row, S * row, W * row, row, r.data_ptr(), stream_),
          "ReverseRows");
      return r;
    };
    at::Tensor qr = reversed(q, 1), kr = reversed(k, 0), vr = reversed(v, 0);
    auto [ou, lu] = compat::CudnnCausalAttentionLse(
        qr.narrow(1, 1, W - 1), kr.narrow(1, 0, W - 1), vr.narrow(1, 0, W - 1),
        1.0);
    at::Tensor o5 = ou.view({B, m, W - 1, H, D});
    at::Tensor l4 = lu.view({B, m, H, W - 1});
    for (int64_t b = 1; b < n; ++b) {
      at::Tensor ob = o5.select(1, b - 1);  // [B, W - 1, H, D]
      at::Tensor lb = l4.select(1, b - 1);  // [B, H, W - 1]
      const int64_t os[3] = {ob.stride(0), -ob.stride(1), ob.stride(2)};
      const int64_t ls[3] = {lb.stride(0), lb.stride(1), -lb.stride(2)};
      merge(b * W, W - 1, lse.select(2, b).narrow(2, 0, W - 1),
            static_cast<const char*>(ob.data_ptr()) +
                (W - 2) * ob.stride(1) * esz,
            os, lb.data_ptr<float>() + (W - 2) * lb.stride(2), ls);
    }
  } else {
    // Per block through FlashAttention-2's local attention: query i of
    // Sq = rows sees key j of the W previous keys when j >= i + 1
    // (left = W - 1 - rows, no right bound).
    for (int64_t b = 1; b < n; ++b) {
      const int64_t s0 = b * W, rows = std::min(W - 1, S - s0);
      if (rows <= 0) continue;  // window 1: a query sees only itself
      clock()->Mark("attention_sliding.previous");
      auto [o2, l2] = compat::FlashLocalAttentionLse(
          q.narrow(1, s0, rows), k.narrow(1, s0 - W, W), v.narrow(1, s0 - W, W),
          1.0, /*left=*/W - 1 - rows,
          /*right=*/-1);
      at::Tensor l2f = l2.to(at::kFloat);
      const int64_t os[3] = {o2.stride(0), o2.stride(1), o2.stride(2)};
      const int64_t ls[3] = {l2f.stride(0), l2f.stride(1), l2f.stride(2)};
      merge(s0, rows, lse.select(2, b).narrow(2, 0, rows), o2.data_ptr(), os,
            l2f.data_ptr<float>(), ls);
    }
  }
  clock()->Mark("attention_sliding");
  return out;
}
#endif

// Chunked GEMM attention (docs/ENGINE.md, "GPU path"): the eager math —
// scores = Q·Kᵀ in the compute dtype (cuBLAS, float32 accumulation),
// softmax in float32 over the allowed keys, P rounded to the compute dtype,
// O = P·V — one block of query positions at a time, each block reading only
// the keys it may see ([0, end) causal; the window's band when window > 0).
// GQA: the `group` query heads of a KV head are rows of one matrix
// [B·KV, S·group, D] (rows ordered (position, head)), so K/V are never
// expanded. q [B, S, H, D], k/v [B, S, KV, D] -> [B, S, H, D].
at::Tensor CudaAttention::ChunkedAttention(const at::Tensor& q,
                                           const at::Tensor& k,
                                           const at::Tensor& v,
                                           int64_t window) {
  const int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t KV = k.size(2), G = H / KV;
  // Layout changes [B, S, KV, G·D] -> [B, KV, S, G·D] (rows of G·D or D
  // contiguous elements move whole; SwapMiddleDims is a plain row copy).
  const int64_t esize = q.element_size();
  auto grouped = [&](const at::Tensor& t, int64_t heads, int64_t rows_per) {
    at::Tensor src = t.contiguous();
    at::Tensor dst = at::empty({B * KV, S * rows_per, D}, t.options());
    CudaCheck(kernels::SwapMiddleDimsCuda(src.data_ptr(), B, S, KV,
                                          heads / KV * D * esize,
                                          dst.data_ptr(), stream_),
              "SwapMiddleDims");
    return dst;
  };
  at::Tensor qg = grouped(q, H, G);
  at::Tensor kg = grouped(k, KV, 1);
  at::Tensor vg = grouped(v, KV, 1);
  at::Tensor out = at::empty({B * KV, S * G, D}, q.options());
  // Query positions per block: up to 256, fewer when the score block
  // [B·KV, C·G, keys] would pass 256 MiB (EngineOptions::
  // chunked_query_block replaces the choice). Larger blocks compute more of the
  // masked upper triangle: n blocks of a causal sequence compute (n + 1) / 2n
  // of the square (n = 8: 0.5625; n = 1: 1).
  const int64_t keys_max = window > 0 ? std::min<int64_t>(S, window + 256) : S;
  const int64_t budget = int64_t{256} << 20;
  int64_t C =
      budget / std::max<int64_t>(1, B * KV * G * keys_max * q.element_size());
  C = std::clamp<int64_t>(C, 16, 256);
  const int64_t forced = opts_.chunked_query_block;
  if (forced > 0) C = std::min(forced, S);
  // Sub-phases of the full layers' attention in the profile (the layout
  // copies stay under the phase itself).
  const bool split = window == 0;
  for (int64_t s0 = 0; s0 < S; s0 += C) {
    const int64_t s1 = std::min(S, s0 + C);
    const int64_t k0 = window > 0 ? std::max<int64_t>(0, s0 - window + 1) : 0;
    const int64_t rows = (s1 - s0) * G;
    if (split) clock()->Mark("attention_full.qk");
    at::Tensor scores = at::bmm(qg.narrow(1, s0 * G, rows),
                                kg.narrow(1, k0, s1 - k0).transpose(1, 2));
    if (split) clock()->Mark("attention_full.softmax");
    kernels::CausalSoftmaxArgs a;
    a.dtype = OpDtype();
    a.scores = scores.data_ptr();
    a.batches = B * KV;
    a.rows = rows;
    a.keys = s1 - k0;
    a.group = static_cast<int>(G);
    a.q_start = s0;
    a.key_start = k0;
    a.window = window;
    a.scale = 1.0f;
    CudaCheck(kernels::CausalSoftmaxCuda(a, stream_), "CausalSoftmax");
    if (split) clock()->Mark("attention_full.pv");
    at::Tensor dst = out.narrow(1, s0 * G, rows);
    at::bmm_out(dst, scores, vg.narrow(1, k0, s1 - k0));
  }
  if (split) clock()->Mark("attention_full");
  at::Tensor result = at::empty({B, S, H, D}, q.options());
  CudaCheck(kernels::SwapMiddleDimsCuda(out.data_ptr(), B, KV, S, G * D * esize,
                                        result.data_ptr(), stream_),
            "SwapMiddleDims");
  return result;
}

kernels::Dtype CudaAttention::OpDtype() const { return OpDtypeOf(s_.dtype); }

}  // namespace sweepd::engine::internal
