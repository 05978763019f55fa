#include "worker/engine/kv_cache.h"

#include <limits>

#include "worker/engine/rank_forward.h"

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
                         const std::vector<int64_t>& pages, int page_size)
    : cfg_(cfg), s_(shard), layer_group_(layer_group), page_size_(page_size) {
  const int N = cfg.num_hidden_layers;
  k_.resize(N);
  v_.resize(N);
  auto opts = at::TensorOptions().dtype(s_.dtype).device(s_.device);
  for (int L = 0; L < N; ++L) {
    if (skip[L]) continue;
    const LayerGeom& g = s_.geom[L];
    const int64_t rows = pages[layer_group[L]] * page_size;
    v_[L] = at::zeros({g.kv_local, rows, g.head_dim}, opts);
    if (!cfg.layers[L].k_eq_v) {
      k_[L] = at::zeros({g.kv_local, rows, g.head_dim}, opts);
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

at::Tensor RankKvCache::Attend(const RankForward& f, int L, const at::Tensor& q,
                               const GroupRows& rows,
                               const LayerWeights& w) const {
  const LayerGeom& g = s_.geom[L];
  const int64_t R = rows.gather.size(0);
  const int64_t keys = rows.key_pos.size(1);
  const int64_t hd = g.head_dim, kv = g.kv_local;
  const int64_t groups = g.heads_local / kv;
  const int64_t pages = v_[L].size(1) / page_size_;
  // Pools are [kv, pages * page_size, hd]: gathering a row's pages gives
  // [kv, R, keys, hd], i.e. [R, kv, keys, hd] with each (row, head) a
  // contiguous [keys, hd] matrix, ready for batched GEMMs (no copy of K/V per
  // query head: GQA groups share them).
  auto gather = [&](const at::Tensor& pool) {
    return pool.view({kv, pages, page_size_, hd})
        .index_select(1, rows.gather.reshape({-1}))
        .view({kv, R, keys, hd})
        .transpose(0, 1);
  };
  at::Tensor v = gather(v_[L]);
  at::Tensor k;
  if (k_[L].defined()) {
    k = gather(k_[L]);
  } else {
    // K = V layer: K = k_norm(raw) = v_norm(raw) * k_norm.weight, then RoPE.
    at::Tensor kn =
        (v.to(at::kFloat) * w.k_norm.to(at::kFloat)).to(v.scalar_type());
    auto [cos, sin] = f.RopeAt(L, rows.key_pos.clamp_min(0));  // [R, keys, hd]
    cos = cos.unsqueeze(1);
    sin = sin.unsqueeze(1);
    k = kn * cos + RotateHalf(kn) * sin;
  }
  // q [1, R, Hl, hd] -> [R, kv, groups, hd] (heads of a KV group adjacent).
  at::Tensor qg = q.reshape({R, kv, groups, hd});
  at::Tensor scores = at::matmul(qg, k.transpose(-2, -1));  // [R, kv, g, keys]
  scores = scores.masked_fill(rows.allowed.logical_not(),
                              -std::numeric_limits<float>::infinity());
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  at::Tensor out = at::matmul(probs, v);  // [R, kv, g, hd]
  return out.reshape({1, R, g.heads_local, hd}).contiguous();
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
