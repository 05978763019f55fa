// Internal to sweepd::engine: one rank's KV cache memory for a decode session
// (docs/GENERATION.md, "KV cache"). Per decoder layer a pool addressed by
// the flat slots of PageTable. Sliding layers store K (after k_norm and RoPE)
// and V (after v_norm), as [kv_heads_local, pages * page_size, head_dim] so a
// row's gathered keys are contiguous per KV head. K = V layers
// (attention_k_eq_v) store V only: their K is k_norm's weight times V (both
// norms share the raw projection's RMS), with RoPE at the key's position,
// recomputed when attending. Skipped layers have no pool.
//
// Ownership: owned by its session, one per rank; borrows the rank's shard.
// Used on the rank's thread only.
#ifndef SWEEPD_WORKER_ENGINE_KV_CACHE_H_
#define SWEEPD_WORKER_ENGINE_KV_CACHE_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "common/model_config.h"
#include "worker/engine/page_table.h"
#include "worker/engine/rank_backend.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

class RankForward;

// One step's view of a layer group for the rows being decoded, on the rank's
// device: where each row's new token goes and which keys each row sees, split
// into the parts shared by a cluster of rows and each row's private part
// (decode_rows.h). R rows, C clusters of at most rmax rows.
struct GroupRows {
  at::Tensor write_slots;  // [R] int64
  int64_t clusters = 0, rmax = 0;
  at::Tensor sh_gather;   // [C, S] int64 page ids (padding: 0)
  at::Tensor sh_key_pos;  // [C, S * page_size] int64 (padding: -1)
  at::Tensor sh_rows;     // [C * rmax] int64 row per slot (padding: R)
  at::Tensor row_slot;    // [R] int64 slot of each row
  at::Tensor sh_blocked;  // [C, 1, rmax, 1, S * page_size] bool: key hidden
  at::Tensor pr_gather;   // [R, Q] int64 page ids (Q may be 0)
  at::Tensor pr_key_pos;  // [R, Q * page_size] int64 (padding: -1)
  at::Tensor pr_blocked;  // [R, 1, 1, Q * page_size] bool: key hidden
  // The fused flat-plan attention's inputs (kernels/paged_decode_attention.h):
  at::Tensor first_pos;  // [R] int64 position of slot 0 of sh_gather's row
  at::Tensor q_pos;      // [R] int64 the row's query position
};

class RankKvCache {
 public:
  // layer_group[L]: L's group in the page table; pages[g]: group g's pool.
  // `fused`: the flat plan attends through the fused paged kernel
  // (DecodeAttention; on CPU devices its reference) where it takes the
  // layer's shapes, with `key_splits` splits per (row, KV head) on CUDA (0:
  // PagedDecodeAttentionSplits' choice).
  RankKvCache(const ModelConfig& cfg, const RankShard& shard,
              const std::vector<int>& layer_group,
              const std::vector<uint8_t>& skip,
              const std::vector<int64_t>& pages, int page_size, bool fused,
              int key_splits = 0);

  // Stores layer L's k/v [1, T, kv_local, head_dim] at `slots` [T].
  void Write(int L, const at::Tensor& slots, const LayerQkv& qkv);
  // Where a backend that writes layer L's k/v itself puts those of T rows
  // bound for `slots` [T] (int64, contiguous, the rank's device; borrowed
  // for as long as *d is used): Write's effect. false: L has no pool.
  bool Destination(int L, const at::Tensor& slots, KvDestination* d) const;
  // Attention of q [1, R, heads_local, head_dim] (one new token per row)
  // over each row's cached keys -> [1, R, heads_local, head_dim]: the shared
  // part as one batched GEMM per cluster and KV head, the private part per
  // row, merged by log-sum-exp. The flat plan (rmax == 1) with `fused` runs
  // the paged kernel instead (FusedAttend).
  at::Tensor Attend(const RankForward& f, int L, const at::Tensor& q,
                    const GroupRows& rows, const LayerWeights& w) const;
  // Whether layer L's flat plan runs the fused kernel.
  bool fused(int L) const { return fused_inv_freq_[L].defined(); }
  // A slot of group g's trash page (past the page table's pages, never read
  // by a row): where a decode graph's padding rows write.
  int64_t TrashSlot(int g) const { return trash_page_[g] * page_size_; }
  // Copies whole pages (fork of a partially filled page).
  void CopyPages(const std::vector<PageCopy>& copies);
  int64_t bytes() const;

 private:
  const ModelConfig& cfg_;
  const RankShard& s_;
  std::vector<int> layer_group_;
  // Layer L's K and V for B page lists `gather` [B, pages] whose keys sit at
  // positions `key_pos` [B, keys]: {k, v}, each [B, kv, keys, hd].
  std::pair<at::Tensor, at::Tensor> GatherKv(const RankForward& f, int L,
                                             const at::Tensor& gather,
                                             const at::Tensor& key_pos,
                                             const LayerWeights& w) const;
  // The flat plan's attention in one fused kernel (two with a key split).
  at::Tensor FusedAttend(int L, const at::Tensor& q, const GroupRows& rows,
                         const LayerWeights& w) const;
  int page_size_;
  int key_splits_;                 // 0: automatic
  std::vector<at::Tensor> k_, v_;  // per layer
  // Per layer: RoPE inverse frequencies where the fused kernel serves it
  // (undefined: the ATen ops).
  std::vector<at::Tensor> fused_inv_freq_;
  std::vector<int64_t> trash_page_;  // per group: the table's page count
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_KV_CACHE_H_
