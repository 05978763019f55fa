// libFuzzer target for JSONL datasets (worker/jobs/dataset.h ReadRecords):
// each input is written to /tmp/sweepd-fuzz-dataset-<pid>.jsonl (ReadRecords
// takes a path) and read back. Checks the reader never crashes, that errors
// are INVALID_ARGUMENT naming the file, and that accepted records carry a
// line number within the file.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/jobs/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      absl::StrCat("/tmp/sweepd-fuzz-dataset-", getpid(), ".jsonl");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data),
              static_cast<std::streamsize>(size));
    if (!out) std::abort();
  }
  const absl::StatusOr<std::vector<sweepd::TextRecord>> records =
      sweepd::ReadRecords(path, /*max_records=*/0);
  if (!records.ok()) {
    if (records.status().code() != absl::StatusCode::kInvalidArgument)
      std::abort();
    if (records.status().message().find(path) == absl::string_view::npos)
      std::abort();
    return 0;
  }
  const int64_t lines = 1 + static_cast<int64_t>(std::count(
                                data, data + size, static_cast<uint8_t>('\n')));
  for (const sweepd::TextRecord& r : *records) {
    if (r.line < 1 || r.line > lines) std::abort();
    if (r.text.empty() && r.prompt.empty()) std::abort();
  }
  return 0;
}
