// Authorizer: who may call which RPC of sweepd. Every call of the Coordinator
// and WorkerGateway services passes Check() before its handler does anything:
// the caller is identified afresh from that call's metadata (the bearer
// token) and its AuthContext (the TLS peer's certificate), never from state
// kept on the connection, then the caller's role is checked against the
// method (the table below and in docs/SECURITY.md).
//
//   method                                          roles
//   SubmitSweep, CancelSweep                        admin, submitter
//   GetSweep, ListSweeps, WatchSweep, ListResults,  admin, submitter, reader
//   ListWorkers, ListArtifacts, FetchArtifact
//   CollectArtifactGarbage                          admin
//   RegisterWorker, LeaseTasks, Heartbeat,          worker
//   ReportResult, ReleaseTasks
//
// CancelSweep further needs the sweep's submitter or an admin; the service
// checks that against the ledger (Caller::name is what SubmitSweep records).
//
// Outcomes: UNAUTHENTICATED for a missing, malformed or unknown token, a token
// over a connection without TLS, or a token bound to a certificate identity
// the peer did not present; PERMISSION_DENIED for a role the method does not
// allow. Every denial is logged (WARNING) with the method, the peer address and
// what was presented (the token's name when known, never the token).
//
// Ownership: owns the TokenStore. Thread-safe. Check runs on the handler's
// (reactor) thread: a hash and a map lookup, plus at most once per reload
// interval a stat of the token file (and a re-read of that small file when it
// changed).
#ifndef SWEEPD_COORDINATOR_AUTHORIZER_H_
#define SWEEPD_COORDINATOR_AUTHORIZER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coordinator/auth_tokens.h"
#include "grpcpp/grpcpp.h"

namespace sweepd {

// Every RPC of the two services.
enum class Rpc {
  kSubmitSweep,
  kGetSweep,
  kListSweeps,
  kWatchSweep,
  kCancelSweep,
  kListResults,
  kListWorkers,
  kRegisterWorker,
  kLeaseTasks,
  kHeartbeat,
  kReportResult,
  kReleaseTasks,
  kListArtifacts,
  kFetchArtifact,
  kCollectArtifactGarbage,
};
inline constexpr Rpc kAllRpcs[] = {
    Rpc::kSubmitSweep,   Rpc::kGetSweep,       Rpc::kListSweeps,
    Rpc::kWatchSweep,    Rpc::kCancelSweep,    Rpc::kListResults,
    Rpc::kListWorkers,   Rpc::kRegisterWorker, Rpc::kLeaseTasks,
    Rpc::kHeartbeat,     Rpc::kReportResult,   Rpc::kReleaseTasks,
    Rpc::kListArtifacts, Rpc::kFetchArtifact,  Rpc::kCollectArtifactGarbage,
};

// "/sweepd.v1.Coordinator/SubmitSweep", ...: the method as gRPC names it.
const char* RpcMethodName(Rpc rpc);
// Whether `role` may call `rpc` (the table above).
bool RoleMayCall(Role role, Rpc rpc);

// Who made a call.
struct Caller {
  // The token's NAME; empty when authorisation is off.
  std::string name;
  Role role = Role::kAdmin;
  // False when authorisation is off (every call is let through).
  bool authenticated = false;
};

class Authorizer {
 public:
  explicit Authorizer(std::unique_ptr<TokenStore> tokens);

  // The caller of `ctx` if it may call `rpc`; else the denial (logged).
  absl::StatusOr<Caller> Check(const grpc::CallbackServerContext& ctx, Rpc rpc);

  // The same from the call's parts: its client metadata, AuthContext (may be
  // null: no TLS) and peer address (for the log).
  absl::StatusOr<Caller> Check(
      Rpc rpc,
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
      const grpc::AuthContext* auth, const std::string& peer);

  // An HTTP GET of `path` on sweepd's dashboard listener (dashboard/): the
  // caller from `authorization`, the request's Authorization header (nullptr
  // when absent), if its role may read (admin, submitter, reader: the roles
  // of GetSweep, ListSweeps, ListResults, ListWorkers). UNAUTHENTICATED for a
  // missing, malformed or unknown token and for a token bound to a client
  // certificate (the HTTPS listener asks for none); PERMISSION_DENIED for a
  // worker token. The listener serves HTTPS whenever there is a token file
  // (sweepd refuses tokens without TLS), so the transport is not checked
  // here. Denials are logged like the RPC ones, with "GET <path>" as the
  // method.
  absl::StatusOr<Caller> CheckHttpRead(const std::string& path,
                                       const char* authorization,
                                       const std::string& peer);

  // Denials so far (tests, logs).
  int64_t denials() const { return denials_.load(); }
  TokenStore* tokens() { return tokens_.get(); }

 private:
  absl::Status Deny(const std::string& method, const std::string& peer,
                    const std::string& who, absl::Status status);
  // The token entry for an `authorization` header value ("Bearer TOKEN"), or
  // the UNAUTHENTICATED denial (logged).
  absl::StatusOr<TokenEntry> FindBearer(absl::string_view header,
                                        const std::string& method,
                                        const std::string& peer,
                                        const std::string& who);

  std::unique_ptr<TokenStore> tokens_;
  std::atomic<int64_t> denials_{0};
};

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_AUTHORIZER_H_
