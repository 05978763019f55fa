// DashboardServer: sweepd's read-only web dashboard (`sweepd --http-listen
// HOST:PORT`), DashboardApi (dashboard_api.h) served over HTTP by civetweb
// (Debian libcivetweb-dev; the same civetweb prometheus-cpp's exposer runs on).
// Also serves /metrics when the API has metrics.
//
// Ownership: owns the API and the HTTP server with its threads; borrows what
// DashboardApiOptions borrows. Destroy it before the Coordinator's Shutdown
// (it reads the scheduler and ledger). Thread-safety: the accessors are
// thread-safe; requests run on civetweb's threads.
#ifndef SWEEPD_DASHBOARD_DASHBOARD_SERVER_H_
#define SWEEPD_DASHBOARD_DASHBOARD_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "dashboard/dashboard_api.h"

class CivetServer;

namespace sweepd {

class DashboardServer {
 public:
  // Serves on `listen` (HOST:PORT; port 0 picks one). UNAVAILABLE when it
  // cannot bind; INVALID_ARGUMENT for a bad address or missing scheduler or
  // ledger.
  static absl::StatusOr<std::unique_ptr<DashboardServer>> Create(
      const std::string& listen, const DashboardApiOptions& options);
  ~DashboardServer();
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;

  int port() const { return port_; }
  std::string address() const { return address_; }

 private:
  class Handler;
  DashboardServer() = default;
  std::unique_ptr<DashboardApi> api_;
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<CivetServer> server_;
  int port_ = 0;
  std::string address_;
};

}  // namespace sweepd

#endif  // SWEEPD_DASHBOARD_DASHBOARD_SERVER_H_
