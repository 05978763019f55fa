// Status helpers shared by every component: early-return macros for absl::Status and
// absl::StatusOr, and a few constructors that attach context. Header-only, thread-safe.
#ifndef SWEEPD_COMMON_STATUS_H_
#define SWEEPD_COMMON_STATUS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define SWEEPD_STATUS_CONCAT_INNER_(a, b) a##b
#define SWEEPD_STATUS_CONCAT_(a, b) SWEEPD_STATUS_CONCAT_INNER_(a, b)

// RETURN_IF_ERROR(expr): returns the status of `expr` from the enclosing function if not ok.
#define RETURN_IF_ERROR(expr)                                    \
  do {                                                           \
    ::absl::Status sweepd_status_ = ::sweepd::AsStatus((expr));  \
    if (!sweepd_status_.ok()) return sweepd_status_;             \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): `lhs = *expr` or return expr's status.
#define ASSIGN_OR_RETURN(lhs, expr)                                              \
  SWEEPD_ASSIGN_OR_RETURN_IMPL_(SWEEPD_STATUS_CONCAT_(sweepd_statusor_, __LINE__), \
                                lhs, expr)
#define SWEEPD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace sweepd {

inline absl::Status AsStatus(absl::Status s) { return s; }
template <typename T>
absl::Status AsStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// Returns `s` with `context: ` prefixed to its message (same code); ok stays ok.
inline absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

}  // namespace sweepd

#endif  // SWEEPD_COMMON_STATUS_H_
