// Field checks the planner's validators share (coordinator/planner.cc,
// job_validation.cc, intervention_validation.cc, grid_expansion.cc,
// spec_paths.cc and calibration_validation.cc): what the planner knows of the
// model, range and selector checks, and TextWindowing defaults. Errors are
// INVALID_ARGUMENT "<field>: <what is wrong>". Internal to coordinator/.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COORDINATOR_SPEC_CHECKS_H_
#define SWEEPD_COORDINATOR_SPEC_CHECKS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/repeated_field.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd::internal {

inline constexpr int kDefaultContextLength = 512;
inline constexpr int kMaxContextLength = 1 << 20;

// What the planner knows of the model: the counts layer and head indices are
// checked against.
struct ModelShape {
  bool known = false;
  int num_layers = 0;
  int num_heads = 0;
  int hidden_size = 0;  // 0 = unknown
};

absl::Status Invalid(absl::string_view field, absl::string_view message);

// Parses a non-negative decimal integer with nothing else around it.
bool ParseIndex(absl::string_view text, int64_t* out);
// "[0, n)".
std::string RangeText(int n);

absl::Status CheckRange(int64_t value, int64_t lo, int64_t hi,
                        absl::string_view field);
absl::Status CheckFraction(double value, absl::string_view field);
// Fills "on" when empty; "on" or "off".
absl::Status ValidateBos(std::string* bos, absl::string_view field);
// Fills the defaults (context_length 512, stride = context_length, bos "on")
// and checks the ranges; `prefix` names the field ("eval.windowing").
absl::Status ValidateWindowing(sweepd::v1::TextWindowing* w,
                               const std::string& prefix);
// A layer selector in canonical form ("all" -> "0-59").
absl::StatusOr<std::string> CanonicalLayers(const std::string& selector,
                                            const ModelShape& m,
                                            const std::string& field);
absl::Status CheckLayer(int layer, const ModelShape& m,
                        const std::string& field);
// Validates head indices, then sorts and de-duplicates them.
absl::Status CheckHeads(google::protobuf::RepeatedField<int32_t>* heads,
                        const ModelShape& m, const std::string& field);

}  // namespace sweepd::internal

#endif  // SWEEPD_COORDINATOR_SPEC_CHECKS_H_
