// The dashboard behind the reader role (docs/SECURITY.md, "Dashboard"): a
// DashboardServer over an in-process Coordinator with TLS and a token file,
// called over HTTPS with the test CA. The auth matrix: every data path
// without a token, with a malformed, unknown, certificate-bound or worker
// token (401/403, and the API never answers), and with each role that may read
// (200); the page and its assets stay open; denials are logged with the path
// and the peer and never the token. Also: plaintext and a foreign CA against
// the HTTPS listener fail, the certificate is re-read when its files change,
// and the listener rules of CheckHttpListenerSecurity.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/hash.h"
#include "coordinator/server_security.h"
#include "dashboard/dashboard_server.h"
#include "dashboard/tls_certificate_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/coordinator_test_util.h"
#include "tests/testing/http_get.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certs.h"
#include "tests/testing/text_files.h"

namespace sweepd {
namespace {

using ::sweepd::testing::HttpGet;
using ::sweepd::testing::HttpGetOptions;
using ::sweepd::testing::HttpResponse;
using ::sweepd::testing::PemPair;
using ::sweepd::testing::ReadText;
using ::sweepd::testing::StatusIs;
using ::sweepd::testing::TempPath;
using ::sweepd::testing::TestCa;
using ::sweepd::testing::WriteText;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAdminToken[] = "dash-admin-1c9e";
constexpr char kSubmitterToken[] = "dash-alice-77d2";
constexpr char kReaderToken[] = "dash-reader-4b01";
constexpr char kWorkerToken[] = "dash-worker-e3f5";
constexpr char kBoundToken[] = "dash-bound-9a6c";

std::string TokenLine(const std::string& name, const std::string& role,
                      const std::string& token, const std::string& extra = "") {
  return absl::StrCat(name, " ", role, " ", Sha256Hex(token),
                      extra.empty() ? "" : " ", extra, "\n");
}

class DashboardAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempPath("dashboard-auth");
    ASSERT_EQ(::mkdir(dir_.c_str(), 0700), 0);
    TestCa ca("dashboard-test-ca");
    const PemPair server = ca.IssueServer();
    ca_file_ = Write("ca.pem", ca.ca().cert);
    cert_file_ = Write("server.pem", server.cert);
    key_file_ = Write("server.key", server.key);
    TestCa other("other-ca");
    other_ca_ = other.ca().cert;
    other_server_ = other.IssueServer();
    other_ca_file_ = Write("other-ca.pem", other_ca_);
    const std::string tokens = Write(
        "tokens", absl::StrCat(TokenLine("root", "admin", kAdminToken),
                               TokenLine("alice", "submitter", kSubmitterToken),
                               TokenLine("grafana", "reader", kReaderToken),
                               TokenLine("w1", "worker", kWorkerToken),
                               TokenLine("laptop", "reader", kBoundToken,
                                         "cert=alice-laptop")));

    CoordinatorOptions options;
    options.clock = &clock_;
    options.security.tls.cert_file = cert_file_;
    options.security.tls.key_file = key_file_;
    options.security.token_file = tokens;
    auto c = ::sweepd::testing::StartTestCoordinator(options);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(*c);
    ASSERT_NE(coordinator_->authorizer(), nullptr);

    DashboardApiOptions api;
    api.scheduler = coordinator_->scheduler();
    api.ledger = coordinator_->ledger();
    api.clock = &clock_;
    api.metrics = coordinator_->metrics()->collectables();
    DashboardServerOptions http;
    http.listen = "127.0.0.1:0";
    http.authorizer = coordinator_->authorizer();
    http.tls_cert_file = cert_file_;
    http.tls_key_file = key_file_;
    http.tls_refresh_interval_ms = 1'000;
    http.clock = &clock_;
    auto s = DashboardServer::Create(http, api);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  void TearDown() override {
    server_.reset();
    if (coordinator_) {
      ASSERT_TRUE(coordinator_->Shutdown(absl::Seconds(2)).ok());
    }
  }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(dir_, "/", name);
    WriteText(path, text);
    return path;
  }

  // GET over HTTPS (verified against the test CA) with `token` as bearer
  // token ("" = no Authorization header).
  HttpResponse Get(const std::string& path, const std::string& token,
                   const std::string& authorization = "") {
    HttpGetOptions options;
    options.tls_ca_file = ca_file_;
    if (!token.empty()) {
      options.headers.push_back({"Authorization", "Bearer " + token});
    } else if (!authorization.empty()) {
      options.headers.push_back({"Authorization", authorization});
    }
    auto got = HttpGet("127.0.0.1", server_->port(), path, options);
    EXPECT_TRUE(got.ok()) << path << ": " << got.status();
    return got.ok() ? *got : HttpResponse{};
  }

  FakeClock clock_;
  std::string dir_, ca_file_, cert_file_, key_file_, other_ca_file_, other_ca_;
  PemPair other_server_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<DashboardServer> server_;
};

TEST_F(DashboardAuthTest, ServesHttpsWithTheGrpcCertificate) {
  EXPECT_TRUE(server_->https());
  EXPECT_EQ(server_->url(),
            absl::StrCat("https://127.0.0.1:", server_->port(), "/"));
  const HttpResponse page = Get("/", "");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.body, HasSubstr("id=\"login\""));
}

TEST_F(DashboardAuthTest, EveryDataPathNeedsAReadingRole) {
  // The denial log must name the path and the peer and never hold a token:
  // capture stderr.
  const std::string log_path = absl::StrCat(dir_, "/denials.log");
  fflush(stderr);
  const int saved_stderr = dup(STDERR_FILENO);
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(log_fd, 0);
  dup2(log_fd, STDERR_FILENO);

  const std::vector<std::string> paths = {"/api/sweeps",
                                          "/api/workers",
                                          "/api/sweeps/sw-none/tasks",
                                          "/api/sweeps/sw-none/report",
                                          "/metrics",
                                          "/no-such-page"};
  int cases = 0;
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    const int64_t denials = coordinator_->authorizer()->denials();
    const HttpResponse none = Get(path, "");
    EXPECT_EQ(none.status, 401) << none.body;
    EXPECT_EQ(none.headers.at("www-authenticate"), "Bearer realm=\"sweepd\"");
    EXPECT_THAT(nlohmann::json::parse(none.body).value("error", ""),
                HasSubstr("no bearer token"));
    const HttpResponse basic = Get(path, "", "Basic cm9vdDpyb290");
    EXPECT_EQ(basic.status, 401) << basic.body;
    EXPECT_THAT(basic.body, HasSubstr("not `Bearer TOKEN`"));
    const HttpResponse unknown = Get(path, "not-a-known-token");
    EXPECT_EQ(unknown.status, 401) << unknown.body;
    EXPECT_THAT(unknown.body, HasSubstr("unknown bearer token"));
    const HttpResponse bound = Get(path, kBoundToken);
    EXPECT_EQ(bound.status, 401) << bound.body;
    EXPECT_THAT(bound.body, HasSubstr("bound to a client certificate"));
    const HttpResponse worker = Get(path, kWorkerToken);
    EXPECT_EQ(worker.status, 403) << worker.body;
    EXPECT_THAT(worker.body, HasSubstr("role worker"));
    EXPECT_EQ(coordinator_->authorizer()->denials(), denials + 5);
    cases += 5;
    for (const char* token : {kReaderToken, kSubmitterToken, kAdminToken}) {
      const HttpResponse ok = Get(path, token);
      // Past the check the API answers: 200, or 404 for what does not exist
      // (no page, no sweep sw-none).
      const bool missing =
          path == "/no-such-page" || path.find("sw-none") != std::string::npos;
      EXPECT_EQ(ok.status, missing ? 404 : 200) << token << ": " << ok.body;
      ++cases;
    }
    EXPECT_EQ(coordinator_->authorizer()->denials(), denials + 5);
  }
  EXPECT_EQ(cases, 6 * 8);
  // The page and the scripts it loads carry no data and stay open (the page
  // asks for the token).
  EXPECT_EQ(Get("/", "").status, 200);
  EXPECT_EQ(Get("/assets/vega.min.js", "").status, 200);

  fflush(stderr);
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  close(log_fd);
  const std::string log = ReadText(log_path);
  EXPECT_THAT(log, HasSubstr("auth: denied GET /api/sweeps from 127.0.0.1:"));
  EXPECT_THAT(log, HasSubstr("auth: denied GET /metrics from 127.0.0.1:"));
  EXPECT_THAT(log, HasSubstr("(token 'w1', role worker, dashboard)"));
  for (const char* token :
       {kAdminToken, kSubmitterToken, kReaderToken, kWorkerToken, kBoundToken,
        "not-a-known-token", "cm9vdDpyb290"}) {
    EXPECT_THAT(log, Not(HasSubstr(token)));
  }
}

TEST_F(DashboardAuthTest, ReaderSeesTheSameDataAsWithoutAuthentication) {
  const HttpResponse sweeps = Get("/api/sweeps", kReaderToken);
  ASSERT_EQ(sweeps.status, 200) << sweeps.body;
  EXPECT_TRUE(nlohmann::json::parse(sweeps.body).contains("sweeps"));
  const HttpResponse metrics = Get("/metrics", kReaderToken);
  ASSERT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.body, HasSubstr("sweepd_sweeps"));
}

TEST_F(DashboardAuthTest, PlaintextAndForeignCasFailTheHandshake) {
  auto plain = HttpGet("127.0.0.1", server_->port(), "/api/sweeps");
  // The HTTPS port answers no plaintext request.
  EXPECT_TRUE(!plain.ok() || plain->status == 0 || plain->status >= 400)
      << plain->status << " " << plain->body;
  HttpGetOptions foreign;
  foreign.tls_ca_file = other_ca_file_;
  foreign.headers.push_back(
      {"Authorization", absl::StrCat("Bearer ", kReaderToken)});
  EXPECT_THAT(
      HttpGet("127.0.0.1", server_->port(), "/api/sweeps", foreign).status(),
      StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(DashboardAuthTest, CertificateIsReReadWhenItsFilesChange) {
  // Rotate both files to the other CA's server certificate (the key first:
  // a half-way pair is refused and the old one kept).
  WriteText(key_file_, other_server_.key);
  clock_.AdvanceMs(1'500);
  EXPECT_EQ(Get("/api/sweeps", kReaderToken).status, 200);  // old pair kept
  WriteText(cert_file_, other_server_.cert);
  clock_.AdvanceMs(1'500);
  HttpGetOptions options;
  options.headers.push_back(
      {"Authorization", absl::StrCat("Bearer ", kReaderToken)});
  options.tls_ca_file = other_ca_file_;
  auto rotated = HttpGet("127.0.0.1", server_->port(), "/api/sweeps", options);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->status, 200);
  options.tls_ca_file = ca_file_;
  EXPECT_THAT(
      HttpGet("127.0.0.1", server_->port(), "/api/sweeps", options).status(),
      StatusIs(absl::StatusCode::kUnavailable));
}

TEST(TlsCertificateFilesTest, RefusesAKeyThatIsNotTheCertificates) {
  const std::string dir = TempPath("tls-files");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  TestCa ca("a");
  const PemPair one = ca.IssueServer();
  const PemPair two = ca.IssueServer();
  WriteText(dir + "/cert.pem", one.cert);
  WriteText(dir + "/key.pem", two.key);
  TlsCertificateFilesOptions options;
  options.cert_file = dir + "/cert.pem";
  options.key_file = dir + "/key.pem";
  EXPECT_THAT(TlsCertificateFiles::Load(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not the key of --tls-cert")));
  options.key_file = dir + "/missing.pem";
  EXPECT_THAT(TlsCertificateFiles::Load(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--tls-key " + dir + "/missing.pem")));
}

TEST(HttpListenerSecurityTest, BeyondLoopbackTheDashboardNeedsHttpsAndTokens) {
  SecurityOptions none;
  EXPECT_TRUE(
      CheckHttpListenerSecurity("127.0.0.1:8080", "127.0.0.1:9464", none).ok());
  EXPECT_THAT(CheckHttpListenerSecurity("0.0.0.0:8080", "", none),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--tls-cert and --tls-key")));
  SecurityOptions tls;
  tls.tls.cert_file = "c.pem";
  tls.tls.key_file = "k.pem";
  EXPECT_THAT(
      CheckHttpListenerSecurity("0.0.0.0:8080", "", tls),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--token-file")));
  SecurityOptions tokens = tls;
  tokens.token_file = "tokens";
  EXPECT_TRUE(CheckHttpListenerSecurity("0.0.0.0:8080", "", tokens).ok());
  // The plaintext, token-less metrics endpoint stays on loopback.
  EXPECT_THAT(CheckHttpListenerSecurity("", "0.0.0.0:9464", tokens),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--metrics-listen 0.0.0.0:9464")));
  SecurityOptions insecure;
  insecure.allow_insecure_remote = true;
  EXPECT_TRUE(
      CheckHttpListenerSecurity("0.0.0.0:8080", "0.0.0.0:9464", insecure).ok());
}

}  // namespace
}  // namespace sweepd
