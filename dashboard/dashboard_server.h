// DashboardServer: sweepd's read-only web dashboard (`sweepd --http-listen
// HOST:PORT`), DashboardApi (dashboard_api.h) served over HTTP or HTTPS by
// cpp-httplib (Debian libcpp-httplib-dev, built with OpenSSL; Debian 12's
// civetweb cannot do TLS with OpenSSL 3: it dlopens libssl and looks for
// SSL_get_peer_certificate, which OpenSSL 3 no longer exports). Also serves
// /metrics when the API has metrics. Binding a port in use fails (no
// SO_REUSEPORT).
//
// Authentication (docs/SECURITY.md, "Dashboard"): with an Authorizer (sweepd
// has a token file) every request but the page itself and its script assets
// ("/", "/assets/...": the same bytes for everyone, no data) needs
// `Authorization: Bearer TOKEN` with a role that may read (admin, submitter,
// reader); else 401 (no, malformed, unknown or certificate-bound token, with
// `WWW-Authenticate: Bearer`) or 403 (a worker token), each denial logged with
// the path and the peer, never the token. The page asks for the token and
// sends it as that header from sessionStorage (dashboard_page.h). With TLS
// files the listener serves HTTPS only, from the same certificate files as
// the gRPC listener, re-read when they change (tls_certificate_files.h).
//
// Ownership: owns the API and the HTTP server with its threads; borrows what
// DashboardApiOptions borrows and the Authorizer. Destroy it before the
// Coordinator's Shutdown (it reads the scheduler and ledger). Thread-safety:
// the accessors are thread-safe; requests run on the server's threads.
#ifndef SWEEPD_DASHBOARD_DASHBOARD_SERVER_H_
#define SWEEPD_DASHBOARD_DASHBOARD_SERVER_H_

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "coordinator/authorizer.h"
#include "dashboard/dashboard_api.h"
#include "dashboard/tls_certificate_files.h"

namespace httplib {
class Server;
}

namespace sweepd {

struct DashboardServerOptions {
  // HOST:PORT (sweepd --http-listen); port 0 picks one.
  std::string listen;
  // Borrowed; checks every request but the page and its assets. Null = no
  // authentication (sweepd has no token file).
  Authorizer* authorizer = nullptr;
  // Serve HTTPS with this PEM certificate chain and key (sweepd --tls-cert,
  // --tls-key); both empty = plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Least time between two looks at the TLS files (sweepd --tls-refresh-s).
  int64_t tls_refresh_interval_ms = 60'000;
  // Borrowed; when the TLS files are looked at again.
  Clock* clock = Clock::Real();
};

class DashboardServer {
 public:
  // Serves `api` as `server` says. UNAVAILABLE when it cannot bind or start
  // TLS; INVALID_ARGUMENT for a bad address, a missing scheduler or ledger,
  // or TLS files that do not load (naming the flag).
  static absl::StatusOr<std::unique_ptr<DashboardServer>> Create(
      const DashboardServerOptions& server, const DashboardApiOptions& api);
  ~DashboardServer();
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;

  int port() const { return port_; }
  std::string address() const { return address_; }
  // "https://HOST:PORT/" or "http://HOST:PORT/".
  std::string url() const;
  bool https() const { return tls_ != nullptr; }

 private:
  DashboardServer() = default;
  // Answers one GET (after the token check).
  void Get(const std::string& path, const std::string& authorization,
           bool has_authorization, const std::string& peer,
           const std::multimap<std::string, std::string>& params,
           HttpReply* reply, std::string* www_authenticate);

  std::unique_ptr<TlsCertificateFiles> tls_;
  std::unique_ptr<DashboardApi> api_;
  Authorizer* authorizer_ = nullptr;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::string address_;
};

}  // namespace sweepd

#endif  // SWEEPD_DASHBOARD_DASHBOARD_SERVER_H_
