// ArtifactService: the artifact side of sweepd (docs/ARTIFACTS.md): the
// ListArtifacts, FetchArtifact and CollectArtifactGarbage handlers of the
// Coordinator service, and the check of the artifacts a worker's result
// references before the result is recorded. The CoordinatorServer
// (service.h) authorises each call and hands it here; the handlers run their
// ledger reads and file I/O on the server's executor pool, never on a gRPC
// reaction.
//
// Without a store (sweepd has no --artifact-root) ListArtifacts still lists
// what results reference, FetchArtifact and CollectArtifactGarbage fail with
// FAILED_PRECONDITION, and reports are recorded unchecked.
//
// Ownership: borrows the Ledger and the ThreadPool (they outlive it); shares
// the store. Thread-safe.
#ifndef SWEEPD_COORDINATOR_ARTIFACT_SERVICE_H_
#define SWEEPD_COORDINATOR_ARTIFACT_SERVICE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/artifact_store.h"
#include "coordinator/ledger.h"
#include "coordinator/thread_pool.h"
#include "grpcpp/grpcpp.h"
#include "sweepd/v1/coordinator.pb.h"

namespace sweepd {

class ArtifactService {
 public:
  // `store` may be null (no --artifact-root). With `rehash_reported`, a
  // reported artifact's content is hashed too, not only its size checked.
  ArtifactService(Ledger* ledger, ThreadPool* executor,
                  std::shared_ptr<ArtifactStore> store, bool rehash_reported);

  // The handlers. `admitted` is the outcome of the server's authorisation
  // (and draining) check: a call that was not admitted is finished with it.
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const v1::ListArtifactsRequest* req,
                                 v1::ListArtifactsResponse* resp,
                                 const absl::Status& admitted);
  grpc::ServerWriteReactor<v1::ArtifactChunk>* Fetch(
      grpc::CallbackServerContext* ctx, const v1::FetchArtifactRequest* req,
      const absl::Status& admitted);
  grpc::ServerUnaryReactor* CollectGarbage(
      grpc::CallbackServerContext* ctx,
      const v1::CollectArtifactGarbageRequest* req,
      v1::CollectArtifactGarbageResponse* resp, const absl::Status& admitted);

  // Whether `report` must pass CheckReport before it is recorded: there is a
  // store and the report is a result that references artifacts.
  bool NeedsCheck(const ResultReport& report) const;
  // Checks every artifact the result references (ArtifactStore::Check: the
  // object exists with the reported size; hashed with rehash_reported). One
  // that fails turns the report into a failure naming the artifact: retryable
  // when it is missing or differs (a torn or not yet visible write; the task
  // runs again), permanent for a reference that is not an object path of the
  // store. So no committed result references a missing object. Touches the
  // file system: call it on the executor.
  void CheckReport(ResultReport* report) const;

 private:
  Ledger* const ledger_;
  ThreadPool* const executor_;
  const std::shared_ptr<ArtifactStore> store_;
  const bool rehash_reported_;
};

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_ARTIFACT_SERVICE_H_
