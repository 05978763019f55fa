// HttpGet. See http_get.h.
#include "tests/testing/http_get.h"

#include <mutex>

#include "absl/strings/str_cat.h"
#include "civetweb.h"

namespace sweepd::testing {

absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                     const std::string& path) {
  static std::once_flag init;
  std::call_once(init, [] { mg_init_library(0); });
  char error[256] = {0};
  mg_connection* conn = mg_download(host.c_str(), port, 0, error, sizeof(error),
                                    "GET %s HTTP/1.0\r\nHost: %s:%d\r\n\r\n",
                                    path.c_str(), host.c_str(), port);
  if (conn == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("GET http://", host, ":", port, path, ": ", error));
  }
  HttpResponse response;
  const mg_response_info* info = mg_get_response_info(conn);
  if (info != nullptr) {
    response.status = info->status_code;
    for (int i = 0; i < info->num_headers; ++i) {
      if (strcasecmp(info->http_headers[i].name, "Content-Type") == 0) {
        response.content_type = info->http_headers[i].value;
      }
    }
  }
  char buf[8192];
  int n;
  while ((n = mg_read(conn, buf, sizeof(buf))) > 0)
    response.body.append(buf, n);
  mg_close_connection(conn);
  return response;
}

}  // namespace sweepd::testing
