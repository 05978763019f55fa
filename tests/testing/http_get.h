// HttpGet: a blocking HTTP/1.0 GET against a loopback server, for tests of the
// /metrics endpoints and the dashboard. Uses civetweb's client (Debian
// libcivetweb-dev), no HTTP by hand. Thread-safe (no shared state).
#ifndef SWEEPD_TESTS_TESTING_HTTP_GET_H_
#define SWEEPD_TESTS_TESTING_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace sweepd::testing {

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// GET http://host:port/path. UNAVAILABLE when the connection fails.
absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                     const std::string& path);

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_TESTING_HTTP_GET_H_
