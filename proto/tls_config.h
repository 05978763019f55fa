// TLS and token credentials: the one place sweepd, sweep-worker and sweepctl
// turn their --tls-* flags and bearer token into gRPC credentials.
//
// Server: TLS through gRPC's TlsServerCredentials with a
// FileWatcherCertificateProvider, so a certificate and key replaced on disk
// are served to new connections without a restart (established connections
// keep theirs). The provider re-reads the files every refresh_interval_s; swap
// key and certificate together (a directory symlink switched with `mv -T`,
// docs/SECURITY.md), or a reload may pair a new key with an old certificate
// and be refused until both match. With a client CA, clients' certificates are
// verified against it (requested, or required with require_client_cert).
//
// Client: TLS through TlsCredentials with the same provider (the CA bundle and
// an optional client certificate and key, reloaded the same way), the server's
// certificate verified against the CA and the target host name. A bearer
// token rides as call credentials ("authorization: Bearer ...") and only on a
// TLS channel: a token without TLS is refused, never sent in plaintext.
//
// Stateless free functions; thread-safe. They check that the files exist and
// hold PEM data before building credentials, so a typo is an error at start-up
// rather than a silent handshake failure later.
#ifndef SWEEPD_PROTO_TLS_CONFIG_H_
#define SWEEPD_PROTO_TLS_CONFIG_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace sweepd {

struct ServerTlsOptions {
  // PEM certificate chain and private key of the server; both or neither.
  std::string cert_file;
  std::string key_file;
  // PEM CA bundle that client certificates must chain to; empty = client
  // certificates are not requested.
  std::string client_ca_file;
  // With client_ca_file: refuse clients without a valid certificate (mutual
  // TLS). Without it, a presented certificate is still verified.
  bool require_client_cert = false;
  // Seconds between re-reads of the files (gRPC's minimum is 1).
  unsigned refresh_interval_s = 60;

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

struct ClientTlsOptions {
  // PEM CA bundle the server's certificate must chain to. Setting it (or a
  // client certificate) turns TLS on.
  std::string ca_file;
  // Optional client certificate chain and key (mutual TLS); both or neither.
  std::string cert_file;
  std::string key_file;
  // Bearer token sent with every call; empty = none. Needs TLS.
  std::string token;
  unsigned refresh_interval_s = 60;

  bool enabled() const { return !ca_file.empty() || !cert_file.empty(); }
};

// Insecure credentials when !options.enabled(); else TLS as described above.
// INVALID_ARGUMENT naming the flag (--tls-cert, --tls-key, --tls-client-ca)
// when a file is missing, unreadable or holds no PEM block, or only one of
// cert and key is given.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);

// Insecure credentials when !options.enabled() and no token; TLS (plus the
// token as call credentials) otherwise. FAILED_PRECONDITION "refusing to send
// a bearer token over plaintext ..." for a token without TLS;
// INVALID_ARGUMENT naming the flag (--tls-ca, --tls-cert, --tls-key) for bad
// files.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ClientTlsOptions& options);

// The token a client sends: the first line of `token_file` (trailing
// whitespace removed) when given, else `env_value` (e.g. $SWEEPD_TOKEN).
// INVALID_ARGUMENT "--token-file <path>: ..." when the file cannot be read or
// is empty. The token itself never appears in a message.
absl::StatusOr<std::string> ReadClientToken(const std::string& token_file,
                                            const std::string& env_value);

}  // namespace sweepd

#endif  // SWEEPD_PROTO_TLS_CONFIG_H_
