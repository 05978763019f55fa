#include "coordinator/authorizer.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "grpc/grpc_security_constants.h"

namespace sweepd {

const char* RpcMethodName(Rpc rpc) {
  switch (rpc) {
    case Rpc::kSubmitSweep:
      return "/sweepd.v1.Coordinator/SubmitSweep";
    case Rpc::kGetSweep:
      return "/sweepd.v1.Coordinator/GetSweep";
    case Rpc::kListSweeps:
      return "/sweepd.v1.Coordinator/ListSweeps";
    case Rpc::kWatchSweep:
      return "/sweepd.v1.Coordinator/WatchSweep";
    case Rpc::kCancelSweep:
      return "/sweepd.v1.Coordinator/CancelSweep";
    case Rpc::kListResults:
      return "/sweepd.v1.Coordinator/ListResults";
    case Rpc::kListWorkers:
      return "/sweepd.v1.Coordinator/ListWorkers";
    case Rpc::kRegisterWorker:
      return "/sweepd.v1.WorkerGateway/RegisterWorker";
    case Rpc::kLeaseTasks:
      return "/sweepd.v1.WorkerGateway/LeaseTasks";
    case Rpc::kHeartbeat:
      return "/sweepd.v1.WorkerGateway/Heartbeat";
    case Rpc::kReportResult:
      return "/sweepd.v1.WorkerGateway/ReportResult";
    case Rpc::kReleaseTasks:
      return "/sweepd.v1.WorkerGateway/ReleaseTasks";
    case Rpc::kListArtifacts:
      return "/sweepd.v1.Coordinator/ListArtifacts";
    case Rpc::kFetchArtifact:
      return "/sweepd.v1.Coordinator/FetchArtifact";
    case Rpc::kCollectArtifactGarbage:
      return "/sweepd.v1.Coordinator/CollectArtifactGarbage";
  }
  return "?";
}

bool RoleMayCall(Role role, Rpc rpc) {
  switch (rpc) {
    case Rpc::kSubmitSweep:
    case Rpc::kCancelSweep:
      return role == Role::kAdmin || role == Role::kSubmitter;
    case Rpc::kGetSweep:
    case Rpc::kListSweeps:
    case Rpc::kWatchSweep:
    case Rpc::kListResults:
    case Rpc::kListWorkers:
    case Rpc::kListArtifacts:
    case Rpc::kFetchArtifact:
      return role == Role::kAdmin || role == Role::kSubmitter ||
             role == Role::kReader;
    case Rpc::kCollectArtifactGarbage:
      return role == Role::kAdmin;
    case Rpc::kRegisterWorker:
    case Rpc::kLeaseTasks:
    case Rpc::kHeartbeat:
    case Rpc::kReportResult:
    case Rpc::kReleaseTasks:
      return role == Role::kWorker;
  }
  return false;
}

namespace {

std::vector<std::string> Property(const grpc::AuthContext* auth,
                                  const char* name) {
  std::vector<std::string> out;
  if (auth == nullptr) return out;
  for (const grpc::string_ref& v : auth->FindPropertyValues(name)) {
    out.emplace_back(v.data(), v.size());
  }
  return out;
}

bool OverTls(const grpc::AuthContext* auth) {
  for (const std::string& v :
       Property(auth, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
    if (v == GRPC_SSL_TRANSPORT_SECURITY_TYPE ||
        v == GRPC_TLS_TRANSPORT_SECURITY_TYPE) {
      return true;
    }
  }
  return false;
}

// The peer certificate's identities: its common name and subject alternative
// names (empty without a verified client certificate).
std::vector<std::string> CertIdentities(const grpc::AuthContext* auth) {
  std::vector<std::string> ids = Property(auth, GRPC_X509_CN_PROPERTY_NAME);
  for (std::string& san : Property(auth, GRPC_X509_SAN_PROPERTY_NAME)) {
    ids.push_back(std::move(san));
  }
  return ids;
}

}  // namespace

Authorizer::Authorizer(std::unique_ptr<TokenStore> tokens)
    : tokens_(std::move(tokens)) {}

absl::Status Authorizer::Deny(const std::string& method,
                              const std::string& peer, const std::string& who,
                              absl::Status status) {
  denials_.fetch_add(1);
  SWEEPD_LOG(WARNING) << "auth: denied " << method << " from " << peer << " ("
                      << who << "): " << absl::StatusCodeToString(status.code())
                      << ": " << status.message();
  return status;
}

absl::StatusOr<TokenEntry> Authorizer::FindBearer(absl::string_view header,
                                                  const std::string& method,
                                                  const std::string& peer,
                                                  const std::string& who) {
  absl::string_view value = header;
  if (!absl::ConsumePrefix(&value, "Bearer ") || value.empty()) {
    return Deny(method, peer, who,
                absl::UnauthenticatedError(
                    "the authorization header is not `Bearer TOKEN`"));
  }
  std::optional<TokenEntry> entry = tokens_->Find(value);
  if (!entry.has_value()) {
    return Deny(method, peer, who,
                absl::UnauthenticatedError("unknown bearer token"));
  }
  return *std::move(entry);
}

absl::StatusOr<Caller> Authorizer::Check(
    Rpc rpc, const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
    const grpc::AuthContext* auth, const std::string& peer) {
  const std::string method = RpcMethodName(rpc);
  const std::vector<std::string> certs = CertIdentities(auth);
  std::string who = certs.empty() ? std::string("no client certificate")
                                  : absl::StrCat("certificate ", certs[0]);
  auto range = metadata.equal_range("authorization");
  const size_t count = std::distance(range.first, range.second);
  if (count == 0) {
    return Deny(method, peer, who,
                absl::UnauthenticatedError(
                    "no bearer token: this sweepd needs `authorization: "
                    "Bearer TOKEN` (sweepctl/sweep-worker --token-file or "
                    "$SWEEPD_TOKEN)"));
  }
  if (count > 1) {
    return Deny(
        method, peer, who,
        absl::UnauthenticatedError("more than one authorization header"));
  }
  const absl::string_view header(range.first->second.data(),
                                 range.first->second.size());
  if (!absl::StartsWith(header, "Bearer ") || header.size() == 7) {
    return Deny(method, peer, who,
                absl::UnauthenticatedError(
                    "the authorization header is not `Bearer TOKEN`"));
  }
  if (!OverTls(auth)) {
    return Deny(
        method, peer, who,
        absl::UnauthenticatedError("bearer tokens are accepted only over TLS"));
  }
  absl::StatusOr<TokenEntry> entry = FindBearer(header, method, peer, who);
  if (!entry.ok()) return entry.status();
  who = absl::StrCat("token '", entry->name, "', role ", RoleName(entry->role),
                     ", ", who);
  if (!entry->cert_identity.empty()) {
    bool bound = false;
    for (const std::string& id : certs)
      bound = bound || id == entry->cert_identity;
    if (!bound) {
      return Deny(method, peer, who,
                  absl::UnauthenticatedError(absl::StrCat(
                      "token '", entry->name,
                      "' is bound to the client certificate identity '",
                      entry->cert_identity,
                      "', which this connection did not present")));
    }
  }
  if (!RoleMayCall(entry->role, rpc)) {
    return Deny(method, peer, who,
                absl::PermissionDeniedError(
                    absl::StrCat("role ", RoleName(entry->role), " (token '",
                                 entry->name, "') may not call ", method)));
  }
  Caller caller;
  caller.name = entry->name;
  caller.role = entry->role;
  caller.authenticated = true;
  return caller;
}

absl::StatusOr<Caller> Authorizer::CheckHttpRead(const std::string& path,
                                                 const char* authorization,
                                                 const std::string& peer) {
  const std::string method = absl::StrCat("GET ", path);
  std::string who = "dashboard";
  if (authorization == nullptr) {
    return Deny(method, peer, who,
                absl::UnauthenticatedError(
                    "no bearer token: this dashboard needs `Authorization: "
                    "Bearer TOKEN` with a reader, submitter or admin token"));
  }
  absl::StatusOr<TokenEntry> entry =
      FindBearer(authorization, method, peer, who);
  if (!entry.ok()) return entry.status();
  who = absl::StrCat("token '", entry->name, "', role ", RoleName(entry->role),
                     ", dashboard");
  if (!entry->cert_identity.empty()) {
    return Deny(method, peer, who,
                absl::UnauthenticatedError(absl::StrCat(
                    "token '", entry->name,
                    "' is bound to a client certificate identity, which the "
                    "dashboard does not ask for; use an unbound token")));
  }
  // The dashboard shows what GetSweep, ListSweeps, ListResults and
  // ListWorkers return.
  if (!RoleMayCall(entry->role, Rpc::kListSweeps)) {
    return Deny(method, peer, who,
                absl::PermissionDeniedError(absl::StrCat(
                    "role ", RoleName(entry->role), " (token '", entry->name,
                    "') may not read the dashboard")));
  }
  Caller caller;
  caller.name = entry->name;
  caller.role = entry->role;
  caller.authenticated = true;
  return caller;
}

absl::StatusOr<Caller> Authorizer::Check(const grpc::CallbackServerContext& ctx,
                                         Rpc rpc) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  return Check(rpc, ctx.client_metadata(), auth.get(), ctx.peer());
}

}  // namespace sweepd
