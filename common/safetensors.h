// Safetensors reader and writer (https://github.com/huggingface/safetensors
// format).
//
// SafetensorsFile memory-maps one file read-only and validates its header as
// the format requires: 8-byte little-endian header length (capped at
// kMaxHeaderBytes), a JSON object, no duplicate names, every tensor's
// data_offsets inside the data section, no overlaps and no holes between
// tensors, byte length == product(shape) * dtype size, supported dtype. Errors
// are INVALID_ARGUMENT / NOT_FOUND naming the file and the tensor.
// Checkpoint opens a model directory: model.safetensors, or
// model.safetensors.index.json and the shards it names. Tensor data is read in
// place from the mapping (no copy), so a tensor-parallel rank can read only its
// own slice of a weight.
//
// Ownership: Checkpoint owns its files; TensorView::data points into a mapping
// and stays valid while the owning SafetensorsFile/Checkpoint lives. All const
// methods are thread-safe.
#ifndef SWEEPD_COMMON_SAFETENSORS_H_
#define SWEEPD_COMMON_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sweepd {

enum class StDtype {
  kBool,
  kU8,
  kI8,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kI64,
  kU64,
  kF64
};

// "F32", "BF16", ... as written in headers.
const char* StDtypeName(StDtype dtype);
absl::StatusOr<StDtype> ParseStDtype(absl::string_view name);
size_t StDtypeSize(StDtype dtype);

inline constexpr uint64_t kMaxHeaderBytes = 100 * 1024 * 1024;

struct TensorView {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping
  size_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);
  // Parses and validates a header given the whole file's bytes (used by Open
  // and the fuzzer). On success fills `tensors` (sorted by offset) and
  // `metadata`.
  static absl::Status ParseHeader(absl::string_view file_bytes,
                                  const std::string& path,
                                  std::vector<TensorView>* tensors,
                                  std::map<std::string, std::string>* metadata);
  virtual ~SafetensorsFile() = default;

  virtual const std::string& path() const = 0;
  virtual const std::map<std::string, std::string>& metadata() const = 0;
  virtual const std::vector<TensorView>& tensors() const = 0;
  // nullptr if absent.
  virtual const TensorView* Find(absl::string_view name) const = 0;
  // The raw header bytes (JSON), for fingerprints.
  virtual absl::string_view header() const = 0;
};

class Checkpoint {
 public:
  // `dir` holds model.safetensors or model.safetensors.index.json (+ shards).
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(
      const std::string& dir);
  virtual ~Checkpoint() = default;
  virtual std::vector<std::string> names() const = 0;
  virtual const TensorView* Find(absl::string_view name) const = 0;
  // NOT_FOUND naming the tensor and the directory.
  virtual absl::StatusOr<const TensorView*> Get(
      absl::string_view name) const = 0;
  virtual const std::vector<std::unique_ptr<SafetensorsFile>>& files()
      const = 0;
};

// Collects tensors (copied) and writes them as one file or as shards with an
// index.
class SafetensorsWriter {
 public:
  absl::Status Add(const std::string& name, StDtype dtype,
                   std::vector<int64_t> shape, const void* data, size_t nbytes);
  void SetMetadata(const std::string& key, const std::string& value);
  // Writes `path` (atomic: temp file + rename).
  absl::Status WriteFile(const std::string& path) const;
  // Writes model-0000i-of-0000n.safetensors files of at most `max_shard_bytes`
  // each plus model.safetensors.index.json into `dir`; one shard is written as
  // model.safetensors.
  absl::Status WriteCheckpoint(const std::string& dir,
                               uint64_t max_shard_bytes) const;

 private:
  struct Entry {
    std::string name;
    StDtype dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// bfloat16 <-> float, round-to-nearest-even (NaN stays NaN).
uint16_t FloatToBf16(float f);
float Bf16ToFloat(uint16_t b);
// IEEE half -> float (exact).
float F16ToFloat(uint16_t h);

// Copies a tensor's elements out as float (F32, F64, BF16, F16) or int64 (any
// integer dtype and BOOL). INVALID_ARGUMENT naming the tensor for other dtypes.
absl::StatusOr<std::vector<float>> TensorToFloat(const TensorView& t);
absl::StatusOr<std::vector<int64_t>> TensorToInt64(const TensorView& t);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_SAFETENSORS_H_
