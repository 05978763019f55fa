// Internal to sweepd::engine: how the rows of one decode step see their keys
// (docs/GENERATION.md, "Shared-prefix attention"). Samples forked from one
// prompt share the prompt's full pages (PageTable::Fork); attending to those
// pages once for all of them, as one GEMM per KV head with the samples'
// queries stacked, reads the prompt's K/V once per step instead of once per
// sample. Per layer group, rows whose page lists start with the same page
// (and the same first page index) form a cluster; the cluster's longest
// common page prefix is its shared part, and each row's remaining pages are
// its private part. A cluster of one row has only a shared part. Attention
// over the two parts is merged by log-sum-exp. The cascade costs more kernel
// launches than it saves when the shared part is short, so below a threshold
// of saved key reads the plan is flat: one cluster per row, in row order,
// holding all of the row's pages (rmax == 1).
//
// Plain C++ (host-side planning); a pure function, thread-safe.
#ifndef SWEEPD_WORKER_ENGINE_DECODE_ROWS_H_
#define SWEEPD_WORKER_ENGINE_DECODE_ROWS_H_

#include <cstdint>
#include <vector>

namespace sweepd::engine::internal {

// One row's pages in a group, in position order, and the page index of the
// first (PageTable::pages / first_page).
struct RowPages {
  const std::vector<int32_t>* pages = nullptr;
  int64_t first = 0;
};

// The step's key layout for one group. Row-major host arrays; padding page id
// 0 with key position -1 (never attended).
struct GroupStepRows {
  int64_t clusters = 0;             // C
  int64_t rmax = 0;                 // rows of the largest cluster
  int64_t shared_pages = 0;         // S: pages of the longest shared part
  int64_t private_pages = 0;        // Q: pages of the longest private part
  std::vector<int64_t> sh_gather;   // [C, S] page ids
  std::vector<int64_t> sh_key_pos;  // [C, S * page_size]
  // [C, rmax]: the row in each cluster slot; padding = the number of rows.
  std::vector<int64_t> sh_rows;
  std::vector<int64_t> row_slot;    // [R]: row's flat slot in [C * rmax]
  std::vector<int64_t> pr_gather;   // [R, Q] page ids
  std::vector<int64_t> pr_key_pos;  // [R, Q * page_size]
  // [R]: position of slot 0 of each row's first page (first * page_size),
  // for the fused attention of the flat plan (page list = sh_gather row).
  std::vector<int64_t> row_first_pos;
};

// `min_saved_keys`: plan clusters only when they save at least this many key
// reads per layer, i.e. sum over clusters of (rows - 1) * shared keys; else
// plan flat. 0 = always cluster.
GroupStepRows PlanGroupRows(const std::vector<RowPages>& rows, int page_size,
                            int64_t min_saved_keys = 0);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_DECODE_ROWS_H_
