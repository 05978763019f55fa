#include "proto/grpc_status.h"

#include <string>

#include "common/error_reason.h"
#include "sweepd/v1/errors.pb.h"

namespace sweepd {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  const std::string message(status.message());
  const std::string reason = ErrorReasonOf(status);
  if (reason.empty()) return grpc::Status(code, message);
  sweepd::v1::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain(kErrorDomain);
  sweepd::v1::RpcStatus details;
  details.set_code(static_cast<int32_t>(status.code()));
  details.set_message(message);
  sweepd::v1::AnyDetail* any = details.add_details();
  any->set_type_url(kErrorInfoTypeUrl);
  any->set_value(info.SerializeAsString());
  return grpc::Status(code, message, details.SerializeAsString());
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                   status.error_message());
  if (status.error_details().empty()) return out;
  sweepd::v1::RpcStatus details;
  if (!details.ParseFromString(status.error_details())) return out;
  for (const sweepd::v1::AnyDetail& any : details.details()) {
    if (any.type_url() != kErrorInfoTypeUrl) continue;
    sweepd::v1::ErrorInfo info;
    if (info.ParseFromString(any.value()) && info.domain() == kErrorDomain &&
        !info.reason().empty()) {
      return WithErrorReason(std::move(out), info.reason());
    }
  }
  return out;
}

}  // namespace sweepd
