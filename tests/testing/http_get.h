// HttpGet: a blocking HTTP GET against a loopback server, for tests of the
// /metrics endpoints and the dashboard, over plain HTTP or HTTPS (verifying
// the server's certificate and host name against a CA file), with extra
// request headers. Uses cpp-httplib's client (Debian libcpp-httplib-dev), no
// HTTP by hand. Thread-safe (no shared state).
#ifndef SWEEPD_TESTS_TESTING_HTTP_GET_H_
#define SWEEPD_TESTS_TESTING_HTTP_GET_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace sweepd::testing {

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
  // Response headers by lower-case name (the last of repeated ones).
  std::map<std::string, std::string> headers;
};

struct HttpGetOptions {
  // Extra request headers, e.g. {"Authorization", "Bearer TOKEN"}.
  std::vector<std::pair<std::string, std::string>> headers;
  // PEM CA bundle: connect with TLS and verify the server's certificate
  // against it. Empty = plain HTTP.
  std::string tls_ca_file;
};

// GET http://host:port/path. UNAVAILABLE when the connection (or the TLS
// handshake) fails.
absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                     const std::string& path,
                                     const HttpGetOptions& options = {});

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_TESTING_HTTP_GET_H_
