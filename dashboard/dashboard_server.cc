// DashboardServer. See dashboard_server.h.
#include "dashboard/dashboard_server.h"

#include <exception>
#include <map>
#include <vector>

#include "CivetServer.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sweepd {

// Every GET goes to the API; other methods get 405 (the dashboard is
// read-only).
class DashboardServer::Handler : public CivetHandler {
 public:
  explicit Handler(DashboardApi* api) : api_(api) {}

  bool handleGet(CivetServer* server, mg_connection* conn) override {
    const mg_request_info* info = mg_get_request_info(conn);
    std::map<std::string, std::string> query;
    if (info->query_string != nullptr) {
      for (absl::string_view pair :
           absl::StrSplit(info->query_string, '&', absl::SkipEmpty())) {
        std::vector<std::string> kv =
            absl::StrSplit(pair, absl::MaxSplits('=', 1));
        std::string key, value;
        CivetServer::urlDecode(kv[0], key);
        if (kv.size() > 1) CivetServer::urlDecode(kv[1], value);
        query[key] = value;
      }
    }
    const std::string path = info->local_uri != nullptr ? info->local_uri : "/";
    HttpReply reply;
    try {
      reply = api_->Handle(path, query);
    } catch (const std::exception& e) {
      // nlohmann::json or protobuf throwing must not take the server down.
      reply = HttpReply{500, "text/plain", e.what()};
    }
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
              "Connection: close\r\n\r\n",
              reply.status, mg_get_response_code_text(conn, reply.status),
              reply.content_type.c_str(), reply.body.size());
    mg_write(conn, reply.body.data(), reply.body.size());
    return true;
  }
  bool handlePost(CivetServer*, mg_connection* conn) override {
    return Refuse(conn);
  }
  bool handlePut(CivetServer*, mg_connection* conn) override {
    return Refuse(conn);
  }
  bool handleDelete(CivetServer*, mg_connection* conn) override {
    return Refuse(conn);
  }

 private:
  static bool Refuse(mg_connection* conn) {
    mg_send_http_error(conn, 405, "%s", "the dashboard is read-only");
    return true;
  }
  DashboardApi* const api_;
};

absl::StatusOr<std::unique_ptr<DashboardServer>> DashboardServer::Create(
    const std::string& listen, const DashboardApiOptions& options) {
  if (options.scheduler == nullptr || options.ledger == nullptr) {
    return absl::InvalidArgumentError(
        "DashboardApiOptions needs the scheduler and the ledger");
  }
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-listen '", listen, "' is not HOST:PORT"));
  }
  auto server = std::unique_ptr<DashboardServer>(new DashboardServer());
  server->api_ = std::make_unique<DashboardApi>(options);
  server->handler_ = std::make_unique<Handler>(server->api_.get());
  const std::vector<std::string> civet_options = {
      "listening_ports",    listen, "num_threads", "4",
      "request_timeout_ms", "30000"};
  try {
    server->server_ = std::make_unique<CivetServer>(civet_options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve the dashboard on ", listen, ": ", e.what()));
  }
  server->server_->addHandler("/", server->handler_.get());
  const std::vector<int> ports = server->server_->getListeningPorts();
  if (ports.empty() || ports[0] <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve the dashboard on ", listen));
  }
  server->port_ = ports[0];
  server->address_ = absl::StrCat(listen.substr(0, colon), ":", ports[0]);
  return server;
}

DashboardServer::~DashboardServer() {
  // Stop serving (joins civetweb's threads) before the API goes away.
  server_.reset();
}

}  // namespace sweepd
