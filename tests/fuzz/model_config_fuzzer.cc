// libFuzzer target for config.json (common/model_config.h): every input goes
// through HfConfig::Parse and ModelConfig::FromJson. Checks nothing crashes,
// that errors name the source, and that an accepted config round-trips through
// ToJson to an equal serialisation.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "common/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view json(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<sweepd::HfConfig> hf =
      sweepd::HfConfig::Parse(json, "fuzz-config");
  if (!hf.ok() &&
      hf.status().message().find("fuzz-config") == absl::string_view::npos)
    std::abort();
  const absl::StatusOr<sweepd::ModelConfig> config =
      sweepd::ModelConfig::FromJson(json, "fuzz-config");
  if (!config.ok()) {
    if (config.status().message().find("fuzz-config") ==
        absl::string_view::npos)
      std::abort();
    return 0;
  }
  if (!hf.ok()) std::abort();  // FromJson = Parse + FromHfConfig
  const std::string text = config->ToJson();
  const absl::StatusOr<sweepd::ModelConfig> again =
      sweepd::ModelConfig::FromJson(text, "fuzz-config-roundtrip");
  if (!again.ok() || again->ToJson() != text) std::abort();
  return 0;
}
