#include "common/error_reason.h"

#include "absl/strings/cord.h"

namespace sweepd {

absl::Status WithErrorReason(absl::Status status, absl::string_view reason) {
  if (!status.ok()) status.SetPayload(kErrorInfoTypeUrl, absl::Cord(reason));
  return status;
}

std::string ErrorReasonOf(const absl::Status& status) {
  auto payload = status.GetPayload(kErrorInfoTypeUrl);
  return payload.has_value() ? std::string(*payload) : std::string();
}

}  // namespace sweepd
