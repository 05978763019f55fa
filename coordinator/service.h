// CoordinatorServer: the gRPC side of sweepd. It implements the Coordinator and
// WorkerGateway services (proto/sweepd/v1/) with the callback API (SubmitSweep
// takes its request as raw bytes, so a payload that does not parse, e.g.
// invalid UTF-8 in a string field, is answered INVALID_ARGUMENT naming the
// field instead of gRPC's bare UNIMPLEMENTED): reactions
// validate the request and hand work on — writes to the LeaseScheduler/Ledger
// (the reactor finishes in the commit callback), reads and planning to an
// internal executor thread pool — so no reaction blocks on SQLite or the file
// system. It also runs the background loops: lease expiry and WatchSweep
// updates.
//
// Ownership: borrows the Ledger, the LeaseScheduler and the Clock (they must
// outlive it); owns its threads. Time comes only from ServiceOptions::clock.
// Thread-safe. Shutdown order: BeginShutdown() (new calls get UNAVAILABLE,
// watchers end), grpc::Server::Shutdown(), then Stop().
#ifndef SWEEPD_COORDINATOR_SERVICE_H_
#define SWEEPD_COORDINATOR_SERVICE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "coordinator/authorizer.h"
#include "coordinator/ledger.h"
#include "coordinator/planner.h"
#include "coordinator/scheduler.h"
#include "grpcpp/grpcpp.h"

namespace sweepd {

struct ServiceOptions {
  // Borrowed; when lease-expiry passes are due and the time stamped on watch
  // events. The same Clock as the scheduler's (which decides expiry).
  Clock* clock = Clock::Real();
  PlannerOptions planner;
  // Threads for planning and ledger reads.
  int executor_threads = 4;
  // How often an expiry pass runs, on `clock` (the scheduler's Clock decides
  // which leases expired). The loop wakes every watch_interval_ms of real
  // time to look.
  int64_t expiry_interval_ms = 1'000;
  // How often WatchSweep streams look for changes (at most one event per
  // interval).
  int64_t watch_interval_ms = 250;
  // Largest accepted request / sent response (sweepd --max-message-bytes);
  // larger ones fail with RESOURCE_EXHAUSTED.
  int max_message_bytes = 64 << 20;
  // Borrowed; checks every call before its handler does anything
  // (coordinator/authorizer.h). Null = authorisation off: every call is let
  // through and sweeps record no submitter.
  Authorizer* authorizer = nullptr;
  // Largest accepted SweepSpec, serialized (sweepd --max-spec-bytes). A spec
  // is stored with its sweep and returned by GetSweep and WatchSweep.
  int64_t max_spec_bytes = 1 << 20;
  // Longest worker name accepted by RegisterWorker.
  size_t max_worker_name_bytes = 256;
  // The artifact store (sweepd --artifact-root; shared with the caller); null
  // = none. With it, the artifacts a reported result references are checked
  // before the result is recorded, and FetchArtifact / CollectArtifactGarbage
  // work (coordinator/artifact_service.h).
  std::shared_ptr<ArtifactStore> artifacts;
  // Hash every reported artifact instead of checking its size only (sweepd
  // --artifact-verify sha256).
  bool rehash_reported_artifacts = false;
};

class CoordinatorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Create(
      Ledger* ledger, LeaseScheduler* scheduler, const ServiceOptions& options);
  virtual ~CoordinatorServer() = default;

  // The two services to register with a grpc::ServerBuilder (owned by this
  // object).
  virtual grpc::Service* coordinator_service() = 0;
  virtual grpc::Service* worker_gateway_service() = 0;

  // Adds both services, health checking, reflection and message-size limits to
  // `builder`.
  virtual void ConfigureBuilder(grpc::ServerBuilder* builder) = 0;

  // From now on every new call fails with UNAVAILABLE and open watch streams
  // end.
  virtual void BeginShutdown() = 0;
  // Stops the background loops and the executor (after
  // grpc::Server::Shutdown()).
  virtual void Stop() = 0;

  // Calls whose handler ran past the authorisation check (all calls when
  // authorisation is off): a denied call never moves it (tests).
  virtual int64_t handler_calls() const = 0;
};

// True for "localhost", 127.0.0.0/8, "::1" and "[::1]" hosts of a HOST:PORT
// address.
bool IsLoopbackAddress(const std::string& host_port);

// Must be called once before the first grpc::ServerBuilder is made (enables
// reflection and the default health service). Idempotent.
void InitGrpcServerPlugins();

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_SERVICE_H_
