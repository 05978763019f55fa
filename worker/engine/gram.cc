#include "worker/engine/gram.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/engine/tp_ops.h"

namespace sweepd::engine::internal {

int64_t CaptureWidth(const ModelConfig& cfg, const CapturePoint& cp) {
  if (cp.kind == CapturePoint::kAttnHeads) {
    return static_cast<int64_t>(cfg.num_attention_heads) *
           cfg.layers[cp.layer].head_dim;
  }
  return cfg.hidden_size;
}

absl::StatusOr<std::shared_ptr<GramAccumulatorImpl>> MakeGramAccumulator(
    const ModelConfig& cfg, int tp, const void* owner, const std::string& point,
    const std::string& target) {
  auto g = std::make_shared<GramAccumulatorImpl>();
  g->owner = owner;
  g->point_ = point;
  g->target_ = target;
  ASSIGN_OR_RETURN(g->x, ParseCapture(point, cfg.num_hidden_layers));
  g->d = CaptureWidth(cfg, g->x);
  if (!target.empty()) {
    ASSIGN_OR_RETURN(CapturePoint y,
                     ParseCapture(target, cfg.num_hidden_layers));
    g->y = y;
    g->e = CaptureWidth(cfg, y);
  }
  g->blocks.resize(tp);
  if (HeadSharded(g->x)) {
    // Rank r holds heads [r·Hl, (r+1)·Hl): columns [r·d/tp, (r+1)·d/tp).
    for (int r = 0; r < tp; ++r) {
      g->blocks[r].row_start = r * (g->d / tp);
      g->blocks[r].row_len = g->d / tp;
    }
  } else {
    const int64_t chunk = (g->d + tp - 1) / tp;
    for (int r = 0; r < tp; ++r) {
      g->blocks[r].row_start = std::min<int64_t>(r * chunk, g->d);
      g->blocks[r].row_len =
          std::min<int64_t>(chunk, g->d - g->blocks[r].row_start);
    }
  }
  return g;
}

GramFeed::GramFeed(const ModelConfig& cfg, int rank, int tp,
                   comm::Communicator* comm,
                   std::vector<GramAccumulatorImpl*> grams, at::Tensor rows)
    : cfg_(cfg),
      rank_(rank),
      tp_(tp),
      comm_(comm),
      grams_(std::move(grams)),
      pending_(grams_.size()),
      rows_(std::move(rows)) {}

bool GramFeed::Wants(CapturePoint::Kind kind, int L) const {
  for (const GramAccumulatorImpl* g : grams_) {
    if (g->x.kind == kind && g->x.layer == L) return true;
    if (g->y && g->y->kind == kind && g->y->layer == L) return true;
  }
  return false;
}

at::Tensor GramFeed::FullRows(const CapturePoint& cp, const at::Tensor& t,
                              at::Tensor* local) {
  const int64_t T = t.size(0) * t.size(1);
  at::Tensor rows = t.reshape({T, -1}).index_select(0, rows_).contiguous();
  if (local != nullptr) *local = rows;
  if (!HeadSharded(cp) || tp_ == 1) return rows;
  // [tp, n, w] -> [n, tp * w]: rank order is head order.
  at::Tensor all = AllGather(comm_, rows);
  return all.permute({1, 0, 2}).reshape({rows.size(0), -1});
}

void GramFeed::Offer(CapturePoint::Kind kind, int L, const at::Tensor& t) {
  if (rows_.numel() == 0) return;  // same on every rank: no collective
  for (size_t i = 0; i < grams_.size(); ++i) {
    GramAccumulatorImpl* g = grams_[i];
    Pending& p = pending_[i];
    const bool is_x = g->x.kind == kind && g->x.layer == L;
    const bool is_y = g->y && g->y->kind == kind && g->y->layer == L;
    if (!is_x && !is_y) continue;
    at::Tensor local;
    at::Tensor full = FullRows(is_x ? g->x : *g->y, t, &local);
    if (is_x) {
      const GramBlock& b = g->blocks[rank_];
      p.x_full = full;
      // Head-sharded: the local rows are this rank's columns; replicated:
      // this rank's even share of the columns.
      p.x_block =
          HeadSharded(g->x) ? local : full.narrow(1, b.row_start, b.row_len);
    }
    if (is_y) p.y_full = full;
    if (p.x_full.defined() && (!g->y || p.y_full.defined())) {
      Accumulate(g, &p);
      p = Pending{};
    }
  }
}

void GramFeed::Accumulate(GramAccumulatorImpl* g, Pending* p) {
  GramBlock& b = g->blocks[rank_];
  const auto dopts =
      at::TensorOptions().dtype(at::kDouble).device(p->x_full.device());
  if (!b.xtx.defined()) {
    b.xtx = at::zeros({b.row_len, g->d}, dopts);
    if (g->y) {
      b.xty = at::zeros({b.row_len, g->e}, dopts);
      if (rank_ == 0) b.yy = at::zeros({}, dopts);
    }
  }
  // bf16/fp32 values are exact in float64, so every product is exact and the
  // sums are float64 sums. Rows go in chunks of kChunkRows so the float64
  // copies stay small (31B full layer: 2048 x 16384 x 8 B = 256 MiB) whatever
  // the batch.
  constexpr int64_t kChunkRows = 2048;
  const int64_t n = p->x_full.size(0);
  for (int64_t r0 = 0; r0 < n; r0 += kChunkRows) {
    const int64_t len = std::min(kChunkRows, n - r0);
    at::Tensor xb = p->x_block.narrow(0, r0, len).to(at::kDouble);
    b.xtx.addmm_(xb.t(), p->x_full.narrow(0, r0, len).to(at::kDouble));
    if (g->y) {
      at::Tensor y = p->y_full.narrow(0, r0, len).to(at::kDouble);
      b.xty.addmm_(xb.t(), y);
      if (rank_ == 0) b.yy.add_(y.pow(2).sum());
    }
  }
}

}  // namespace sweepd::engine::internal
