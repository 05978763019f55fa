// absl::Status <-> grpc::Status, keeping the code, the message and a sweepd
// error reason (common/error_reason.h), which travels as a google.rpc.Status
// with one google.rpc.ErrorInfo in the error details. Every sweepd gRPC
// server and client converts through these two functions.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_PROTO_GRPC_STATUS_H_
#define SWEEPD_PROTO_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace sweepd {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace sweepd

#endif  // SWEEPD_PROTO_GRPC_STATUS_H_
