// MetricsEndpoint: a Prometheus scrape endpoint (`GET /metrics`, text
// exposition format 0.0.4) over prometheus-cpp collectables (registries,
// scrape-time collectors), served by prometheus-cpp's Exposer (civetweb).
// sweepd (`--metrics-listen`) and sweep-worker
// (`--metrics-listen`) each own one; tests bind port 0 and read port().
//
// Ownership: shares the collectables (the metrics' owner keeps them too); owns
// the HTTP server and its threads, which stop when the endpoint is destroyed.
// Thread-safety: the accessors are const and thread-safe; scrapes run on the
// server's threads, so everything registered must be safe to collect from any
// thread.
#ifndef SWEEPD_COMMON_METRICS_ENDPOINT_H_
#define SWEEPD_COMMON_METRICS_ENDPOINT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace prometheus {
class Exposer;
class Collectable;
}  // namespace prometheus

namespace sweepd {

class MetricsEndpoint {
 public:
  // Serves `collectables` at http://`listen`/metrics. `listen` is HOST:PORT;
  // port 0 picks a free port. UNAVAILABLE when the address cannot be bound,
  // INVALID_ARGUMENT when it has no port.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Create(
      const std::string& listen,
      std::vector<std::shared_ptr<prometheus::Collectable>> collectables);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // The bound port (the chosen one for port 0).
  int port() const { return port_; }
  // "HOST:PORT" with the bound port.
  std::string address() const { return address_; }

 private:
  MetricsEndpoint() = default;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  std::string address_;
};

}  // namespace sweepd

#endif  // SWEEPD_COMMON_METRICS_ENDPOINT_H_
