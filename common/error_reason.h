// Machine-readable error reasons: a caller that must act on a particular error
// (re-register an unknown worker, ...) reads its reason, never its wording.
// The reason travels as an absl::Status payload here and as a
// google.rpc.ErrorInfo in gRPC's error details (proto/grpc_status.h).
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COMMON_ERROR_REASON_H_
#define SWEEPD_COMMON_ERROR_REASON_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sweepd {

// The coordinator does not know this worker id (it restarted on a ledger
// without the registration, or expired the worker): register again.
inline constexpr char kReasonUnknownWorker[] = "UNKNOWN_WORKER";

// ErrorInfo.domain of sweepd's reasons.
inline constexpr char kErrorDomain[] = "sweepd";

// The absl payload type URL under which the reason is kept (the payload is the
// reason text).
inline constexpr char kErrorInfoTypeUrl[] =
    "type.googleapis.com/google.rpc.ErrorInfo";

// `status` with `reason` attached (an OK status stays OK).
absl::Status WithErrorReason(absl::Status status, absl::string_view reason);

// The attached reason, or "" when there is none.
std::string ErrorReasonOf(const absl::Status& status);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_ERROR_REASON_H_
