// UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing above
// U+10FFFF), for text that arrives from outside (spec files, RPC payloads)
// and must be refused with where it goes wrong rather than crash a JSON or
// protobuf library later.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COMMON_UTF8_H_
#define SWEEPD_COMMON_UTF8_H_

#include <cstddef>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sweepd {

// Offset of the first byte that does not start a valid UTF-8 sequence;
// nullopt when all of `text` is valid UTF-8.
std::optional<size_t> FindInvalidUtf8(absl::string_view text);

// OK for valid UTF-8; else INVALID_ARGUMENT "<what> is not valid UTF-8:
// byte 0xNN at line L, column C (offset O)" (lines and columns from 1,
// columns in bytes).
absl::Status CheckUtf8(absl::string_view text, absl::string_view what);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_UTF8_H_
