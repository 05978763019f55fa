#include "coordinator/server_security.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "coordinator/service.h"

namespace sweepd {

absl::Status CheckListenerSecurity(const std::string& listen,
                                   const SecurityOptions& security,
                                   const std::string& model_root,
                                   const std::string& data_root) {
  const bool tls = security.tls.enabled();
  if (!security.token_file.empty() && !tls) {
    return absl::InvalidArgumentError(
        "--token-file needs TLS (--tls-cert and --tls-key): bearer tokens are "
        "never accepted over plaintext");
  }
  if (IsLoopbackAddress(listen)) return absl::OkStatus();
  if (model_root.empty() || data_root.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen ", listen,
        " is not a loopback address: --model-root and --data-root are "
        "required there (sweeps may read only under them)"));
  }
  if (security.allow_insecure_remote) return absl::OkStatus();
  if (!tls) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen ", listen,
        " is not a loopback address; serve TLS there (--tls-cert and "
        "--tls-key), or allow plaintext with --allow-insecure-remote"));
  }
  if (security.token_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen ", listen,
        " is not a loopback address; give --token-file (who may call what), "
        "or let anyone who reaches the port do anything with "
        "--allow-insecure-remote"));
  }
  return absl::OkStatus();
}

absl::Status CheckHttpListenerSecurity(const std::string& http_listen,
                                       const std::string& metrics_listen,
                                       const SecurityOptions& security) {
  if (security.allow_insecure_remote) return absl::OkStatus();
  if (!http_listen.empty() && !IsLoopbackAddress(http_listen)) {
    if (!security.tls.enabled()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--http-listen ", http_listen,
          " is not a loopback address; serve the dashboard there over HTTPS "
          "(--tls-cert and --tls-key) with --token-file, or allow plaintext "
          "with --allow-insecure-remote"));
    }
    if (security.token_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--http-listen ", http_listen,
          " is not a loopback address; give --token-file (the dashboard then "
          "needs a reader token), or let anyone who reaches the port read "
          "everything with --allow-insecure-remote"));
    }
  }
  if (!metrics_listen.empty() && !IsLoopbackAddress(metrics_listen)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics-listen ", metrics_listen,
        " is not a loopback address; it serves plaintext HTTP without tokens "
        "(scrape the dashboard's /metrics over HTTPS with a reader token "
        "instead), or allow it with --allow-insecure-remote"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerSecurity> MakeServerSecurity(
    const SecurityOptions& security, Clock* clock) {
  ServerSecurity out;
  ASSIGN_OR_RETURN(out.credentials, MakeServerCredentials(security.tls));
  if (!security.token_file.empty()) {
    if (!security.tls.enabled()) {
      return absl::InvalidArgumentError(
          "--token-file needs TLS (--tls-cert and --tls-key)");
    }
    TokenStoreOptions token_options;
    token_options.clock = clock;
    token_options.reload_interval_ms = security.token_reload_interval_ms;
    ASSIGN_OR_RETURN(std::unique_ptr<TokenStore> tokens,
                     TokenStore::Open(security.token_file, token_options));
    out.authorizer = std::make_unique<Authorizer>(std::move(tokens));
  }
  return out;
}

}  // namespace sweepd
