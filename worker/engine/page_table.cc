#include "worker/engine/page_table.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace sweepd::engine::internal {

PageTable::PageTable(std::vector<int> windows, std::vector<int64_t> pages,
                     int page_size)
    : windows_(std::move(windows)), page_size_(page_size) {
  SWEEPD_CHECK(windows_.size() == pages.size());
  SWEEPD_CHECK(page_size_ > 0);
  free_.resize(windows_.size());
  refs_.resize(windows_.size());
  for (size_t g = 0; g < windows_.size(); ++g) {
    refs_[g].assign(pages[g], 0);
    // Lowest page ids first.
    for (int64_t p = pages[g] - 1; p >= 0; --p) {
      free_[g].push_back(static_cast<int32_t>(p));
    }
  }
}

int64_t PageTable::Create() {
  Seq s;
  s.pages.resize(windows_.size());
  s.first.assign(windows_.size(), 0);
  seqs_.emplace(next_id_, std::move(s));
  return next_id_++;
}

int64_t PageTable::PagesFor(int g, int64_t tokens) const {
  int64_t pages = (tokens + page_size_ - 1) / page_size_;
  if (windows_[g] > 0) {
    pages = std::min<int64_t>(pages,
                              (windows_[g] + page_size_ - 1) / page_size_ + 1);
  }
  return pages;
}

int32_t PageTable::Take(int g) {
  SWEEPD_CHECK(!free_[g].empty());
  int32_t p = free_[g].back();
  free_[g].pop_back();
  refs_[g][p] = 1;
  return p;
}

void PageTable::Drop(int g, int32_t page) {
  SWEEPD_CHECK(refs_[g][page] > 0);
  if (--refs_[g][page] == 0) free_[g].push_back(page);
}

absl::Status PageTable::Reserve(int64_t seq, int64_t n) {
  Seq& s = seqs_.at(seq);
  std::vector<int64_t> need(windows_.size());
  for (int g = 0; g < groups(); ++g) {
    const int64_t last_page = (s.length + n - 1) / page_size_;
    need[g] = std::max<int64_t>(0, last_page + 1 - s.first[g] -
                                       static_cast<int64_t>(s.pages[g].size()));
    if (need[g] > free_pages(g)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("KV cache full: group ", g, " needs ", need[g],
                       " more pages, ", free_pages(g), " free"));
    }
  }
  for (int g = 0; g < groups(); ++g) {
    for (int64_t i = 0; i < need[g]; ++i) s.pages[g].push_back(Take(g));
  }
  return absl::OkStatus();
}

absl::Status PageTable::ReservePrompt(int64_t seq, int64_t n) {
  Seq& s = seqs_.at(seq);
  SWEEPD_CHECK(s.length == 0);
  for (int g = 0; g < groups(); ++g) {
    SWEEPD_CHECK(s.pages[g].empty());
    s.first[g] = windows_[g] > 0
                     ? std::max<int64_t>(0, n - windows_[g] + 1) / page_size_
                     : 0;
  }
  absl::Status st = Reserve(seq, n);
  if (!st.ok()) std::fill(s.first.begin(), s.first.end(), 0);
  return st;
}

int64_t PageTable::Slot(int64_t seq, int g, int64_t pos) const {
  const Seq& s = seqs_.at(seq);
  const int64_t idx = pos / page_size_ - s.first[g];
  if (idx < 0) return -1;
  SWEEPD_CHECK(idx < static_cast<int64_t>(s.pages[g].size()))
      << "position " << pos << " has no page in group " << g;
  return int64_t{s.pages[g][idx]} * page_size_ + pos % page_size_;
}

void PageTable::Advance(int64_t seq, int64_t n) {
  Seq& s = seqs_.at(seq);
  s.length += n;
  for (int g = 0; g < groups(); ++g) {
    if (windows_[g] <= 0) continue;
    // The next query is at position `length`; it sees keys > length - window.
    const int64_t oldest_needed = s.length - windows_[g] + 1;
    while (!s.pages[g].empty() &&
           (s.first[g] + 1) * page_size_ - 1 < oldest_needed) {
      Drop(g, s.pages[g].front());
      s.pages[g].erase(s.pages[g].begin());
      ++s.first[g];
    }
  }
}

absl::StatusOr<int64_t> PageTable::Fork(int64_t seq,
                                        std::vector<PageCopy>* copies) {
  const Seq& parent = seqs_.at(seq);
  const bool partial = parent.length % page_size_ != 0;
  if (partial) {
    for (int g = 0; g < groups(); ++g) {
      if (!parent.pages[g].empty() && free_pages(g) < 1) {
        return absl::ResourceExhaustedError(
            absl::StrCat("KV cache full: group ", g, " has no free page"));
      }
    }
  }
  Seq child = parent;
  for (int g = 0; g < groups(); ++g) {
    std::vector<int32_t>& pages = child.pages[g];
    // Pages reserved past the parent's last token are not shared.
    const int64_t written =
        parent.length == 0
            ? 0
            : std::max<int64_t>(
                  0, (parent.length - 1) / page_size_ - parent.first[g] + 1);
    if (static_cast<int64_t>(pages.size()) > written) pages.resize(written);
    for (size_t i = 0; i < pages.size(); ++i) {
      const bool tail = partial && i + 1 == pages.size();
      if (tail) {
        const int32_t copy = Take(g);
        copies->push_back({g, pages[i], copy});
        pages[i] = copy;
      } else {
        ++refs_[g][pages[i]];
      }
    }
  }
  seqs_.emplace(next_id_, std::move(child));
  return next_id_++;
}

void PageTable::Release(int64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (int g = 0; g < groups(); ++g) {
    for (int32_t p : it->second.pages[g]) Drop(g, p);
  }
  seqs_.erase(it);
}

}  // namespace sweepd::engine::internal
