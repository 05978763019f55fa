// GoogleTest matchers for absl::Status and absl::StatusOr<T>, the one copy
// every test uses:
//
//   EXPECT_THAT(ParseThing("x"), StatusIs(absl::StatusCode::kInvalidArgument,
//                                         HasSubstr("layers")));
//   EXPECT_THAT(DoThing(), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(DoThing(), IsOk());
//
// Header-only, test code only; stateless and thread-safe.
#ifndef SWEEPD_TESTS_TESTING_STATUS_MATCHERS_H_
#define SWEEPD_TESTS_TESTING_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"

namespace sweepd::testing {

// The status of an absl::Status (itself) or of an absl::StatusOr<T>.
inline const absl::Status& StatusOf(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// Matches a Status or StatusOr with `code` and a message matching
// `message_matcher` (a string or any string matcher, e.g. HasSubstr).
MATCHER_P2(StatusIs, code, message_matcher,
           absl::StrCat("has status code ", absl::StatusCodeToString(code))) {
  const absl::Status& status = ::sweepd::testing::StatusOf(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::ExplainMatchResult(
             message_matcher, std::string(status.message()), result_listener);
}

// Matches a Status or StatusOr with `code`, whatever its message.
MATCHER_P(StatusIs, code,
          absl::StrCat("has status code ", absl::StatusCodeToString(code))) {
  const absl::Status& status = ::sweepd::testing::StatusOf(arg);
  *result_listener << "status is " << status;
  return status.code() == code;
}

// Matches an OK Status or a StatusOr holding a value.
MATCHER(IsOk, "is OK") {
  const absl::Status& status = ::sweepd::testing::StatusOf(arg);
  *result_listener << "status is " << status;
  return status.ok();
}

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_TESTING_STATUS_MATCHERS_H_
