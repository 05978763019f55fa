// HttpGet. See http_get.h.
#include "tests/testing/http_get.h"

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace sweepd::testing {

absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                     const std::string& path,
                                     const HttpGetOptions& options) {
  const bool tls = !options.tls_ca_file.empty();
  const std::string url =
      absl::StrCat(tls ? "https://" : "http://", host, ":", port, path);
  std::unique_ptr<httplib::ClientImpl> client;
  if (tls) {
    auto ssl = std::make_unique<httplib::SSLClient>(host, port);
    ssl->set_ca_cert_path(options.tls_ca_file.c_str());
    ssl->enable_server_certificate_verification(true);
    client = std::move(ssl);
  } else {
    client = std::make_unique<httplib::ClientImpl>(host, port);
  }
  client->set_connection_timeout(10, 0);
  client->set_read_timeout(30, 0);
  httplib::Headers headers;
  for (const auto& [name, value] : options.headers)
    headers.emplace(name, value);
  httplib::Result result = client->Get(path.c_str(), headers);
  if (!result) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, ": ", httplib::to_string(result.error())));
  }
  HttpResponse response;
  response.status = result->status;
  for (const auto& [name, value] : result->headers) {
    response.headers[absl::AsciiStrToLower(name)] = value;
  }
  response.content_type = result->get_header_value("Content-Type");
  response.body = result->body;
  return response;
}

}  // namespace sweepd::testing
