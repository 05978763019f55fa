// TlsCertificateFiles. See tls_certificate_files.h.
#include "dashboard/tls_certificate_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace sweepd {

struct TlsCertificateFiles::Pair {
  X509* cert = nullptr;
  STACK_OF(X509) * chain = nullptr;  // the intermediates after the leaf
  EVP_PKEY* key = nullptr;
  ~Pair() {
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
  }
};

namespace {

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

struct BioCloser {
  void operator()(BIO* b) const { BIO_free(b); }
};

}  // namespace

bool TlsCertificateFiles::FileIds::operator==(const FileIds& o) const {
  return cert_size == o.cert_size && key_size == o.key_size &&
         cert_mtime_ns == o.cert_mtime_ns && key_mtime_ns == o.key_mtime_ns &&
         cert_inode == o.cert_inode && key_inode == o.key_inode;
}

TlsCertificateFiles::TlsCertificateFiles(
    const TlsCertificateFilesOptions& options)
    : options_(options) {}

TlsCertificateFiles::~TlsCertificateFiles() = default;

absl::StatusOr<TlsCertificateFiles::FileIds> TlsCertificateFiles::Stat(
    const std::string& cert_file, const std::string& key_file) {
  FileIds ids;
  struct stat st;
  if (::stat(cert_file.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-cert ", cert_file, ": cannot stat: ", std::strerror(errno)));
  }
  ids.cert_size = st.st_size;
  ids.cert_mtime_ns =
      int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  ids.cert_inode = st.st_ino;
  if (::stat(key_file.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key ", key_file, ": cannot stat: ", std::strerror(errno)));
  }
  ids.key_size = st.st_size;
  ids.key_mtime_ns =
      int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  ids.key_inode = st.st_ino;
  return ids;
}

absl::StatusOr<std::shared_ptr<const TlsCertificateFiles::Pair>>
TlsCertificateFiles::Read(const std::string& cert_file,
                          const std::string& key_file) {
  auto pair = std::make_shared<Pair>();
  std::unique_ptr<BIO, BioCloser> cert_bio(
      BIO_new_file(cert_file.c_str(), "r"));
  if (cert_bio == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-cert ", cert_file, ": cannot read: ", OpenSslError()));
  }
  pair->cert = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr);
  if (pair->cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-cert ", cert_file, ": no PEM certificate: ", OpenSslError()));
  }
  pair->chain = sk_X509_new_null();
  while (X509* extra =
             PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)) {
    sk_X509_push(pair->chain, extra);
  }
  ERR_clear_error();  // the end of the file reads as an error
  std::unique_ptr<BIO, BioCloser> key_bio(BIO_new_file(key_file.c_str(), "r"));
  if (key_bio == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key ", key_file, ": cannot read: ", OpenSslError()));
  }
  pair->key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  if (pair->key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key ", key_file, ": no PEM private key: ", OpenSslError()));
  }
  if (X509_check_private_key(pair->cert, pair->key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", key_file, " is not the key of --tls-cert ",
                     cert_file, "'s certificate"));
  }
  return std::shared_ptr<const Pair>(std::move(pair));
}

absl::StatusOr<std::unique_ptr<TlsCertificateFiles>> TlsCertificateFiles::Load(
    const TlsCertificateFilesOptions& options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "HTTPS needs both --tls-cert and --tls-key");
  }
  auto files =
      std::unique_ptr<TlsCertificateFiles>(new TlsCertificateFiles(options));
  absl::StatusOr<FileIds> ids = Stat(options.cert_file, options.key_file);
  if (!ids.ok()) return ids.status();
  absl::StatusOr<std::shared_ptr<const Pair>> pair =
      Read(options.cert_file, options.key_file);
  if (!pair.ok()) return pair.status();
  absl::MutexLock lock(&files->mu_);
  files->pair_ = *std::move(pair);
  files->ids_ = *ids;
  files->next_check_ms_ = options.clock->NowMs() + options.refresh_interval_ms;
  return files;
}

std::shared_ptr<const TlsCertificateFiles::Pair>
TlsCertificateFiles::Current() {
  absl::MutexLock lock(&mu_);
  const int64_t now = options_.clock->NowMs();
  if (now < next_check_ms_) return pair_;
  next_check_ms_ = now + options_.refresh_interval_ms;
  absl::StatusOr<FileIds> ids = Stat(options_.cert_file, options_.key_file);
  if (!ids.ok() || *ids == ids_) return pair_;
  absl::StatusOr<std::shared_ptr<const Pair>> pair =
      Read(options_.cert_file, options_.key_file);
  if (!pair.ok()) {
    // Half-way through a rotation, or a bad file: keep serving the old pair
    // and look again next interval.
    SWEEPD_LOG(WARNING) << "dashboard HTTPS: keeping the previous certificate: "
                        << pair.status().message();
    return pair_;
  }
  pair_ = *std::move(pair);
  ids_ = *ids;
  ++reloads_;
  SWEEPD_LOG(INFO) << "dashboard HTTPS: certificate re-read from "
                   << options_.cert_file;
  return pair_;
}

int TlsCertificateFiles::CertCallback(ssl_st* ssl, void* self) {
  std::shared_ptr<const Pair> pair =
      static_cast<TlsCertificateFiles*>(self)->Current();
  // override=1: replace whatever the SSL object inherited from its context.
  return SSL_use_cert_and_key(ssl, pair->cert, pair->key, pair->chain, 1) == 1
             ? 1
             : 0;
}

absl::Status TlsCertificateFiles::Install(void* ssl_ctx) {
  SSL_CTX* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  if (ctx == nullptr) return absl::InvalidArgumentError("no SSL_CTX");
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot require TLS 1.2: ", OpenSslError()));
  }
  // The context also holds the first pair, so a handshake that never reaches
  // the callback still has a certificate.
  std::shared_ptr<const Pair> pair = Current();
  if (SSL_CTX_use_cert_and_key(ctx, pair->cert, pair->key, pair->chain, 1) !=
      1) {
    return absl::InternalError(
        absl::StrCat("cannot use the certificate: ", OpenSslError()));
  }
  SSL_CTX_set_cert_cb(ctx, &TlsCertificateFiles::CertCallback, this);
  return absl::OkStatus();
}

int64_t TlsCertificateFiles::reloads() const {
  absl::MutexLock lock(&mu_);
  return reloads_;
}

}  // namespace sweepd
