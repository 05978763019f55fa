// The per-rank cache of intervention-built layer weights
// (layer_weights_cache.h).
#include "worker/engine/layer_weights_cache.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"

namespace sweepd::engine::internal {

std::shared_ptr<const LayerWeights> LayerWeightsCache::GetOrBuild(
    const std::string& key,
    const std::function<std::shared_ptr<const LayerWeights>()>& build) {
  absl::MutexLock lock(&mu_);
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      entries_.splice(entries_.begin(), entries_, it);
      return entries_.front().second;
    }
  }
  ++builds_;
  std::shared_ptr<const LayerWeights> built = build();
  if (capacity_ == 0) return built;
  entries_.emplace_front(key, built);
  while (entries_.size() > capacity_) entries_.pop_back();
  return built;
}

std::string LayerWeightsCache::ReplaceKey(int layer, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat("replace_layer\n", layer, "\n", path, "\n",
                      static_cast<uint64_t>(st.st_dev), ":",
                      static_cast<uint64_t>(st.st_ino), ":",
                      static_cast<int64_t>(st.st_size), ":",
                      static_cast<int64_t>(st.st_mtim.tv_sec), ".",
                      static_cast<int64_t>(st.st_mtim.tv_nsec));
}

std::string LayerWeightsCache::ReinitKey(int layer, uint64_t seed) {
  return absl::StrCat("reinit\n", layer, "\n", seed);
}

int64_t LayerWeightsCache::builds() const {
  absl::MutexLock lock(&mu_);
  return builds_;
}

size_t LayerWeightsCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace sweepd::engine::internal
