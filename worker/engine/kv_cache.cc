#include "worker/engine/kv_cache.h"

#include <limits>
#include <stdexcept>

#include "kernels/paged_decode_attention.h"
#include "worker/engine/rank_forward.h"
#if SWEEPD_KERNELS_CUDA
#include "worker/engine/cuda_check.h"
#include "worker/engine/device_stats.h"
#endif

namespace sweepd::engine::internal {
namespace {

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

RankKvCache::RankKvCache(const ModelConfig& cfg, const RankShard& shard,
                         const std::vector<int>& layer_group,
                         const std::vector<uint8_t>& skip,
                         const std::vector<int64_t>& pages, int page_size,
                         bool fused, int key_splits)
    : cfg_(cfg),
      s_(shard),
      layer_group_(layer_group),
      page_size_(page_size),
      key_splits_(key_splits) {
  const int N = cfg.num_hidden_layers;
  k_.resize(N);
  v_.resize(N);
  fused_inv_freq_.resize(N);
  trash_page_ = pages;
  auto opts = at::TensorOptions().dtype(s_.dtype).device(s_.device);
  for (int L = 0; L < N; ++L) {
    if (skip[L]) continue;
    const LayerGeom& g = s_.geom[L];
    // One trash page past the table's: a decode graph's padding rows write
    // there (TrashSlot).
    const int64_t rows = (pages[layer_group[L]] + 1) * page_size;
    v_[L] = at::zeros({g.kv_local, rows, g.head_dim}, opts);
    if (!cfg.layers[L].k_eq_v) {
      k_[L] = at::zeros({g.kv_local, rows, g.head_dim}, opts);
    }
    if (fused &&
        kernels::PagedDecodeAttentionSupported(static_cast<int>(g.heads_local),
                                               static_cast<int>(g.kv_local),
                                               static_cast<int>(g.head_dim))) {
      fused_inv_freq_[L] = RopeInvFreq(cfg.layers[L], s_.device).contiguous();
    }
  }
}

void RankKvCache::Write(int L, const at::Tensor& slots, const LayerQkv& qkv) {
  const int64_t T = qkv.v.size(0) * qkv.v.size(1);
  const LayerGeom& g = s_.geom[L];
  v_[L].index_copy_(1, slots,
                    qkv.v.reshape({T, g.kv_local, g.head_dim}).transpose(0, 1));
  if (k_[L].defined()) {
    k_[L].index_copy_(
        1, slots, qkv.k.reshape({T, g.kv_local, g.head_dim}).transpose(0, 1));
  }
}

bool RankKvCache::Destination(int L, const at::Tensor& slots,
                              KvDestination* d) const {
  if (!v_[L].defined()) return false;
  // Pools are contiguous [kv_local, rows, head_dim].
  d->k_pool = k_[L].defined() ? k_[L].data_ptr() : nullptr;
  d->v_pool = v_[L].data_ptr();
  d->head_stride = v_[L].stride(0);
  d->row_stride = v_[L].stride(1);
  d->rows = slots.data_ptr<int64_t>();
  return true;
}

std::pair<at::Tensor, at::Tensor> RankKvCache::GatherKv(
    const RankForward& f, int L, const at::Tensor& gather,
    const at::Tensor& key_pos, const LayerWeights& w) const {
  const LayerGeom& g = s_.geom[L];
  const int64_t B = gather.size(0);
  const int64_t keys = key_pos.size(1);
  const int64_t hd = g.head_dim, kv = g.kv_local;
  const int64_t pages = v_[L].size(1) / page_size_;
  // Pools are [kv, pages * page_size, hd]: gathering B lists of pages gives
  // [kv, B, keys, hd], i.e. [B, kv, keys, hd] with each (list, head) a
  // contiguous [keys, hd] matrix, ready for batched GEMMs (no copy of K/V per
  // query head: GQA groups share them).
  auto take = [&](const at::Tensor& pool) {
    return pool.view({kv, pages, page_size_, hd})
        .index_select(1, gather.reshape({-1}))
        .view({kv, B, keys, hd})
        .transpose(0, 1);
  };
  at::Tensor v = take(v_[L]);
  if (k_[L].defined()) return {take(k_[L]), v};
  // K = V layer: K = k_norm(raw) = v_norm(raw) * k_norm.weight, then RoPE.
  at::Tensor kn =
      (v.to(at::kFloat) * w.k_norm.to(at::kFloat)).to(v.scalar_type());
  auto [cos, sin] = f.RopeAt(L, key_pos.clamp_min(0));  // [B, keys, hd]
  cos = cos.unsqueeze(1);
  sin = sin.unsqueeze(1);
  return {kn * cos + RotateHalf(kn) * sin, v};
}

at::Tensor RankKvCache::Attend(const RankForward& f, int L, const at::Tensor& q,
                               const GroupRows& rows,
                               const LayerWeights& w) const {
  const LayerGeom& g = s_.geom[L];
  const int64_t R = q.size(1);
  const int64_t hd = g.head_dim, kv = g.kv_local;
  const int64_t groups = g.heads_local / kv;
  const int64_t C = rows.clusters, M = rows.rmax;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  // q [1, R, Hl, hd] -> [R, kv, groups, hd] (heads of a KV group adjacent).
  if (M == 1 && fused_inv_freq_[L].defined()) {
    return FusedAttend(L, q, rows, w);
  }
  at::Tensor qg = q.reshape({R, kv, groups, hd});
  if (M == 1) {
    // Flat plan: cluster c is row c and holds all of its keys.
    auto [k, v] = GatherKv(f, L, rows.sh_gather, rows.sh_key_pos, w);
    at::Tensor scores =
        at::matmul(qg, k.transpose(-2, -1))  // [R,kv,g,keys]
            .masked_fill(rows.sh_blocked.view({R, 1, 1, -1}), neg_inf);
    at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
    return at::matmul(probs, v).reshape({1, R, g.heads_local, hd}).contiguous();
  }

  // Shared part: the queries of a cluster's rows stacked per KV head,
  // [C, kv, M * groups, hd] against the cluster's keys [C, kv, S, hd].
  at::Tensor padded = at::cat({qg, at::zeros_like(qg.narrow(0, 0, 1))}, 0);
  at::Tensor qs = padded.index_select(0, rows.sh_rows)
                      .view({C, M, kv, groups, hd})
                      .permute({0, 2, 1, 3, 4})
                      .reshape({C, kv, M * groups, hd});
  auto [ks, vs] = GatherKv(f, L, rows.sh_gather, rows.sh_key_pos, w);
  at::Tensor sh_scores = at::matmul(qs, ks.transpose(-2, -1))
                             .view({C, kv, M, groups, -1})
                             .masked_fill(rows.sh_blocked, neg_inf);
  // Back to rows: [C, kv, M, groups, .] -> [C * M, kv, groups, .] -> [R, ...].
  auto to_rows = [&](const at::Tensor& t) {
    return t.permute({0, 2, 1, 3, 4})
        .reshape({C * M, kv, groups, t.size(-1)})
        .index_select(0, rows.row_slot);
  };
  if (rows.pr_gather.size(1) == 0) {
    // No private keys (one row per cluster): a plain softmax.
    at::Tensor probs =
        at::softmax(sh_scores, -1, at::kFloat).to(q.scalar_type());
    at::Tensor out = at::matmul(probs.view({C, kv, M * groups, -1}), vs)
                         .view({C, kv, M, groups, hd});
    return to_rows(out).reshape({1, R, g.heads_local, hd}).contiguous();
  }
  // Both parts: softmax of each with its log-sum-exp, merged.
  auto part = [&](const at::Tensor& scores, const at::Tensor& v,
                  const std::vector<int64_t>& mm_shape) {
    at::Tensor s = scores.to(at::kFloat);
    at::Tensor lse = at::logsumexp(s, -1, /*keepdim=*/true);
    at::Tensor safe = at::where(at::isinf(lse), at::zeros_like(lse), lse);
    at::Tensor probs = at::exp(s - safe).to(q.scalar_type());
    at::Tensor o = at::matmul(probs.reshape(mm_shape), v);
    return std::make_pair(o, lse);
  };
  auto [sh_out, sh_lse] = part(sh_scores, vs, {C, kv, M * groups, -1});
  sh_out = to_rows(sh_out.view({C, kv, M, groups, hd}));  // [R, kv, g, hd]
  sh_lse = to_rows(sh_lse);                               // [R, kv, g, 1]
  auto [kp, vp] = GatherKv(f, L, rows.pr_gather, rows.pr_key_pos, w);
  at::Tensor pr_scores = at::matmul(qg, kp.transpose(-2, -1))  // [R,kv,g,k]
                             .masked_fill(rows.pr_blocked, neg_inf);
  auto [pr_out, pr_lse] = part(pr_scores, vp, {R, kv, groups, -1});
  // Every row sees at least its own new token, so one part is finite.
  at::Tensor m = at::maximum(sh_lse, pr_lse);
  at::Tensor ws = at::exp(sh_lse - m), wp = at::exp(pr_lse - m);
  at::Tensor out =
      (sh_out.to(at::kFloat) * ws + pr_out.to(at::kFloat) * wp) / (ws + wp);
  return out.to(q.scalar_type())
      .reshape({1, R, g.heads_local, hd})
      .contiguous();
}

at::Tensor RankKvCache::FusedAttend(int L, const at::Tensor& q,
                                    const GroupRows& rows,
                                    const LayerWeights& w) const {
  const LayerGeom& g = s_.geom[L];
  const int64_t R = q.size(1);
  at::Tensor qc = q.contiguous();
  at::Tensor out = at::empty({1, R, g.heads_local, g.head_dim}, qc.options());
  at::Tensor k_norm;
  kernels::PagedDecodeAttentionArgs a;
  a.dtype = s_.dtype == at::kBFloat16 ? kernels::Dtype::kBFloat16
                                      : kernels::Dtype::kFloat32;
  a.rows = R;
  a.heads = static_cast<int>(g.heads_local);
  a.kv_heads = static_cast<int>(g.kv_local);
  a.head_dim = static_cast<int>(g.head_dim);
  a.q = qc.data_ptr();
  a.q_row_stride = g.heads_local * g.head_dim;
  if (k_[L].defined()) {
    a.k_pool = k_[L].data_ptr();
  } else {
    k_norm = w.k_norm.to(s_.dtype).contiguous();
    a.k_norm = k_norm.data_ptr();
    a.inv_freq = fused_inv_freq_[L].data_ptr<float>();
  }
  a.v_pool = v_[L].data_ptr();
  a.pool_rows = v_[L].size(1);
  a.page_size = page_size_;
  a.pages = rows.sh_gather.data_ptr<int64_t>();
  a.page_stride = rows.sh_gather.size(1);
  a.max_pages = rows.sh_gather.size(1);
  a.first_pos = rows.first_pos.data_ptr<int64_t>();
  a.q_pos = rows.q_pos.data_ptr<int64_t>();
  a.window = cfg_.layers[L].sliding_window;
  a.scale = 1.0f;  // the ATen path applies none (Gemma 4: scaling 1)
  a.out = out.data_ptr();
  if (!qc.is_cuda()) {
    absl::Status st = kernels::PagedDecodeAttentionCpu(a);
    if (!st.ok()) throw std::runtime_error(st.ToString());
    return out;
  }
#if SWEEPD_KERNELS_CUDA
  a.splits = key_splits_ > 0 ? key_splits_
                             : kernels::PagedDecodeAttentionSplits(
                                   R, a.kv_heads, a.max_pages * page_size_,
                                   kernels::CudaMultiprocessorCount());
  at::Tensor ws;
  if (a.splits > 1) {
    ws = at::empty({kernels::PagedDecodeAttentionWorkspaceBytes(a)},
                   qc.options().dtype(at::kByte));
    a.workspace = ws.data_ptr();
  }
  CudaCheck(kernels::PagedDecodeAttentionCuda(
                a, CurrentCudaStream(static_cast<int>(s_.device.index()))),
            "PagedDecodeAttention");
  return out;
#else
  throw std::runtime_error(
      "fused decode attention on a CUDA tensor needs a build with "
      "SWEEPD_ENABLE_CUDA");
#endif
}

void RankKvCache::CopyPages(const std::vector<PageCopy>& copies) {
  for (const PageCopy& c : copies) {
    for (size_t L = 0; L < v_.size(); ++L) {
      if (!v_[L].defined() || layer_group_[L] != c.group) continue;
      for (at::Tensor* pool : {&v_[L], &k_[L]}) {
        if (!pool->defined()) continue;
        pool->narrow(1, int64_t{c.dst} * page_size_, page_size_)
            .copy_(pool->narrow(1, int64_t{c.src} * page_size_, page_size_));
      }
    }
  }
}

int64_t RankKvCache::bytes() const {
  int64_t total = 0;
  for (const auto* pools : {&k_, &v_}) {
    for (const at::Tensor& t : *pools) {
      if (t.defined()) total += t.numel() * t.element_size();
    }
  }
  return total;
}

}  // namespace sweepd::engine::internal
