// Server security of sweepd: the start-up rules for what a listener needs, and
// the credentials and Authorizer built from the security flags
// (docs/SECURITY.md).
//
// Rules (CheckListenerSecurity):
//   - a token file needs TLS: tokens are never accepted over plaintext;
//   - beyond loopback, plaintext needs --allow-insecure-remote, and so does
//     serving without a token file (anyone reaching the port could submit,
//     cancel and read everything);
//   - beyond loopback, --model-root and --data-root are required, whatever the
//     other flags;
//   - beyond loopback, the dashboard needs HTTPS and a token file, and the
//     plaintext metrics endpoint needs --allow-insecure-remote
//     (CheckHttpListenerSecurity).
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COORDINATOR_SERVER_SECURITY_H_
#define SWEEPD_COORDINATOR_SERVER_SECURITY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "coordinator/authorizer.h"
#include "grpcpp/security/server_credentials.h"
#include "proto/tls_config.h"

namespace sweepd {

struct SecurityOptions {
  // --tls-cert, --tls-key, --tls-client-ca, --tls-require-client-cert.
  ServerTlsOptions tls;
  // --token-file; empty = authorisation off.
  std::string token_file;
  // How often the token file is looked at for changes (on the Clock).
  int64_t token_reload_interval_ms = 1'000;
  // --allow-insecure-remote.
  bool allow_insecure_remote = false;
};

// INVALID_ARGUMENT naming the flags to add when the rules above are broken.
absl::Status CheckListenerSecurity(const std::string& listen,
                                   const SecurityOptions& security,
                                   const std::string& model_root,
                                   const std::string& data_root);

// The same rules for sweepd's HTTP listeners (docs/SECURITY.md): beyond
// loopback, the dashboard (--http-listen) needs TLS and a token file, and the
// plaintext, token-less Prometheus endpoint (--metrics-listen) is refused;
// --allow-insecure-remote allows both. Empty addresses are not checked.
// INVALID_ARGUMENT naming the flags.
absl::Status CheckHttpListenerSecurity(const std::string& http_listen,
                                       const std::string& metrics_listen,
                                       const SecurityOptions& security);

struct ServerSecurity {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Null when there is no token file.
  std::unique_ptr<Authorizer> authorizer;
};

// The listener's credentials (tls_config.h) and the Authorizer over the token
// file, reloaded on `clock` (borrowed; must outlive the Authorizer). Errors
// name the flag.
absl::StatusOr<ServerSecurity> MakeServerSecurity(
    const SecurityOptions& security, Clock* clock);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_SERVER_SECURITY_H_
