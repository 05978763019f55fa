// Test certificates made at test time with OpenSSL's C API: a CA, server and
// client certificates it signs, with chosen validity windows (an expired one
// has a notAfter in the past, which `openssl x509 -days` cannot express).
// Keys are ECDSA P-256. Test-only. TestCa is a value type; thread-compatible.
#ifndef SWEEPD_TESTS_TESTING_TEST_CERTS_H_
#define SWEEPD_TESTS_TESTING_TEST_CERTS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace sweepd::testing {

struct PemPair {
  std::string cert;  // PEM certificate
  std::string key;   // PEM private key (PKCS#8)
};

struct CertSpec {
  std::string common_name;
  // "DNS:localhost", "IP:127.0.0.1", ... (subjectAltName entries).
  std::vector<std::string> subject_alt_names;
  // Validity relative to now, seconds (negative = in the past).
  int64_t not_before_s = -3600;
  int64_t not_after_s = 30 * 24 * 3600;
};

class TestCa {
 public:
  // A self-signed CA named `common_name`, valid from an hour ago for 30 days.
  explicit TestCa(const std::string& common_name);

  // A leaf certificate for `spec`, signed by this CA.
  PemPair Issue(const CertSpec& spec) const;
  // A server certificate for 127.0.0.1 / localhost.
  PemPair IssueServer(const std::string& common_name = "sweepd-test") const;
  // A client certificate whose CN is `common_name`.
  PemPair IssueClient(const std::string& common_name) const;

  const PemPair& ca() const { return ca_; }

 private:
  PemPair ca_;
};

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_TESTING_TEST_CERTS_H_
