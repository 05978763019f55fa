// libFuzzer target for the sweep spec loader: every input is parsed once as
// YAML and once as JSON. Checks the loader never crashes and that its errors
// are INVALID_ARGUMENT naming the source.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "client/spec_loader.h"

namespace {

void ParseAs(const std::string& text, sweepd::SpecFormat format) {
  const absl::StatusOr<sweepd::v1::SweepSpec> spec =
      sweepd::ParseSweepSpec(text, format, "fuzz-spec");
  if (spec.ok()) return;
  if (spec.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
  if (spec.status().message().find("fuzz-spec") == absl::string_view::npos)
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ParseAs(text, sweepd::SpecFormat::kYaml);
  ParseAs(text, sweepd::SpecFormat::kJson);
  return 0;
}
