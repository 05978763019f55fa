// Internal to sweepd::engine: the host-side bookkeeping of a decode session's
// paged KV cache (docs/GENERATION.md, "KV cache"). Layers are grouped by
// attention window (0 = full attention); each group has its own pool of
// fixed-size pages, and every layer of the group stores the token at
// position p of a sequence in the same (page, slot). A sequence lists its
// pages per group in position order. Full groups keep every page; a sliding
// group frees a page once no later query can see it, so it holds a ring of
// at most ceil(window / page_size) + 1 pages. Forking shares the parent's
// pages (reference counted) and copies only the partially filled last page,
// which the child will write into.
//
// Plain C++; owned by one session and used from its thread only.
#ifndef SWEEPD_WORKER_ENGINE_PAGE_TABLE_H_
#define SWEEPD_WORKER_ENGINE_PAGE_TABLE_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/statusor.h"

namespace sweepd::engine::internal {

struct PageCopy {
  int group = 0;
  int32_t src = 0, dst = 0;
};

class PageTable {
 public:
  // windows[g]: group g's window (0 = full); pages[g]: its pool size.
  PageTable(std::vector<int> windows, std::vector<int64_t> pages,
            int page_size);

  int page_size() const { return page_size_; }
  int groups() const { return static_cast<int>(windows_.size()); }
  int window(int g) const { return windows_[g]; }

  // A new empty sequence.
  int64_t Create();
  // Makes room for `n` more tokens (allocating pages); RESOURCE_EXHAUSTED and
  // no change when a pool is short.
  absl::Status Reserve(int64_t seq, int64_t n);
  // Reserve for the `n` prompt tokens of an empty sequence: sliding groups
  // get pages only for the positions a later query can see.
  absl::Status ReservePrompt(int64_t seq, int64_t n);
  // The flat slot (page * page_size + offset) of position `pos` in group g;
  // -1 for a position before the group's first page (not kept).
  int64_t Slot(int64_t seq, int g, int64_t pos) const;
  // Records `n` more tokens written, then frees sliding pages out of reach.
  void Advance(int64_t seq, int64_t n);
  // A child sharing `seq`'s pages; the partial last page of each group is
  // copied (appended to *copies). RESOURCE_EXHAUSTED and no change when a
  // pool is short.
  absl::StatusOr<int64_t> Fork(int64_t seq, std::vector<PageCopy>* copies);
  void Release(int64_t seq);

  int64_t length(int64_t seq) const { return seqs_.at(seq).length; }
  bool has(int64_t seq) const { return seqs_.count(seq) > 0; }
  // Group g's pages of `seq` in position order; the first holds positions
  // from first_page(seq, g) * page_size.
  const std::vector<int32_t>& pages(int64_t seq, int g) const {
    return seqs_.at(seq).pages[g];
  }
  int64_t first_page(int64_t seq, int g) const {
    return seqs_.at(seq).first[g];
  }
  int64_t free_pages(int g) const {
    return static_cast<int64_t>(free_[g].size());
  }
  // Pages group g needs for a sequence of `tokens` tokens.
  int64_t PagesFor(int g, int64_t tokens) const;

 private:
  struct Seq {
    int64_t length = 0;
    std::vector<std::vector<int32_t>> pages;  // per group
    std::vector<int64_t> first;               // per group: first page index
  };
  int32_t Take(int g);
  void Drop(int g, int32_t page);

  std::vector<int> windows_;
  int page_size_;
  std::vector<std::vector<int32_t>> free_;  // per group
  std::vector<std::vector<int32_t>> refs_;  // per group, per page
  std::map<int64_t, Seq> seqs_;
  int64_t next_id_ = 0;
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_PAGE_TABLE_H_
