#include "coordinator/model_info.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "common/model_config.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

// Headers larger than this are rejected (matches the safetensors reader's cap).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1024 * 1024;

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad())
    return absl::DataLossError(absl::StrCat("error reading ", path));
  return buf.str();
}

void HashPiece(Sha256& h, const std::string& label, const std::string& bytes) {
  h.Update(label);
  h.Update(absl::string_view("\0", 1));
  h.Update(std::to_string(bytes.size()));
  h.Update(absl::string_view("\0", 1));
  h.Update(bytes);
}

// The 8-byte length plus the JSON header of a safetensors file.
absl::StatusOr<std::string> ReadSafetensorsHeader(const std::string& path,
                                                  uint64_t file_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  if (file_size < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a safetensors file (", file_size, " bytes, need >= 8)"));
  }
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  if (!in)
    return absl::DataLossError(
        absl::StrCat(path, ": cannot read header length"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxSafetensorsHeaderBytes || header_len > file_size - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": safetensors header length ", header_len,
                     " exceeds the file size ", file_size, " or the cap"));
  }
  std::string out(reinterpret_cast<char*>(len_bytes), 8);
  out.resize(8 + header_len);
  in.read(out.data() + 8, static_cast<std::streamsize>(header_len));
  if (!in)
    return absl::DataLossError(
        absl::StrCat(path, ": truncated safetensors header"));
  return out;
}

}  // namespace

absl::StatusOr<ModelInfo> ParseModelConfig(const std::string& config_json,
                                           const std::string& source) {
  ASSIGN_OR_RETURN(HfConfig config, HfConfig::Parse(config_json, source));
  ModelInfo info;
  ASSIGN_OR_RETURN(info.num_hidden_layers,
                   config.RequiredCount("num_hidden_layers"));
  ASSIGN_OR_RETURN(info.num_attention_heads,
                   config.RequiredCount("num_attention_heads"));
  return info;
}

absl::StatusOr<std::string> ComputeModelFingerprint(const std::string& dir) {
  const std::string config_path = absl::StrCat(dir, "/config.json");
  auto config = ReadWholeFile(config_path);
  if (!config.ok()) {
    return absl::NotFoundError(
        absl::StrCat("model directory ", dir, " has no config.json"));
  }
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot list model directory ", dir,
                                            ": ", std::strerror(errno)));
  }
  std::vector<std::string> weights, indexes;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (absl::EndsWith(name, ".safetensors")) weights.push_back(name);
    if (absl::EndsWith(name, ".safetensors.index.json"))
      indexes.push_back(name);
  }
  closedir(d);
  if (weights.empty()) {
    return absl::NotFoundError(
        absl::StrCat("model directory ", dir, " has no *.safetensors file"));
  }
  std::sort(weights.begin(), weights.end());
  std::sort(indexes.begin(), indexes.end());

  Sha256 h;
  HashPiece(h, "config.json", *config);
  for (const std::string& name : weights) {
    const std::string path = absl::StrCat(dir, "/", name);
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return absl::NotFoundError(absl::StrCat(path, ": not a regular file"));
    }
    ASSIGN_OR_RETURN(
        std::string header,
        ReadSafetensorsHeader(path, static_cast<uint64_t>(st.st_size)));
    HashPiece(h, absl::StrCat("safetensors:", name, ":", st.st_size), header);
  }
  for (const std::string& name : indexes) {
    ASSIGN_OR_RETURN(std::string index,
                     ReadWholeFile(absl::StrCat(dir, "/", name)));
    HashPiece(h, absl::StrCat("index:", name), index);
  }
  return h.HexDigest();
}

absl::StatusOr<ModelInfo> ReadModelInfo(const std::string& dir) {
  const std::string config_path = absl::StrCat(dir, "/config.json");
  auto config = ReadWholeFile(config_path);
  if (!config.ok()) {
    return absl::NotFoundError(
        absl::StrCat("model directory ", dir, " has no config.json"));
  }
  ASSIGN_OR_RETURN(ModelInfo info, ParseModelConfig(*config, config_path));
  ASSIGN_OR_RETURN(info.fingerprint, ComputeModelFingerprint(dir));
  return info;
}

}  // namespace sweepd
