#include "tests/testing/test_certs.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/strings/str_join.h"

namespace sweepd::testing {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "test_certs: %s failed\n", what);
    std::abort();
  }
}

struct Deleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter>;
using CertPtr = std::unique_ptr<X509, Deleter>;

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, n);
}

std::string KeyPem(EVP_PKEY* key) {
  std::unique_ptr<BIO, Deleter> bio(BIO_new(BIO_s_mem()));
  Check(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                                 nullptr) == 1,
        "PEM_write_bio_PrivateKey");
  return BioText(bio.get());
}

std::string CertPem(X509* cert) {
  std::unique_ptr<BIO, Deleter> bio(BIO_new(BIO_s_mem()));
  Check(PEM_write_bio_X509(bio.get(), cert) == 1, "PEM_write_bio_X509");
  return BioText(bio.get());
}

KeyPtr ReadKey(const std::string& pem) {
  std::unique_ptr<BIO, Deleter> bio(BIO_new_mem_buf(pem.data(), pem.size()));
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  Check(key != nullptr, "PEM_read_bio_PrivateKey");
  return key;
}

CertPtr ReadCert(const std::string& pem) {
  std::unique_ptr<BIO, Deleter> bio(BIO_new_mem_buf(pem.data(), pem.size()));
  CertPtr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  Check(cert != nullptr, "PEM_read_bio_X509");
  return cert;
}

void AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  Check(ext != nullptr, "X509V3_EXT_conf_nid");
  Check(X509_add_ext(cert, ext, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(ext);
}

// Makes a certificate for `spec` with a fresh key, signed by `issuer_key`
// (self-signed when `issuer` is null).
PemPair Make(const CertSpec& spec, bool is_ca, X509* issuer,
             EVP_PKEY* issuer_key) {
  static std::atomic<long> serial{1000};
  KeyPtr key(EVP_EC_gen("P-256"));
  Check(key != nullptr, "EVP_EC_gen");
  CertPtr cert(X509_new());
  Check(X509_set_version(cert.get(), 2) == 1, "X509_set_version");
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial.fetch_add(1));
  Check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), spec.not_before_s) !=
            nullptr,
        "notBefore");
  Check(X509_gmtime_adj(X509_getm_notAfter(cert.get()), spec.not_after_s) !=
            nullptr,
        "notAfter");
  Check(X509_set_pubkey(cert.get(), key.get()) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1, -1,
      0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  Check(X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) == 1,
        "X509_set_issuer_name");
  if (is_ca) {
    AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(cert.get(), signer, NID_key_usage,
                 "critical,keyCertSign,cRLSign");
    AddExtension(cert.get(), signer, NID_subject_key_identifier, "hash");
  } else {
    AddExtension(cert.get(), signer, NID_basic_constraints, "CA:FALSE");
    AddExtension(cert.get(), signer, NID_key_usage,
                 "critical,digitalSignature,keyAgreement");
    AddExtension(cert.get(), signer, NID_ext_key_usage,
                 "serverAuth,clientAuth");
    AddExtension(cert.get(), signer, NID_authority_key_identifier, "keyid");
    if (!spec.subject_alt_names.empty()) {
      AddExtension(cert.get(), signer, NID_subject_alt_name,
                   absl::StrJoin(spec.subject_alt_names, ","));
    }
  }
  EVP_PKEY* sign_key = issuer_key != nullptr ? issuer_key : key.get();
  Check(X509_sign(cert.get(), sign_key, EVP_sha256()) > 0, "X509_sign");
  return PemPair{CertPem(cert.get()), KeyPem(key.get())};
}

}  // namespace

TestCa::TestCa(const std::string& common_name) {
  CertSpec spec;
  spec.common_name = common_name;
  ca_ = Make(spec, /*is_ca=*/true, nullptr, nullptr);
}

PemPair TestCa::Issue(const CertSpec& spec) const {
  CertPtr ca_cert = ReadCert(ca_.cert);
  KeyPtr ca_key = ReadKey(ca_.key);
  return Make(spec, /*is_ca=*/false, ca_cert.get(), ca_key.get());
}

PemPair TestCa::IssueServer(const std::string& common_name) const {
  CertSpec spec;
  spec.common_name = common_name;
  spec.subject_alt_names = {"DNS:localhost", "IP:127.0.0.1"};
  return Issue(spec);
}

PemPair TestCa::IssueClient(const std::string& common_name) const {
  CertSpec spec;
  spec.common_name = common_name;
  spec.subject_alt_names = {"DNS:" + common_name};
  return Issue(spec);
}

}  // namespace sweepd::testing
