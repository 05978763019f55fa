#include "worker/engine/decode_rows.h"

#include <algorithm>
#include <map>
#include <utility>

namespace sweepd::engine::internal {

GroupStepRows PlanGroupRows(const std::vector<RowPages>& rows, int page_size,
                            int64_t min_saved_keys) {
  const int64_t R = static_cast<int64_t>(rows.size());
  const int64_t P = page_size;
  GroupStepRows out;
  // Clusters in order of their first row; key = (first page index, page id).
  std::map<std::pair<int64_t, int32_t>, int64_t> cluster_of_key;
  std::vector<std::vector<int64_t>> members;
  std::vector<int64_t> cluster(R, -1);
  for (int64_t r = 0; r < R; ++r) {
    const std::vector<int32_t>& pages = *rows[r].pages;
    if (pages.empty()) {  // no keys: a cluster of its own with nothing shared
      cluster[r] = static_cast<int64_t>(members.size());
      members.push_back({r});
      continue;
    }
    auto [it, inserted] =
        cluster_of_key.emplace(std::make_pair(rows[r].first, pages[0]),
                               static_cast<int64_t>(members.size()));
    if (inserted) members.emplace_back();
    cluster[r] = it->second;
    members[it->second].push_back(r);
  }
  int64_t C = static_cast<int64_t>(members.size());
  // Shared pages per cluster: all of a lone row's pages, else the longest
  // common prefix of the members' page lists.
  std::vector<int64_t> shared(C, 0);
  int64_t saved_keys = 0;
  for (int64_t c = 0; c < C; ++c) {
    const std::vector<int32_t>& lead = *rows[members[c][0]].pages;
    int64_t n = static_cast<int64_t>(lead.size());
    for (size_t m = 1; m < members[c].size(); ++m) {
      const std::vector<int32_t>& p = *rows[members[c][m]].pages;
      n = std::min<int64_t>(n, static_cast<int64_t>(p.size()));
      int64_t i = 0;
      while (i < n && p[i] == lead[i]) ++i;
      n = i;
    }
    shared[c] = n;
    saved_keys += (static_cast<int64_t>(members[c].size()) - 1) * n * P;
  }
  if (C < R && saved_keys < min_saved_keys) {
    // Flat: every row a cluster of its own, in row order.
    C = R;
    members.assign(R, {});
    shared.assign(R, 0);
    for (int64_t r = 0; r < R; ++r) {
      members[r] = {r};
      cluster[r] = r;
      shared[r] = static_cast<int64_t>(rows[r].pages->size());
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    out.shared_pages = std::max(out.shared_pages, shared[c]);
    out.rmax =
        std::max<int64_t>(out.rmax, static_cast<int64_t>(members[c].size()));
  }
  for (int64_t r = 0; r < R; ++r) {
    out.private_pages = std::max<int64_t>(
        out.private_pages,
        static_cast<int64_t>(rows[r].pages->size()) - shared[cluster[r]]);
  }
  const int64_t S = out.shared_pages, Q = out.private_pages;
  out.clusters = C;
  out.sh_gather.assign(C * S, 0);
  out.sh_key_pos.assign(C * S * P, -1);
  out.sh_rows.assign(C * out.rmax, R);
  out.row_slot.assign(R, 0);
  for (int64_t c = 0; c < C; ++c) {
    const RowPages& lead = rows[members[c][0]];
    for (int64_t i = 0; i < shared[c]; ++i) {
      out.sh_gather[c * S + i] = (*lead.pages)[i];
      for (int64_t j = 0; j < P; ++j) {
        out.sh_key_pos[(c * S + i) * P + j] = (lead.first + i) * P + j;
      }
    }
    for (size_t m = 0; m < members[c].size(); ++m) {
      const int64_t r = members[c][m];
      out.sh_rows[c * out.rmax + static_cast<int64_t>(m)] = r;
      out.row_slot[r] = c * out.rmax + static_cast<int64_t>(m);
    }
  }
  out.row_first_pos.resize(R);
  for (int64_t r = 0; r < R; ++r) out.row_first_pos[r] = rows[r].first * P;
  out.pr_gather.assign(R * Q, 0);
  out.pr_key_pos.assign(R * Q * P, -1);
  for (int64_t r = 0; r < R; ++r) {
    const std::vector<int32_t>& pages = *rows[r].pages;
    const int64_t s = shared[cluster[r]];
    for (int64_t i = s; i < static_cast<int64_t>(pages.size()); ++i) {
      const int64_t k = i - s;
      out.pr_gather[r * Q + k] = pages[i];
      for (int64_t j = 0; j < P; ++j) {
        out.pr_key_pos[(r * Q + k) * P + j] = (rows[r].first + i) * P + j;
      }
    }
  }
  return out;
}

}  // namespace sweepd::engine::internal
