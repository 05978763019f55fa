// Safetensors reader and writer; see safetensors.h for the contract.
#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

using json = nlohmann::json;

constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kSingleFile = "model.safetensors";

struct DtypeInfo {
  StDtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {StDtype::kBool, "BOOL", 1}, {StDtype::kU8, "U8", 1},
    {StDtype::kI8, "I8", 1},     {StDtype::kI16, "I16", 2},
    {StDtype::kU16, "U16", 2},   {StDtype::kF16, "F16", 2},
    {StDtype::kBF16, "BF16", 2}, {StDtype::kI32, "I32", 4},
    {StDtype::kU32, "U32", 4},   {StDtype::kF32, "F32", 4},
    {StDtype::kI64, "I64", 8},   {StDtype::kU64, "U64", 8},
    {StDtype::kF64, "F64", 8},
};

const DtypeInfo& Info(StDtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) return d;
  }
  SWEEPD_CHECK(false) << "unknown StDtype " << static_cast<int>(dtype);
  return kDtypes[0];
}

absl::Status Bad(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors file ", path, ": ", what));
}

absl::Status BadTensor(const std::string& path, absl::string_view tensor,
                       absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      "safetensors file ", path, ": tensor '", tensor, "': ", what));
}

uint64_t ReadLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

void AppendLe64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i)
    out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Parses `text` as JSON and reports the first duplicate key of any object
// (nlohmann keeps the last value of a duplicate silently, so it is detected
// with the parser callback).
absl::Status ParseJsonNoDuplicates(absl::string_view text,
                                   const std::string& path, json* out) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event,
                                         json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string()) {
          const std::string& key = parsed.get_ref<const std::string&>();
          if (!open_objects.back().insert(key).second && duplicate.empty())
            duplicate = key;
        }
        break;
      default:
        break;
    }
    return true;
  };
  json parsed = json::parse(text.begin(), text.end(), callback,
                            /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Bad(path, "header is not valid JSON");
  if (!duplicate.empty()) {
    return BadTensor(path, duplicate,
                     "duplicate name in header (each key may appear once)");
  }
  *out = std::move(parsed);
  return absl::OkStatus();
}

// Reads a non-negative JSON integer (no floats, no booleans).
bool AsNonNegativeInt(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
    return true;
  }
  return false;
}

absl::Status ParseTensorEntry(const std::string& path, const std::string& name,
                              const json& entry, uint64_t data_size,
                              TensorView* view, uint64_t* begin,
                              uint64_t* end) {
  if (!entry.is_object())
    return BadTensor(path, name, "entry is not a JSON object");
  for (const auto& item : entry.items()) {
    if (item.key() != "dtype" && item.key() != "shape" &&
        item.key() != "data_offsets") {
      return BadTensor(path, name,
                       absl::StrCat("unknown field '", item.key(), "'"));
    }
  }
  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return BadTensor(path, name, "missing or non-string 'dtype'");
  }
  absl::StatusOr<StDtype> dtype = ParseStDtype(dtype_it->get<std::string>());
  if (!dtype.ok()) return BadTensor(path, name, dtype.status().message());

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return BadTensor(path, name, "missing or non-array 'shape'");
  }
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  bool overflow = false;
  bool has_zero_dim = false;
  for (const json& d : *shape_it) {
    uint64_t dim = 0;
    if (!AsNonNegativeInt(d, &dim) ||
        dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return BadTensor(
          path, name,
          absl::StrCat("shape entries must be non-negative integers, got ",
                       d.dump()));
    }
    shape.push_back(static_cast<int64_t>(dim));
    if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim)
      overflow = true;
    numel *= dim;
  }
  const size_t elem = StDtypeSize(*dtype);
  if (has_zero_dim) {  // an empty tensor: the product is 0 whatever the other
                       // dims are
    overflow = false;
    numel = 0;
  }
  if (overflow || numel > std::numeric_limits<uint64_t>::max() / elem) {
    return BadTensor(path, name,
                     "shape is too large (element count overflows)");
  }
  const uint64_t nbytes = numel * elem;

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2) {
    return BadTensor(path, name,
                     "'data_offsets' must be an array [begin, end]");
  }
  uint64_t b = 0, e = 0;
  if (!AsNonNegativeInt((*off_it)[0], &b) ||
      !AsNonNegativeInt((*off_it)[1], &e)) {
    return BadTensor(path, name,
                     "'data_offsets' entries must be non-negative integers");
  }
  if (b > e) {
    return BadTensor(path, name,
                     absl::StrCat("data_offsets begin ", b, " > end ", e));
  }
  if (e > data_size) {
    return BadTensor(
        path, name,
        absl::StrCat("data_offsets [", b, ", ", e,
                     "] outside the data section of ", data_size, " bytes"));
  }
  if (e - b != nbytes) {
    return BadTensor(
        path, name,
        absl::StrCat("byte length ", e - b, " != ", nbytes, " (shape [",
                     absl::StrJoin(shape, ", "), "] x ", elem, " bytes of ",
                     StDtypeName(*dtype), ")"));
  }
  view->name = name;
  view->dtype = *dtype;
  view->shape = std::move(shape);
  view->nbytes = static_cast<size_t>(nbytes);
  *begin = b;
  *end = e;
  return absl::OkStatus();
}

class MappedSafetensorsFile final : public SafetensorsFile {
 public:
  MappedSafetensorsFile(std::string path, void* map, size_t map_size)
      : path_(std::move(path)), map_(map), map_size_(map_size) {}
  ~MappedSafetensorsFile() override {
    if (map_ != nullptr && map_size_ > 0) munmap(map_, map_size_);
  }

  absl::Status Init() {
    absl::string_view bytes(static_cast<const char*>(map_), map_size_);
    RETURN_IF_ERROR(ParseHeader(bytes, path_, &tensors_, &metadata_));
    header_ = bytes.substr(8, static_cast<size_t>(ReadLe64(bytes.data())));
    for (size_t i = 0; i < tensors_.size(); ++i)
      by_name_.emplace(tensors_[i].name, i);
    return absl::OkStatus();
  }

  const std::string& path() const override { return path_; }
  const std::map<std::string, std::string>& metadata() const override {
    return metadata_;
  }
  const std::vector<TensorView>& tensors() const override { return tensors_; }
  const TensorView* Find(absl::string_view name) const override {
    auto it = by_name_.find(std::string(name));
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
  }
  absl::string_view header() const override { return header_; }

 private:
  std::string path_;
  void* map_;
  size_t map_size_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, size_t> by_name_;
  absl::string_view header_;
};

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("file not found: ", path));
    return absl::InvalidArgumentError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed)
    return absl::InvalidArgumentError(absl::StrCat("read error on ", path));
  return out;
}

// Writes `contents` to `path` atomically: a temp file in the same directory,
// fsync, rename.
absl::Status WriteAtomically(const std::string& path, const std::string& head,
                             const std::vector<const std::string*>& parts) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  }
  auto write_all = [&](const std::string& s) -> bool {
    size_t done = 0;
    while (done < s.size()) {
      ssize_t w = ::write(fd, s.data() + done, s.size() - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      done += static_cast<size_t>(w);
    }
    return true;
  };
  bool ok = write_all(head);
  for (const std::string* p : parts) ok = ok && write_all(*p);
  ok = ok && ::fsync(fd) == 0;
  const int saved_errno = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("writing ", tmp, " failed: ", std::strerror(saved_errno)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("rename ", tmp, " -> ", path, ": ", std::strerror(e)));
  }
  return absl::OkStatus();
}

class CheckpointImpl final : public Checkpoint {
 public:
  explicit CheckpointImpl(std::string dir) : dir_(std::move(dir)) {}

  absl::Status OpenSingle(const std::string& path) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                     SafetensorsFile::Open(path));
    for (const TensorView& t : file->tensors()) by_name_.emplace(t.name, &t);
    files_.push_back(std::move(file));
    return absl::OkStatus();
  }

  absl::Status OpenIndexed(const std::string& index_path) {
    ASSIGN_OR_RETURN(std::string text, ReadWholeFile(index_path));
    json index;
    RETURN_IF_ERROR(ParseJsonNoDuplicates(text, index_path, &index));
    if (!index.is_object())
      return Bad(index_path, "index is not a JSON object");
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) {
      return Bad(index_path, "missing or non-object 'weight_map'");
    }
    // File name -> the tensors the index says it holds.
    std::map<std::string, std::vector<std::string>> by_file;
    std::map<std::string, std::string> file_of;
    for (const auto& item : wm->items()) {
      if (!item.value().is_string()) {
        return BadTensor(index_path, item.key(),
                         "weight_map value is not a file name string");
      }
      const std::string file = item.value().get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file == "." ||
          file == "..") {
        return BadTensor(
            index_path, item.key(),
            absl::StrCat("weight_map names file '", file,
                         "', which is not a plain file name in the directory"));
      }
      by_file[file].push_back(item.key());
      file_of[item.key()] = file;
    }
    for (const auto& [file, names] : by_file) {
      const std::string path = JoinPath(dir_, file);
      absl::StatusOr<std::unique_ptr<SafetensorsFile>> opened =
          SafetensorsFile::Open(path);
      if (!opened.ok()) {
        return Annotate(
            opened.status(),
            absl::StrCat(index_path, ": shard '", file, "' (holding tensor '",
                         names.front(), "')"));
      }
      for (const std::string& name : names) {
        const TensorView* t = (*opened)->Find(name);
        if (t == nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat(index_path, ": tensor '", name, "' is mapped to '",
                           file, "' but that file does not contain it"));
        }
        by_name_.emplace(name, t);
      }
      for (const TensorView& t : (*opened)->tensors()) {
        auto it = file_of.find(t.name);
        if (it == file_of.end() || it->second != file) {
          return absl::InvalidArgumentError(absl::StrCat(
              index_path, ": tensor '", t.name, "' is stored in '", file,
              "' but weight_map ",
              it == file_of.end() ? "does not list it" : "maps it elsewhere"));
        }
      }
      files_.push_back(*std::move(opened));
    }
    return absl::OkStatus();
  }

  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    out.reserve(by_name_.size());
    for (const auto& [name, view] : by_name_) out.push_back(name);
    return out;
  }
  const TensorView* Find(absl::string_view name) const override {
    auto it = by_name_.find(std::string(name));
    return it == by_name_.end() ? nullptr : it->second;
  }
  absl::StatusOr<const TensorView*> Get(absl::string_view name) const override {
    const TensorView* t = Find(name);
    if (t == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("tensor '", name, "' not found in checkpoint ", dir_));
    }
    return t;
  }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const override {
    return files_;
  }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> by_name_;
};

std::string MakeHeader(const json& header_json) {
  std::string header = header_json.dump();  // std::map-backed: keys sorted
  // The data section must start 8-byte aligned: pad the JSON with spaces
  // (allowed whitespace).
  while ((8 + header.size()) % 8 != 0) header.push_back(' ');
  std::string head;
  AppendLe64(header.size(), &head);
  head += header;
  return head;
}

}  // namespace

const char* StDtypeName(StDtype dtype) { return Info(dtype).name; }

absl::StatusOr<StDtype> ParseStDtype(absl::string_view name) {
  for (const DtypeInfo& d : kDtypes) {
    if (name == d.name) return d.dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype '", name, "'"));
}

size_t StDtypeSize(StDtype dtype) { return Info(dtype).size; }

int64_t TensorView::numel() const {
  for (int64_t d : shape) {
    if (d == 0)
      return 0;  // validated shapes of empty tensors may have huge other dims
  }
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::Status SafetensorsFile::ParseHeader(
    absl::string_view file_bytes, const std::string& path,
    std::vector<TensorView>* tensors,
    std::map<std::string, std::string>* metadata) {
  tensors->clear();
  metadata->clear();
  if (file_bytes.size() < 8) {
    return Bad(path,
               absl::StrCat("file is ", file_bytes.size(),
                            " bytes, shorter than the 8-byte header length"));
  }
  const uint64_t header_len = ReadLe64(file_bytes.data());
  if (header_len > kMaxHeaderBytes) {
    return Bad(path, absl::StrCat("header length ", header_len,
                                  " exceeds the limit of ", kMaxHeaderBytes,
                                  " bytes"));
  }
  if (header_len > file_bytes.size() - 8) {
    return Bad(path, absl::StrCat("header length ", header_len,
                                  " runs past the end of the file (",
                                  file_bytes.size(), " bytes)"));
  }
  const absl::string_view header_text =
      file_bytes.substr(8, static_cast<size_t>(header_len));
  const uint64_t data_size = file_bytes.size() - 8 - header_len;
  const char* data = file_bytes.data() + 8 + header_len;

  json header;
  RETURN_IF_ERROR(ParseJsonNoDuplicates(header_text, path, &header));
  if (!header.is_object()) {
    return Bad(path, absl::StrCat("header is JSON ", header.type_name(),
                                  ", not an object"));
  }

  struct Placed {
    uint64_t begin, end;
    TensorView view;
  };
  std::vector<Placed> placed;
  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    if (name == "__metadata__") {
      if (!item.value().is_object())
        return Bad(path, "__metadata__ is not a JSON object");
      for (const auto& m : item.value().items()) {
        if (!m.value().is_string()) {
          return Bad(path, absl::StrCat("__metadata__ value of '", m.key(),
                                        "' is not a string"));
        }
        (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    Placed p;
    RETURN_IF_ERROR(ParseTensorEntry(path, name, item.value(), data_size,
                                     &p.view, &p.begin, &p.end));
    placed.push_back(std::move(p));
  }
  std::sort(placed.begin(), placed.end(), [](const Placed& a, const Placed& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.view.name < b.view.name;
  });
  // The tensors must tile the data section exactly: [0, e0), [e0, e1), ... up
  // to data_size.
  uint64_t expected = 0;
  const std::string* previous = nullptr;
  for (Placed& p : placed) {
    if (p.begin < expected) {
      return BadTensor(path, p.view.name,
                       absl::StrCat("data_offsets [", p.begin, ", ", p.end,
                                    "] overlap tensor '",
                                    previous ? *previous : std::string(),
                                    "' ending at ", expected));
    }
    if (p.begin > expected) {
      return BadTensor(
          path, p.view.name,
          absl::StrCat("hole of ", p.begin - expected,
                       " bytes before data_offsets [", p.begin, ", ", p.end,
                       "] (previous data ends at ", expected, ")"));
    }
    expected = p.end;
    previous = &p.view.name;
    p.view.data = reinterpret_cast<const uint8_t*>(data + p.begin);
  }
  if (expected != data_size) {
    return Bad(path,
               absl::StrCat(
                   data_size - expected, " trailing bytes after ",
                   previous ? absl::StrCat("the last tensor '", *previous, "'")
                            : std::string("the header (no tensors)"),
                   ": data section is ", data_size, " bytes, tensors cover ",
                   expected));
  }
  tensors->reserve(placed.size());
  for (Placed& p : placed) tensors->push_back(std::move(p.view));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("safetensors file not found: ", path));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot open safetensors file ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Bad(path, "not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* map = nullptr;
  if (size > 0) {
    map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      return absl::ResourceExhaustedError(absl::StrCat(
          "mmap of safetensors file ", path, " failed: ", std::strerror(e)));
    }
  }
  ::close(fd);  // the mapping stays valid
  static const char kEmpty[1] = {0};
  auto file = std::make_unique<MappedSafetensorsFile>(
      path, map != nullptr ? map : const_cast<char*>(kEmpty), size);
  RETURN_IF_ERROR(file->Init());
  return std::unique_ptr<SafetensorsFile>(std::move(file));
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(
    const std::string& dir) {
  if (!IsDirectory(dir)) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint directory not found: ", dir));
  }
  auto ckpt = std::make_unique<CheckpointImpl>(dir);
  const std::string index = JoinPath(dir, kIndexFile);
  const std::string single = JoinPath(dir, kSingleFile);
  if (PathExists(index)) {
    RETURN_IF_ERROR(ckpt->OpenIndexed(index));
  } else if (PathExists(single)) {
    RETURN_IF_ERROR(ckpt->OpenSingle(single));
  } else {
    return absl::NotFoundError(absl::StrCat("checkpoint directory ", dir,
                                            " has neither ", kSingleFile,
                                            " nor ", kIndexFile));
  }
  return std::unique_ptr<Checkpoint>(std::move(ckpt));
}

absl::Status SafetensorsWriter::Add(const std::string& name, StDtype dtype,
                                    std::vector<int64_t> shape,
                                    const void* data, size_t nbytes) {
  if (name.empty() || name == "__metadata__") {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid tensor name '", name, "'"));
  }
  for (const Entry& e : entries_) {
    if (e.name == name) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' added twice"));
    }
  }
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "': negative dimension ", d));
    }
    numel *= static_cast<uint64_t>(d);
  }
  if (numel * StDtypeSize(dtype) != nbytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "': ", nbytes, " bytes given, shape [",
                     absl::StrJoin(shape, ", "), "] of ", StDtypeName(dtype),
                     " needs ", numel * StDtypeSize(dtype)));
  }
  Entry e;
  e.name = name;
  e.dtype = dtype;
  e.shape = std::move(shape);
  e.bytes.assign(static_cast<const char*>(data), nbytes);
  entries_.push_back(std::move(e));
  return absl::OkStatus();
}

void SafetensorsWriter::SetMetadata(const std::string& key,
                                    const std::string& value) {
  metadata_[key] = value;
}

absl::Status SafetensorsWriter::WriteFile(const std::string& path) const {
  std::vector<const Entry*> sorted;
  for (const Entry& e : entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](const Entry* a, const Entry* b) { return a->name < b->name; });
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  std::vector<const std::string*> parts;
  for (const Entry* e : sorted) {
    header[e->name] = {{"dtype", StDtypeName(e->dtype)},
                       {"shape", e->shape},
                       {"data_offsets", {offset, offset + e->bytes.size()}}};
    offset += e->bytes.size();
    parts.push_back(&e->bytes);
  }
  return WriteAtomically(path, MakeHeader(header), parts);
}

absl::Status SafetensorsWriter::WriteCheckpoint(
    const std::string& dir, uint64_t max_shard_bytes) const {
  RETURN_IF_ERROR(MakeDirs(dir));
  std::vector<const Entry*> sorted;
  uint64_t total = 0;
  for (const Entry& e : entries_) {
    sorted.push_back(&e);
    total += e.bytes.size();
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const Entry* a, const Entry* b) { return a->name < b->name; });
  // Greedy packing in name order; a tensor larger than the limit gets a shard
  // of its own.
  std::vector<std::vector<const Entry*>> shards(1);
  uint64_t in_shard = 0;
  for (const Entry* e : sorted) {
    if (!shards.back().empty() &&
        in_shard + e->bytes.size() > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(e);
    in_shard += e->bytes.size();
  }
  auto write_shard = [&](const std::vector<const Entry*>& entries,
                         const std::string& path) -> absl::Status {
    SafetensorsWriter w;
    w.metadata_ = metadata_;
    for (const Entry* e : entries) {
      RETURN_IF_ERROR(
          w.Add(e->name, e->dtype, e->shape, e->bytes.data(), e->bytes.size()));
    }
    return w.WriteFile(path);
  };
  if (shards.size() == 1) {
    return write_shard(shards[0], JoinPath(dir, kSingleFile));
  }
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    RETURN_IF_ERROR(write_shard(shards[i], JoinPath(dir, file)));
    for (const Entry* e : shards[i]) weight_map[e->name] = file;
  }
  json index = {{"metadata", {{"total_size", total}}},
                {"weight_map", weight_map}};
  const std::string text = index.dump(2) + "\n";
  return WriteAtomically(JoinPath(dir, kIndexFile), text, {});
}

uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    // NaN: keep the sign, force a quiet-NaN mantissa bit so truncation cannot
    // make it inf.
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  const uint32_t lsb = (bits >> 16) & 1u;
  bits += 0x7fffu + lsb;  // round to nearest, ties to even
  return static_cast<uint16_t>(bits >> 16);
}

float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  float magnitude;
  if (exp == 0) {
    magnitude = std::ldexp(static_cast<float>(mant), -24);  // subnormal or zero
  } else if (exp == 31) {
    magnitude = mant == 0 ? std::numeric_limits<float>::infinity()
                          : std::numeric_limits<float>::quiet_NaN();
  } else {
    magnitude = std::ldexp(static_cast<float>(mant | 0x400u),
                           static_cast<int>(exp) - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &magnitude, sizeof(bits));
  bits |= sign;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

absl::StatusOr<std::vector<float>> TensorToFloat(const TensorView& t) {
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = t.data + i * StDtypeSize(t.dtype);
    switch (t.dtype) {
      case StDtype::kF32: {
        float v;
        std::memcpy(&v, p, 4);
        out[i] = v;
        break;
      }
      case StDtype::kF64: {
        double v;
        std::memcpy(&v, p, 8);
        out[i] = static_cast<float>(v);
        break;
      }
      case StDtype::kBF16: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        out[i] = Bf16ToFloat(v);
        break;
      }
      case StDtype::kF16: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        out[i] = F16ToFloat(v);
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "' has dtype ",
                         StDtypeName(t.dtype), ", not a floating-point type"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> TensorToInt64(const TensorView& t) {
  const int64_t n = t.numel();
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = t.data + i * StDtypeSize(t.dtype);
    switch (t.dtype) {
      case StDtype::kI64: {
        int64_t v;
        std::memcpy(&v, p, 8);
        out[i] = v;
        break;
      }
      case StDtype::kI32: {
        int32_t v;
        std::memcpy(&v, p, 4);
        out[i] = v;
        break;
      }
      case StDtype::kU32: {
        uint32_t v;
        std::memcpy(&v, p, 4);
        out[i] = v;
        break;
      }
      case StDtype::kI16: {
        int16_t v;
        std::memcpy(&v, p, 2);
        out[i] = v;
        break;
      }
      case StDtype::kU16: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        out[i] = v;
        break;
      }
      case StDtype::kI8:
        out[i] = static_cast<int8_t>(*p);
        break;
      case StDtype::kU8:
      case StDtype::kBool:
        out[i] = *p;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "' has dtype ",
                         StDtypeName(t.dtype), ", not an integer type"));
    }
  }
  return out;
}

}  // namespace sweepd
