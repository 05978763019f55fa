// Transport security and authorisation of sweepd, end to end over loopback:
// a Coordinator serving TLS (client certificates verified when presented) with
// a token file, and clients built the way sweepctl and sweep-worker build
// theirs (proto/tls_config.h).
//
// The auth matrix: every RPC of the Coordinator and WorkerGateway services,
// called over plaintext, with a server certificate from an unknown CA, with an
// expired client certificate, with a client certificate from an unknown CA,
// without a token, with a bad token, with a token bound to another
// certificate, and with every role the method does not allow. Each case names
// the code it expects (transport failures reach the client as UNAVAILABLE:
// the handshake fails before any call exists) and asserts that the service's
// handler counter did not move. Positive controls prove the counter moves for
// an allowed call, so the check is not vacuous.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/hash.h"
#include "coordinator/authorizer.h"
#include "coordinator/server_security.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/tls_config.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "sweepd/v1/worker.grpc.pb.h"
#include "tests/coordinator/coordinator_test_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certs.h"
#include "tests/testing/text_files.h"

namespace sweepd {
namespace {

using ::sweepd::testing::CertSpec;
using ::sweepd::testing::IsOk;
using ::sweepd::testing::PemPair;
using ::sweepd::testing::StartTestCoordinator;
using ::sweepd::testing::StatusIs;
using ::sweepd::testing::TempPath;
using ::sweepd::testing::TestCa;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAdminToken[] = "admin-secret-7f3a";
constexpr char kAliceToken[] = "alice-secret-91bc";
constexpr char kBobToken[] = "bob-secret-22d0";
constexpr char kReaderToken[] = "reader-secret-5e11";
constexpr char kWorkerToken[] = "worker-secret-c4a8";
constexpr char kBoundToken[] = "bound-secret-0b77";

std::string TokenLine(const std::string& name, const std::string& role,
                      const std::string& token, const std::string& extra = "") {
  return absl::StrCat(name, " ", role, " ", Sha256Hex(token),
                      extra.empty() ? "" : " ", extra, "\n");
}

std::string Write(const std::string& dir, const std::string& name,
                  const std::string& text) {
  const std::string path = absl::StrCat(dir, "/", name);
  std::ofstream(path, std::ios::trunc) << text;
  return path;
}

// A client's TLS files and token; empty fields are left out.
struct ClientSetup {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string token;
  bool plaintext = false;
};

// Every RPC, called with a plausible request; returns the call's status.
using RpcCall = std::function<grpc::Status(grpc::Channel&)>;

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(10));
  return ctx;
}

RpcCall CallFor(Rpc rpc) {
  switch (rpc) {
    case Rpc::kSubmitSweep:
      return [](grpc::Channel& ch) {
        v1::SubmitSweepRequest req;
        req.mutable_spec()->set_name("matrix");
        req.mutable_spec()->mutable_synthetic()->set_tasks(1);
        v1::SubmitSweepResponse resp;
        return v1::Coordinator::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->SubmitSweep(Ctx().get(), req, &resp);
      };
    case Rpc::kGetSweep:
      return [](grpc::Channel& ch) {
        v1::GetSweepRequest req;
        req.set_sweep_id("no-such-sweep");
        v1::SweepStatus resp;
        return v1::Coordinator::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->GetSweep(Ctx().get(), req, &resp);
      };
    case Rpc::kListSweeps:
      return [](grpc::Channel& ch) {
        v1::ListSweepsRequest req;
        v1::ListSweepsResponse resp;
        return v1::Coordinator::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->ListSweeps(Ctx().get(), req, &resp);
      };
    case Rpc::kWatchSweep:
      return [](grpc::Channel& ch) {
        v1::WatchSweepRequest req;
        req.set_sweep_id("no-such-sweep");
        auto ctx = Ctx();
        auto stub = v1::Coordinator::NewStub(
            std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}));
        auto reader = stub->WatchSweep(ctx.get(), req);
        v1::SweepEvent event;
        while (reader->Read(&event)) {
        }
        return reader->Finish();
      };
    case Rpc::kCancelSweep:
      return [](grpc::Channel& ch) {
        v1::CancelSweepRequest req;
        req.set_sweep_id("no-such-sweep");
        v1::CancelSweepResponse resp;
        return v1::Coordinator::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->CancelSweep(Ctx().get(), req, &resp);
      };
    case Rpc::kListResults:
      return [](grpc::Channel& ch) {
        v1::ListResultsRequest req;
        req.set_sweep_id("no-such-sweep");
        v1::ListResultsResponse resp;
        return v1::Coordinator::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->ListResults(Ctx().get(), req, &resp);
      };
    case Rpc::kListWorkers:
      return [](grpc::Channel& ch) {
        v1::ListWorkersRequest req;
        v1::ListWorkersResponse resp;
        return v1::Coordinator::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->ListWorkers(Ctx().get(), req, &resp);
      };
    case Rpc::kRegisterWorker:
      return [](grpc::Channel& ch) {
        v1::RegisterWorkerRequest req;
        req.set_name("matrix-worker");
        req.mutable_capabilities()->set_device_kind("cpu");
        req.mutable_capabilities()->set_tensor_parallel(1);
        v1::RegisterWorkerResponse resp;
        return v1::WorkerGateway::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->RegisterWorker(Ctx().get(), req, &resp);
      };
    case Rpc::kLeaseTasks:
      return [](grpc::Channel& ch) {
        v1::LeaseTasksRequest req;
        req.set_worker_id("no-such-worker");
        req.set_max_tasks(1);
        v1::LeaseTasksResponse resp;
        return v1::WorkerGateway::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->LeaseTasks(Ctx().get(), req, &resp);
      };
    case Rpc::kHeartbeat:
      return [](grpc::Channel& ch) {
        v1::HeartbeatRequest req;
        req.set_worker_id("no-such-worker");
        v1::HeartbeatResponse resp;
        return v1::WorkerGateway::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->Heartbeat(Ctx().get(), req, &resp);
      };
    case Rpc::kReportResult:
      return [](grpc::Channel& ch) {
        v1::ReportResultRequest req;
        req.set_worker_id("no-such-worker");
        req.set_task_key("no-such-task");
        req.set_fencing_token(1);
        req.mutable_failure()->set_message("matrix");
        v1::ReportResultResponse resp;
        return v1::WorkerGateway::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->ReportResult(Ctx().get(), req, &resp);
      };
    case Rpc::kReleaseTasks:
      return [](grpc::Channel& ch) {
        v1::ReleaseTasksRequest req;
        req.set_worker_id("no-such-worker");
        v1::ReleaseTasksResponse resp;
        return v1::WorkerGateway::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->ReleaseTasks(Ctx().get(), req, &resp);
      };
    case Rpc::kListArtifacts:
      return [](grpc::Channel& ch) {
        v1::ListArtifactsRequest req;
        v1::ListArtifactsResponse resp;
        return v1::Coordinator::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->ListArtifacts(Ctx().get(), req, &resp);
      };
    case Rpc::kFetchArtifact:
      return [](grpc::Channel& ch) {
        v1::FetchArtifactRequest req;
        req.set_path("objects/ab/" + std::string(64, 'a'));
        auto ctx = Ctx();
        auto stub = v1::Coordinator::NewStub(
            std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}));
        auto reader = stub->FetchArtifact(ctx.get(), req);
        v1::ArtifactChunk chunk;
        while (reader->Read(&chunk)) {
        }
        return reader->Finish();
      };
    case Rpc::kCollectArtifactGarbage:
      return [](grpc::Channel& ch) {
        v1::CollectArtifactGarbageRequest req;
        req.set_dry_run(true);
        v1::CollectArtifactGarbageResponse resp;
        return v1::Coordinator::NewStub(
                   std::shared_ptr<grpc::Channel>(&ch, [](auto*) {}))
            ->CollectArtifactGarbage(Ctx().get(), req, &resp);
      };
  }
  return nullptr;
}

// The token of a role allowed to call `rpc`.
std::string AllowedToken(Rpc rpc) {
  if (RoleMayCall(Role::kWorker, rpc)) return kWorkerToken;
  if (RoleMayCall(Role::kReader, rpc)) return kReaderToken;
  if (!RoleMayCall(Role::kSubmitter, rpc)) return kAdminToken;  // admin only
  return kAliceToken;
}

class AuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempPath("auth"));
    ASSERT_EQ(::mkdir(dir_->c_str(), 0700), 0);
    TestCa ca("sweepd-test-ca");
    TestCa other("unknown-ca");
    const PemPair server = ca.IssueServer();
    const PemPair alice = ca.IssueClient("alice-laptop");
    const PemPair mallory = ca.IssueClient("mallory-laptop");
    const PemPair foreign = other.IssueClient("alice-laptop");
    CertSpec expired_spec;
    expired_spec.common_name = "alice-laptop";
    expired_spec.subject_alt_names = {"DNS:alice-laptop"};
    expired_spec.not_before_s = -2 * 24 * 3600;
    expired_spec.not_after_s = -24 * 3600;
    const PemPair expired = ca.Issue(expired_spec);
    const PemPair foreign_server = other.IssueServer();
    files_ = new std::map<std::string, std::string>{
        {"ca", Write(*dir_, "ca.pem", ca.ca().cert)},
        {"other_ca", Write(*dir_, "other-ca.pem", other.ca().cert)},
        {"server_cert", Write(*dir_, "server.pem", server.cert)},
        {"server_key", Write(*dir_, "server.key", server.key)},
        {"alice_cert", Write(*dir_, "alice.pem", alice.cert)},
        {"alice_key", Write(*dir_, "alice.key", alice.key)},
        {"mallory_cert", Write(*dir_, "mallory.pem", mallory.cert)},
        {"mallory_key", Write(*dir_, "mallory.key", mallory.key)},
        {"foreign_cert", Write(*dir_, "foreign.pem", foreign.cert)},
        {"foreign_key", Write(*dir_, "foreign.key", foreign.key)},
        {"expired_cert", Write(*dir_, "expired.pem", expired.cert)},
        {"expired_key", Write(*dir_, "expired.key", expired.key)},
        {"foreign_server_cert",
         Write(*dir_, "foreign-server.pem", foreign_server.cert)},
        {"foreign_server_key",
         Write(*dir_, "foreign-server.key", foreign_server.key)},
    };
  }
  static void TearDownTestSuite() {
    delete files_;
    delete dir_;
  }
  static const std::string& F(const std::string& key) {
    return files_->at(key);
  }

  void SetUp() override {
    token_file_ = Write(*dir_, absl::StrCat("tokens-", ++instance_), Tokens());
    CoordinatorOptions options;
    options.clock = &clock_;
    options.service.watch_interval_ms = 20;
    options.security.tls.cert_file = F("server_cert");
    options.security.tls.key_file = F("server_key");
    options.security.tls.client_ca_file = F("ca");
    options.security.token_file = token_file_;
    auto c = StartTestCoordinator(options);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(c).value();
  }
  void TearDown() override {
    if (coordinator_)
      ASSERT_TRUE(coordinator_->Shutdown(absl::Seconds(2)).ok());
  }

  static std::string Tokens() {
    return absl::StrCat(
        "# test tokens\n", TokenLine("root", "admin", kAdminToken),
        TokenLine("alice", "submitter", kAliceToken),
        TokenLine("bob", "submitter", kBobToken),
        TokenLine("ro", "reader", kReaderToken),
        TokenLine("w1", "worker", kWorkerToken),
        TokenLine("alice-bound", "reader", kBoundToken, "cert=alice-laptop"));
  }

  // A fresh channel (own subchannel pool: no connection is shared between
  // cases).
  std::shared_ptr<grpc::Channel> Channel(const ClientSetup& setup) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (setup.plaintext) {
      creds = grpc::InsecureChannelCredentials();
    } else {
      ClientTlsOptions tls;
      tls.ca_file = setup.ca_file;
      tls.cert_file = setup.cert_file;
      tls.key_file = setup.key_file;
      tls.token = setup.token;
      auto made = MakeChannelCredentials(tls);
      EXPECT_TRUE(made.ok()) << made.status();
      if (!made.ok()) return nullptr;
      creds = *made;
    }
    return grpc::CreateCustomChannel(coordinator_->address(), creds, args);
  }
  ClientSetup Tls(const std::string& token) const {
    ClientSetup s;
    s.ca_file = F("ca");
    s.token = token;
    return s;
  }
  int64_t HandlerCalls() { return coordinator_->service()->handler_calls(); }

  FakeClock clock_;
  std::string token_file_;
  std::unique_ptr<Coordinator> coordinator_;
  static inline int instance_ = 0;
  static inline std::string* dir_ = nullptr;
  static inline std::map<std::string, std::string>* files_ = nullptr;
};

struct MatrixCase {
  std::string name;
  ClientSetup setup;
  grpc::StatusCode expected;
};

TEST_F(AuthTest, EveryRpcRejectsEveryBadCredentialBeforeItsHandlerRuns) {
  // The log of the denials must never hold a token: capture stderr.
  const std::string log_path = absl::StrCat(*dir_, "/denials.log");
  fflush(stderr);
  const int saved_stderr = dup(STDERR_FILENO);
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(log_fd, 0);
  dup2(log_fd, STDERR_FILENO);

  int cases = 0;
  for (Rpc rpc : kAllRpcs) {
    const std::string method = RpcMethodName(rpc);
    std::vector<MatrixCase> matrix;
    {
      ClientSetup s;
      s.plaintext = true;
      matrix.push_back({"plaintext against TLS", s, grpc::UNAVAILABLE});
    }
    {
      ClientSetup s = Tls(AllowedToken(rpc));
      s.ca_file = F("other_ca");
      matrix.push_back(
          {"server certificate from an unknown CA", s, grpc::UNAVAILABLE});
    }
    {
      ClientSetup s = Tls(AllowedToken(rpc));
      s.cert_file = F("expired_cert");
      s.key_file = F("expired_key");
      matrix.push_back({"expired client certificate", s, grpc::UNAVAILABLE});
    }
    {
      ClientSetup s = Tls(AllowedToken(rpc));
      s.cert_file = F("foreign_cert");
      s.key_file = F("foreign_key");
      matrix.push_back(
          {"client certificate from an unknown CA", s, grpc::UNAVAILABLE});
    }
    matrix.push_back({"missing token", Tls(""), grpc::UNAUTHENTICATED});
    matrix.push_back(
        {"bad token", Tls("not-a-known-token"), grpc::UNAUTHENTICATED});
    {
      // Bound to alice-laptop; mallory's certificate is valid but not it.
      ClientSetup s = Tls(kBoundToken);
      s.cert_file = F("mallory_cert");
      s.key_file = F("mallory_key");
      matrix.push_back(
          {"token bound to another certificate", s, grpc::UNAUTHENTICATED});
      matrix.push_back({"token bound to a certificate, none presented",
                        Tls(kBoundToken), grpc::UNAUTHENTICATED});
    }
    for (auto [role, token] :
         {std::pair<Role, const char*>{Role::kAdmin, kAdminToken},
          {Role::kSubmitter, kAliceToken},
          {Role::kReader, kReaderToken},
          {Role::kWorker, kWorkerToken}}) {
      if (RoleMayCall(role, rpc)) continue;
      matrix.push_back({absl::StrCat("wrong role ", RoleName(role)), Tls(token),
                        grpc::PERMISSION_DENIED});
    }

    for (const MatrixCase& c : matrix) {
      SCOPED_TRACE(absl::StrCat(method, ": ", c.name));
      std::shared_ptr<grpc::Channel> channel = Channel(c.setup);
      ASSERT_NE(channel, nullptr);
      const int64_t before = HandlerCalls();
      const grpc::Status st = CallFor(rpc)(*channel);
      EXPECT_EQ(st.error_code(), c.expected) << st.error_message();
      EXPECT_EQ(HandlerCalls(), before) << "a handler ran";
      ++cases;
    }

    // Positive control: the allowed role gets through and the counter moves.
    {
      SCOPED_TRACE(absl::StrCat(method, ": allowed role"));
      std::shared_ptr<grpc::Channel> channel = Channel(Tls(AllowedToken(rpc)));
      const int64_t before = HandlerCalls();
      const grpc::Status st = CallFor(rpc)(*channel);
      EXPECT_NE(st.error_code(), grpc::UNAUTHENTICATED) << st.error_message();
      EXPECT_NE(st.error_code(), grpc::PERMISSION_DENIED) << st.error_message();
      EXPECT_NE(st.error_code(), grpc::UNAVAILABLE) << st.error_message();
      EXPECT_EQ(HandlerCalls(), before + 1);
    }
  }
  EXPECT_GE(cases, 12 * 8);

  fflush(stderr);
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  close(log_fd);
  const std::string log = ::sweepd::testing::ReadText(log_path);
  EXPECT_THAT(log, HasSubstr("auth: denied /sweepd.v1.Coordinator/SubmitSweep "
                             "from ipv4:127.0.0.1:"));
  EXPECT_THAT(log, HasSubstr("auth: denied /sweepd.v1.WorkerGateway/"
                             "ReportResult from ipv4:127.0.0.1:"));
  EXPECT_THAT(log, HasSubstr("unknown bearer token"));
  for (const char* token : {kAdminToken, kAliceToken, kBobToken, kReaderToken,
                            kWorkerToken, kBoundToken, "not-a-known-token"}) {
    EXPECT_THAT(log, Not(HasSubstr(token)));
  }
}

TEST_F(AuthTest, BoundTokenWorksWithItsCertificate) {
  ClientSetup s = Tls(kBoundToken);
  s.cert_file = F("alice_cert");
  s.key_file = F("alice_key");
  std::shared_ptr<grpc::Channel> channel = Channel(s);
  const grpc::Status st = CallFor(Rpc::kListSweeps)(*channel);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(AuthTest, OnlyTheSubmitterOrAnAdminMayCancel) {
  auto alice = v1::Coordinator::NewStub(Channel(Tls(kAliceToken)));
  v1::SubmitSweepRequest req;
  req.mutable_spec()->set_name("owned");
  req.mutable_spec()->mutable_synthetic()->set_tasks(2);
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(alice->SubmitSweep(Ctx().get(), req, &submitted).ok());
  auto row = coordinator_->ledger()->GetSweep(submitted.sweep_id());
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->submitter, "alice");

  // The same spec from bob is the same sweep, still alice's.
  auto bob = v1::Coordinator::NewStub(Channel(Tls(kBobToken)));
  v1::SubmitSweepResponse again;
  ASSERT_TRUE(bob->SubmitSweep(Ctx().get(), req, &again).ok());
  EXPECT_TRUE(again.already_existed());

  v1::CancelSweepRequest cancel;
  cancel.set_sweep_id(submitted.sweep_id());
  v1::CancelSweepResponse resp;
  const grpc::Status by_bob = bob->CancelSweep(Ctx().get(), cancel, &resp);
  EXPECT_EQ(by_bob.error_code(), grpc::PERMISSION_DENIED);
  EXPECT_THAT(by_bob.error_message(), HasSubstr("submitted by 'alice'"));
  auto reader = v1::Coordinator::NewStub(Channel(Tls(kReaderToken)));
  EXPECT_EQ(reader->CancelSweep(Ctx().get(), cancel, &resp).error_code(),
            grpc::PERMISSION_DENIED);
  auto still = coordinator_->ledger()->GetSweep(submitted.sweep_id());
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->state, v1::SWEEP_STATE_RUNNING);

  const grpc::Status by_alice = alice->CancelSweep(Ctx().get(), cancel, &resp);
  EXPECT_TRUE(by_alice.ok()) << by_alice.error_message();
  EXPECT_EQ(resp.cancelled_tasks(), 2);

  // An admin may cancel anyone's sweep.
  req.mutable_spec()->set_name("owned-2");
  ASSERT_TRUE(bob->SubmitSweep(Ctx().get(), req, &submitted).ok());
  auto admin = v1::Coordinator::NewStub(Channel(Tls(kAdminToken)));
  cancel.set_sweep_id(submitted.sweep_id());
  const grpc::Status by_admin = admin->CancelSweep(Ctx().get(), cancel, &resp);
  EXPECT_TRUE(by_admin.ok()) << by_admin.error_message();
}

TEST_F(AuthTest, TokenFileChangesApplyWithoutRestart) {
  constexpr char kCarolToken[] = "carol-secret-aa01";
  auto carol = v1::Coordinator::NewStub(Channel(Tls(kCarolToken)));
  auto alice = v1::Coordinator::NewStub(Channel(Tls(kAliceToken)));
  v1::ListSweepsRequest req;
  v1::ListSweepsResponse resp;
  EXPECT_EQ(carol->ListSweeps(Ctx().get(), req, &resp).error_code(),
            grpc::UNAUTHENTICATED);

  // Replace the file (rename: a new inode) with carol in and alice out.
  const std::string next = token_file_ + ".next";
  std::ofstream(next, std::ios::trunc)
      << TokenLine("root", "admin", kAdminToken)
      << TokenLine("carol", "reader", kCarolToken);
  ASSERT_EQ(std::rename(next.c_str(), token_file_.c_str()), 0);
  // Not looked at again before the reload interval has passed on the clock.
  EXPECT_EQ(carol->ListSweeps(Ctx().get(), req, &resp).error_code(),
            grpc::UNAUTHENTICATED);
  EXPECT_TRUE(alice->ListSweeps(Ctx().get(), req, &resp).ok());
  clock_.AdvanceMs(1'000);
  EXPECT_TRUE(carol->ListSweeps(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(alice->ListSweeps(Ctx().get(), req, &resp).error_code(),
            grpc::UNAUTHENTICATED);
  EXPECT_EQ(coordinator_->authorizer()->tokens()->reloads(), 1);

  // A broken edit keeps the tokens loaded before.
  std::ofstream(next, std::ios::trunc) << "carol reader not-a-hash\n";
  ASSERT_EQ(std::rename(next.c_str(), token_file_.c_str()), 0);
  clock_.AdvanceMs(1'000);
  EXPECT_TRUE(carol->ListSweeps(Ctx().get(), req, &resp).ok());
}

TEST(ClientCredentialsTest, TokenIsNeverSentOverPlaintext) {
  ClientTlsOptions tls;
  tls.token = "some-token";
  auto creds = MakeChannelCredentials(tls);
  EXPECT_THAT(creds.status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("refusing to send a bearer token over "
                                 "plaintext")));
  EXPECT_THAT(creds.status().message(), Not(HasSubstr("some-token")));
}

TEST(ClientCredentialsTest, MissingFilesAreNamed) {
  ClientTlsOptions tls;
  tls.ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(MakeChannelCredentials(tls).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--tls-ca /nonexistent/ca.pem")));
  ServerTlsOptions server;
  server.cert_file = "/nonexistent/cert.pem";
  EXPECT_THAT(MakeServerCredentials(server).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--tls-cert and --tls-key")));
}

TEST(ListenerSecurityTest, BeyondLoopbackNeedsRootsTlsAndTokens) {
  SecurityOptions none;
  SecurityOptions tls;
  tls.tls.cert_file = "cert.pem";
  tls.tls.key_file = "key.pem";
  SecurityOptions full = tls;
  full.token_file = "tokens";
  SecurityOptions insecure;
  insecure.allow_insecure_remote = true;

  // Loopback: plaintext is fine, roots optional.
  EXPECT_THAT(CheckListenerSecurity("127.0.0.1:7070", none, "", ""), IsOk());
  EXPECT_THAT(CheckListenerSecurity("[::1]:7070", none, "", ""), IsOk());
  // Tokens are never accepted over plaintext, loopback or not.
  SecurityOptions tokens_only;
  tokens_only.token_file = "tokens";
  EXPECT_THAT(CheckListenerSecurity("127.0.0.1:7070", tokens_only, "", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--token-file needs TLS")));
  // Beyond loopback: roots always, then TLS, then tokens (or the override).
  EXPECT_THAT(CheckListenerSecurity("0.0.0.0:7070", full, "", "/data"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--model-root and --data-root are required")));
  EXPECT_THAT(CheckListenerSecurity("0.0.0.0:7070", insecure, "/m", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--model-root and --data-root are required")));
  EXPECT_THAT(CheckListenerSecurity("10.0.0.5:7070", none, "/m", "/d"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--tls-cert and --tls-key")));
  EXPECT_THAT(
      CheckListenerSecurity("10.0.0.5:7070", tls, "/m", "/d"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--token-file")));
  EXPECT_THAT(CheckListenerSecurity("10.0.0.5:7070", full, "/m", "/d"), IsOk());
  EXPECT_THAT(CheckListenerSecurity("10.0.0.5:7070", insecure, "/m", "/d"),
              IsOk());
}

TEST(TokenTableTest, ParsesAndNamesTheBadLine) {
  const std::string hash = Sha256Hex("t1");
  auto table = TokenTable::Parse(
      absl::StrCat("# comment\n\n  alice\tsubmitter ", hash, "  \nw worker ",
                   Sha256Hex("t2"), " cert=node-1\n"),
      "tokens");
  ASSERT_THAT(table, IsOk());
  EXPECT_EQ(table->size(), 2u);
  ASSERT_NE(table->Find("t1"), nullptr);
  EXPECT_EQ(table->Find("t1")->name, "alice");
  EXPECT_EQ(table->Find("t1")->role, Role::kSubmitter);
  EXPECT_EQ(table->Find("t2")->cert_identity, "node-1");
  EXPECT_EQ(table->Find("t3"), nullptr);

  EXPECT_THAT(TokenTable::Parse(absl::StrCat("a owner ", hash), "tokens"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tokens:1: role 'owner'")));
  EXPECT_THAT(
      TokenTable::Parse(absl::StrCat("a admin ", hash, "\nb reader ", hash),
                        "tokens"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("tokens:2: the hash of 'b'")));
  EXPECT_THAT(TokenTable::Parse(
                  absl::StrCat("a admin ", hash, "\na reader ", Sha256Hex("x")),
                  "tokens"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("duplicate name 'a'")));
  EXPECT_THAT(
      TokenTable::Parse(absl::StrCat("a admin ", hash, " bind=x"), "tokens"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cert=IDENTITY")));
  // A token pasted where its hash belongs is refused and never echoed.
  auto pasted = TokenTable::Parse("a admin my-plain-secret-token", "tokens");
  EXPECT_THAT(pasted, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("SHA-256 of the token")));
  EXPECT_THAT(pasted.status().message(),
              Not(HasSubstr("my-plain-secret-token")));
}

}  // namespace
}  // namespace sweepd
