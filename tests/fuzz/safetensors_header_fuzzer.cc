// libFuzzer target for the safetensors header parser: any byte string is a
// candidate file. Checks the parser never crashes and that an accepted file
// satisfies the format's invariants (tensors tile the data section exactly,
// byte lengths match shape x dtype size).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::vector<sweepd::TensorView> tensors;
  std::map<std::string, std::string> metadata;
  const absl::Status status = sweepd::SafetensorsFile::ParseHeader(
      bytes, "fuzz-input", &tensors, &metadata);
  if (!status.ok()) {
    // Errors always name the file.
    if (status.message().find("fuzz-input") == absl::string_view::npos)
      std::abort();
    return 0;
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  const uint8_t* section = data + 8 + header_len;
  const uint8_t* expected = section;
  for (const sweepd::TensorView& t : tensors) {
    if (t.data != expected) std::abort();
    if (static_cast<uint64_t>(t.numel()) * sweepd::StDtypeSize(t.dtype) !=
        t.nbytes)
      std::abort();
    expected += t.nbytes;
  }
  if (expected != data + size) std::abort();
  return 0;
}
