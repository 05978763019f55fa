// Internal to sweepd::engine: a small per-rank cache of layer weights that an
// intervention builds from the shard (replace_layer: the file's tensors
// converted, sharded and fused in place of the checkpoint's; reinit: the
// layer re-drawn from a seed), so that a task running many forwards with the
// same intervention (eval over many window batches, probe, capture) builds
// them once instead of once per forward. Keys name everything the weights
// depend on besides the rank's immutable shard: the kind, the layer and the
// seed, or the replacement file's path and identity (device, inode, size,
// mtime), so a file rewritten in place is rebuilt. At most `capacity` entries
// are kept (least recently used evicted; each entry holds one layer's shard in
// the compute dtype on the rank's device); an entry in use by a forward stays
// alive through its shared_ptr after eviction. docs/ENGINE.md,
// "Interventions".
//
// Thread-safe (a mutex; a miss builds under it, so concurrent forwards of one
// rank wait instead of building twice). Owned by the RankShard (shared_ptr).
#ifndef SWEEPD_WORKER_ENGINE_LAYER_WEIGHTS_CACHE_H_
#define SWEEPD_WORKER_ENGINE_LAYER_WEIGHTS_CACHE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace sweepd::engine::internal {

struct LayerWeights;

class LayerWeightsCache {
 public:
  static constexpr size_t kDefaultCapacity = 2;
  explicit LayerWeightsCache(size_t capacity = kDefaultCapacity)
      : capacity_(capacity) {}

  // The weights cached under `key`, else build() kept under `key`. A
  // capacity of 0 caches nothing.
  std::shared_ptr<const LayerWeights> GetOrBuild(
      const std::string& key,
      const std::function<std::shared_ptr<const LayerWeights>()>& build);

  // The key of a replace_layer file for layer L: its path and identity; ""
  // when the file cannot be stat'ed (then the caller builds without caching).
  static std::string ReplaceKey(int layer, const std::string& path);
  // The key of a reinit of layer L from `seed`.
  static std::string ReinitKey(int layer, uint64_t seed);

  // Builds run so far (misses), for tests and diagnostics.
  int64_t builds() const;
  size_t size() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  // Most recently used first.
  std::list<std::pair<std::string, std::shared_ptr<const LayerWeights>>>
      entries_ ABSL_GUARDED_BY(mu_);
  int64_t builds_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_LAYER_WEIGHTS_CACHE_H_
