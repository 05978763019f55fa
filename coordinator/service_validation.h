// Shared helpers of the CoordinatorServer's RPC handlers (service.cc,
// service_sweeps.cc, service_workers.cc, service_watch.cc): request checks that
// answer INVALID_ARGUMENT naming the field, raw request parsing, Status
// conversion and the SweepStatus a summary becomes. Internal to the service;
// not for use outside coordinator/.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COORDINATOR_SERVICE_VALIDATION_H_
#define SWEEPD_COORDINATOR_SERVICE_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "coordinator/ledger.h"
#include "coordinator/scheduler.h"
#include "google/protobuf/message.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "grpcpp/grpcpp.h"
#include "sweepd/v1/coordinator.pb.h"
#include "sweepd/v1/worker.pb.h"

namespace sweepd::service_internal {

// ListResults pages stop after this many bytes of task records (and always
// hold at least one), so a page fits gRPC's default 4 MB receive limit even
// when generate results carry thousands of samples.
constexpr int64_t kListResultsPageBytes = 3 << 20;

grpc::Status ToGrpc(const absl::Status& s);

// Finishes r with UNAVAILABLE "sweepd is shutting down" (a handler's answer
// while the server drains) and returns it.
grpc::ServerUnaryReactor* FinishDraining(grpc::ServerUnaryReactor* r);

// INVALID_ARGUMENT "<field>: <what>".
grpc::Status Invalid(absl::string_view field, absl::string_view what);

// The status a summary shows (with `spec` when not null).
void FillStatus(const SweepSummary& sum, const v1::SweepSpec* spec,
                v1::SweepStatus* out);

// Checks every lease's task_key and fencing token and appends them to `out`.
grpc::Status ValidateLeases(
    const google::protobuf::RepeatedPtrField<v1::LeaseProgress>& in,
    std::vector<LeaseRef>* out);

// Parses a raw request; INVALID_ARGUMENT saying what is wrong when it does not
// parse (gRPC's own deserializer rejects it without saying why).
grpc::Status ParseRawRequest(const grpc::ByteBuffer& raw,
                             google::protobuf::Message* out);

// A ListSweeps page token: "<created_ms>:<sweep_id>" of the page's last sweep.
struct SweepCursor {
  int64_t created_ms = -1;
  std::string sweep_id;
};

}  // namespace sweepd::service_internal

#endif  // SWEEPD_COORDINATOR_SERVICE_VALIDATION_H_
