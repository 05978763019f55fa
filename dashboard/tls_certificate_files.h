// TlsCertificateFiles: the HTTPS certificate of sweepd's dashboard listener,
// read from the same PEM files as the gRPC listener's (--tls-cert, --tls-key)
// and re-read when they change, the way gRPC's file watcher does for the gRPC
// port: new handshakes use what was read last, established connections keep
// theirs. A certificate whose key does not match (a rotation caught half-way)
// is refused and the previous pair kept until both files match again.
//
// Install() makes an OpenSSL SSL_CTX (cpp-httplib's SSLServer's, given to its
// set-up callback) ask this object for the pair on every handshake.
//
// Ownership: owns the parsed certificate chain and key; must outlive every
// SSL_CTX it is installed in. Thread-safety: thread-safe (handshakes run on
// the HTTP server's threads). The Clock is borrowed.
#ifndef SWEEPD_DASHBOARD_TLS_CERTIFICATE_FILES_H_
#define SWEEPD_DASHBOARD_TLS_CERTIFICATE_FILES_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"

struct ssl_st;  // OpenSSL's SSL

namespace sweepd {

struct TlsCertificateFilesOptions {
  // PEM certificate chain (leaf first) and its private key. Required.
  std::string cert_file;
  std::string key_file;
  // Least time between two looks at the files (sweepd --tls-refresh-s).
  int64_t refresh_interval_ms = 60'000;
  Clock* clock = Clock::Real();
};

class TlsCertificateFiles {
 public:
  // Reads both files. INVALID_ARGUMENT naming the file (and the flag) when one
  // cannot be read or parsed, or when the key is not the certificate's.
  static absl::StatusOr<std::unique_ptr<TlsCertificateFiles>> Load(
      const TlsCertificateFilesOptions& options);
  ~TlsCertificateFiles();
  TlsCertificateFiles(const TlsCertificateFiles&) = delete;
  TlsCertificateFiles& operator=(const TlsCertificateFiles&) = delete;

  // `ssl_ctx` is an OpenSSL SSL_CTX*: sets TLS 1.2 as the least version and
  // a certificate callback that serves the current pair.
  absl::Status Install(void* ssl_ctx);

  // Pairs read after Load (tests, logs).
  int64_t reloads() const;

 private:
  struct Pair;
  struct FileIds {
    off_t cert_size = 0, key_size = 0;
    int64_t cert_mtime_ns = 0, key_mtime_ns = 0;
    ino_t cert_inode = 0, key_inode = 0;
    bool operator==(const FileIds& o) const;
  };
  explicit TlsCertificateFiles(const TlsCertificateFilesOptions& options);
  static absl::StatusOr<std::shared_ptr<const Pair>> Read(
      const std::string& cert_file, const std::string& key_file);
  static absl::StatusOr<FileIds> Stat(const std::string& cert_file,
                                      const std::string& key_file);
  // The pair to serve now, re-read first when due and the files changed.
  std::shared_ptr<const Pair> Current();
  // OpenSSL's SSL_CTX_set_cert_cb callback; `self` is this object.
  static int CertCallback(ssl_st* ssl, void* self);

  const TlsCertificateFilesOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Pair> pair_ ABSL_GUARDED_BY(mu_);
  FileIds ids_ ABSL_GUARDED_BY(mu_);
  int64_t next_check_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sweepd

#endif  // SWEEPD_DASHBOARD_TLS_CERTIFICATE_FILES_H_
