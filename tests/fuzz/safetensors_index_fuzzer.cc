// libFuzzer target for model.safetensors.index.json (common/safetensors.h
// Checkpoint::Open on an indexed directory). Once per process two valid
// shards are written to /tmp/sweepd-fuzz-index-<pid>/ (tensor "a" in
// model-00001-of-00002.safetensors, "b" in model-00002-of-00002.safetensors);
// each input becomes the directory's index. Checks nothing crashes, that
// errors name the directory, and that an accepted index maps only tensors
// its shards hold.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/safetensors.h"

namespace {

std::string MakeDir() {
  const std::string dir = absl::StrCat("/tmp/sweepd-fuzz-index-", getpid());
  if (!sweepd::MakeDirs(dir).ok()) std::abort();
  const float a[2] = {1.0f, 2.0f};
  const float b[3] = {3.0f, 4.0f, 5.0f};
  sweepd::SafetensorsWriter wa;
  sweepd::SafetensorsWriter wb;
  if (!wa.Add("a", sweepd::StDtype::kF32, {2}, a, sizeof(a)).ok() ||
      !wb.Add("b", sweepd::StDtype::kF32, {3}, b, sizeof(b)).ok() ||
      !wa.WriteFile(dir + "/model-00001-of-00002.safetensors").ok() ||
      !wb.WriteFile(dir + "/model-00002-of-00002.safetensors").ok())
    std::abort();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = MakeDir();
  {
    std::ofstream out(dir + "/model.safetensors.index.json",
                      std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data),
              static_cast<std::streamsize>(size));
    if (!out) std::abort();
  }
  const absl::StatusOr<std::unique_ptr<sweepd::Checkpoint>> ckpt =
      sweepd::Checkpoint::Open(dir);
  if (!ckpt.ok()) {
    if (ckpt.status().message().find(dir) == absl::string_view::npos)
      std::abort();
    return 0;
  }
  for (const std::string& name : (*ckpt)->names()) {
    if ((name != "a" && name != "b") || (*ckpt)->Find(name) == nullptr)
      std::abort();
  }
  return 0;
}
