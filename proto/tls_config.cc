#include "proto/tls_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace sweepd {
namespace {

// The file's bytes; INVALID_ARGUMENT naming `flag` when unreadable.
absl::StatusOr<std::string> ReadFlagFile(const std::string& flag,
                                         const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot open the file"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Checks that `path` (given by `flag`) holds at least one PEM block.
absl::Status CheckPemFile(const std::string& flag, const std::string& path) {
  absl::StatusOr<std::string> text = ReadFlagFile(flag, path);
  if (!text.ok()) return text.status();
  if (!absl::StrContains(*text, "-----BEGIN ")) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": not a PEM file (no -----BEGIN line)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options) {
  if (!options.enabled()) {
    if (!options.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca needs --tls-cert and --tls-key (TLS is off)");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key must be given together");
  }
  if (options.require_client_cert && options.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-require-client-cert needs --tls-client-ca (the CA that signs "
        "client certificates)");
  }
  if (absl::Status s = CheckPemFile("--tls-cert", options.cert_file); !s.ok())
    return s;
  if (absl::Status s = CheckPemFile("--tls-key", options.key_file); !s.ok())
    return s;
  if (!options.client_ca_file.empty()) {
    if (absl::Status s =
            CheckPemFile("--tls-client-ca", options.client_ca_file);
        !s.ok()) {
      return s;
    }
  }
  const unsigned refresh = std::max(1u, options.refresh_interval_s);
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          options.key_file, options.cert_file, options.client_ca_file, refresh);
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_identity_key_cert_pairs();
  if (options.client_ca_file.empty()) {
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls.watch_root_certs();
    tls.set_cert_request_type(
        options.require_client_cert
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(tls);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ClientTlsOptions& options) {
  if (!options.enabled()) {
    if (!options.token.empty()) {
      return absl::FailedPreconditionError(
          "refusing to send a bearer token over plaintext: give --tls-ca (the "
          "CA of sweepd's certificate) to connect with TLS");
    }
    if (!options.key_file.empty()) {
      return absl::InvalidArgumentError("--tls-key needs --tls-cert");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key must be given together");
  }
  if (!options.ca_file.empty()) {
    if (absl::Status s = CheckPemFile("--tls-ca", options.ca_file); !s.ok())
      return s;
  }
  if (!options.cert_file.empty()) {
    if (absl::Status s = CheckPemFile("--tls-cert", options.cert_file); !s.ok())
      return s;
    if (absl::Status s = CheckPemFile("--tls-key", options.key_file); !s.ok())
      return s;
  }
  const unsigned refresh = std::max(1u, options.refresh_interval_s);
  grpc::experimental::TlsChannelCredentialsOptions tls;
  if (!options.ca_file.empty() || !options.cert_file.empty()) {
    auto provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            options.key_file, options.cert_file, options.ca_file, refresh);
    tls.set_certificate_provider(provider);
  }
  // Without --tls-ca the system's default roots are used.
  if (!options.ca_file.empty()) tls.watch_root_certs();
  if (!options.cert_file.empty()) tls.watch_identity_key_cert_pairs();
  tls.set_verify_server_certs(true);
  tls.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  std::shared_ptr<grpc::ChannelCredentials> creds =
      grpc::experimental::TlsCredentials(tls);
  if (creds == nullptr) {
    return absl::InvalidArgumentError("gRPC refused the TLS options");
  }
  if (!options.token.empty()) {
    // AccessTokenCredentials carry the minimum security level
    // PRIVACY_AND_INTEGRITY: gRPC itself refuses to attach them to a channel
    // that is not encrypted.
    creds = grpc::CompositeChannelCredentials(
        creds, grpc::AccessTokenCredentials(options.token));
  }
  return creds;
}

absl::StatusOr<std::string> ReadClientToken(const std::string& token_file,
                                            const std::string& env_value) {
  if (token_file.empty()) {
    return std::string(absl::StripAsciiWhitespace(env_value));
  }
  absl::StatusOr<std::string> text = ReadFlagFile("--token-file", token_file);
  if (!text.ok()) return text.status();
  absl::string_view first = *text;
  first = first.substr(0, first.find('\n'));
  first = absl::StripAsciiWhitespace(first);
  if (first.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file ", token_file, ": the first line is empty"));
  }
  return std::string(first);
}

}  // namespace sweepd
