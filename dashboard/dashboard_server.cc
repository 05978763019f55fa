// DashboardServer. See dashboard_server.h.
#include "dashboard/dashboard_server.h"

#include <sys/socket.h>

#include <chrono>
#include <exception>
#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

// Threads that answer requests.
constexpr int kThreads = 4;

// The page and its script assets: the same bytes for everyone, no data.
bool IsPublic(const std::string& path) {
  return path == "/" || absl::StartsWith(path, "/assets/");
}

void Fill(const HttpReply& reply, httplib::Response* res) {
  res->status = reply.status;
  res->set_header("Cache-Control", "no-store");
  res->set_header("X-Content-Type-Options", "nosniff");
  res->set_content(reply.body, reply.content_type.c_str());
}

// SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let
// a second sweepd bind the same port (docs/DURABILITY.md, one sweepd per port).
void OnlyReuseAddress(socket_t sock) {
  int yes = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
}

}  // namespace

void DashboardServer::Get(const std::string& path,
                          const std::string& authorization,
                          bool has_authorization, const std::string& peer,
                          const std::multimap<std::string, std::string>& params,
                          HttpReply* reply, std::string* www_authenticate) {
  if (authorizer_ != nullptr && !IsPublic(path)) {
    absl::StatusOr<Caller> caller = authorizer_->CheckHttpRead(
        path, has_authorization ? authorization.c_str() : nullptr, peer);
    if (!caller.ok()) {
      const bool unauthenticated =
          caller.status().code() == absl::StatusCode::kUnauthenticated;
      *reply = HttpReply{
          unauthenticated ? 401 : 403, "application/json",
          nlohmann::json{{"error", caller.status().message()}}.dump(
              -1, ' ', false, nlohmann::json::error_handler_t::replace)};
      if (unauthenticated) *www_authenticate = "Bearer realm=\"sweepd\"";
      return;
    }
  }
  std::map<std::string, std::string> query;
  for (const auto& [key, value] : params) query[key] = value;
  try {
    *reply = api_->Handle(path, query);
  } catch (const std::exception& e) {
    // nlohmann::json or protobuf throwing must not take the server down.
    *reply = HttpReply{500, "text/plain", e.what()};
  }
}

absl::StatusOr<std::unique_ptr<DashboardServer>> DashboardServer::Create(
    const DashboardServerOptions& options, const DashboardApiOptions& api) {
  if (api.scheduler == nullptr || api.ledger == nullptr) {
    return absl::InvalidArgumentError(
        "DashboardApiOptions needs the scheduler and the ledger");
  }
  const std::string& listen = options.listen;
  const size_t colon = listen.rfind(':');
  int requested_port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &requested_port) ||
      requested_port < 0 || requested_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-listen '", listen, "' is not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  auto server = std::unique_ptr<DashboardServer>(new DashboardServer());
  server->authorizer_ = options.authorizer;
  const bool https =
      !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (https) {
    TlsCertificateFilesOptions tls;
    tls.cert_file = options.tls_cert_file;
    tls.key_file = options.tls_key_file;
    tls.refresh_interval_ms = options.tls_refresh_interval_ms;
    tls.clock = options.clock;
    absl::StatusOr<std::unique_ptr<TlsCertificateFiles>> files =
        TlsCertificateFiles::Load(tls);
    if (!files.ok()) return files.status();
    server->tls_ = *std::move(files);
    absl::Status installed = absl::OkStatus();
    TlsCertificateFiles* const files_ptr = server->tls_.get();
    auto ssl = std::make_unique<httplib::SSLServer>(
        [files_ptr, &installed](SSL_CTX& ctx) {
          installed = files_ptr->Install(&ctx);
          return installed.ok();
        });
    if (!installed.ok() || !ssl->is_valid()) {
      return absl::UnavailableError(
          absl::StrCat("cannot serve the dashboard on ", listen,
                       " over HTTPS: ", installed.message()));
    }
    server->server_ = std::move(ssl);
  } else {
    server->server_ = std::make_unique<httplib::Server>();
  }
  server->api_ = std::make_unique<DashboardApi>(api);

  httplib::Server& http = *server->server_;
  http.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  http.set_socket_options(&OnlyReuseAddress);
  http.set_read_timeout(30, 0);
  DashboardServer* const self = server.get();
  // Every GET goes to the API (after the token check); other methods get 405
  // (the dashboard is read-only).
  http.Get(".*", [self](const httplib::Request& req, httplib::Response& res) {
    HttpReply reply;
    std::string www_authenticate;
    self->Get(req.path, req.get_header_value("Authorization"),
              req.has_header("Authorization"),
              absl::StrCat(req.remote_addr, ":", req.remote_port), req.params,
              &reply, &www_authenticate);
    Fill(reply, &res);
    if (!www_authenticate.empty()) {
      res.set_header("WWW-Authenticate", www_authenticate);
    }
  });
  auto refuse = [](const httplib::Request&, httplib::Response& res) {
    Fill(HttpReply{405, "text/plain", "the dashboard is read-only"}, &res);
  };
  http.Post(".*", refuse);
  http.Put(".*", refuse);
  http.Patch(".*", refuse);
  http.Delete(".*", refuse);

  int port = requested_port;
  if (requested_port == 0) {
    port = http.bind_to_any_port(host);
  } else if (!http.bind_to_port(host, requested_port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve the dashboard on ", listen,
        ": cannot bind (address in use, or not an address of this host)"));
  }
  server->port_ = port;
  server->address_ = absl::StrCat(listen.substr(0, colon), ":", port);
  server->thread_ = std::thread([self] { self->server_->listen_after_bind(); });
  // httplib's stop() does nothing until the server runs: wait for it, so the
  // destructor always stops it.
  for (int waited_ms = 0; !http.is_running(); ++waited_ms) {
    if (waited_ms == 10'000) {
      return absl::InternalError(absl::StrCat(
          "the dashboard on ", listen, " did not start serving in 10 s"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return server;
}

std::string DashboardServer::url() const {
  return absl::StrCat(https() ? "https://" : "http://", address_, "/");
}

DashboardServer::~DashboardServer() {
  // Stop serving (joins the request threads) before the API goes away.
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace sweepd
