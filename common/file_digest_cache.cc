#include "common/file_digest_cache.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

using json = nlohmann::json;

constexpr char kFormat[] = "sweepd-file-digests-v1";

bool IsHexDigest(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

FileIdentity IdentityOf(const std::string& path, const struct stat& st) {
  FileIdentity id;
  id.path = path;
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 +
                st.st_mtim.tv_nsec;
  id.inode = static_cast<uint64_t>(st.st_ino);
  id.device = static_cast<uint64_t>(st.st_dev);
  return id;
}

// True if the file at id.path still has identity `id`.
bool StillSame(const FileIdentity& id) {
  struct stat st;
  if (::stat(id.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  return IdentityOf(id.path, st) == id;
}

}  // namespace

absl::StatusOr<FileIdentity> StatFileIdentity(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    if (e == ENOENT) return absl::NotFoundError(absl::StrCat("no file ", path));
    return absl::InternalError(
        absl::StrCat("stat ", path, ": ", std::strerror(e)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": not a regular file"));
  }
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) {
    return absl::InternalError(
        absl::StrCat("realpath ", path, ": ", std::strerror(errno)));
  }
  return IdentityOf(resolved, st);
}

std::string DefaultFileDigestCachePath() {
  if (const char* v = std::getenv("SWEEPD_FINGERPRINT_CACHE")) {
    const std::string s = v;
    return s == "off" ? std::string() : s;
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg == '/') {
    return absl::StrCat(xdg, "/sweepd/fingerprints.json");
  }
  if (const char* home = std::getenv("HOME"); home && *home == '/') {
    return absl::StrCat(home, "/.cache/sweepd/fingerprints.json");
  }
  return "";
}

FileDigestCache::Entries FileDigestCache::ReadEntries(const std::string& path) {
  Entries out;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno != ENOENT) {
      SWEEPD_LOG(WARNING) << "fingerprint cache " << path << " is unreadable ("
                          << std::strerror(errno) << "); ignoring it";
    }
    return out;
  }
  std::stringstream text;
  text << in.rdbuf();
  const json root =
      json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object() ||
      root.value("format", "") != kFormat || !root.contains("files") ||
      !root["files"].is_object()) {
    SWEEPD_LOG(WARNING) << "fingerprint cache " << path
                        << " is corrupt or of another format; ignoring it";
    return out;
  }
  int bad = 0;
  for (const auto& item : root["files"].items()) {
    const json& e = item.value();
    if (!e.is_object() || !e.contains("size") || !e.contains("mtime_ns") ||
        !e.contains("inode") || !e.contains("device") ||
        !e.contains("sha256") || !e["size"].is_number_unsigned() ||
        !e["mtime_ns"].is_number_integer() ||
        !e["inode"].is_number_unsigned() || !e["device"].is_number_unsigned() ||
        !e["sha256"].is_string() ||
        !IsHexDigest(e["sha256"].get<std::string>())) {
      ++bad;
      continue;
    }
    Entry entry;
    entry.id.path = item.key();
    entry.id.size = e["size"].get<uint64_t>();
    entry.id.mtime_ns = e["mtime_ns"].get<int64_t>();
    entry.id.inode = e["inode"].get<uint64_t>();
    entry.id.device = e["device"].get<uint64_t>();
    entry.sha256 = e["sha256"].get<std::string>();
    out[item.key()] = std::move(entry);
  }
  if (bad > 0) {
    SWEEPD_LOG(WARNING) << "fingerprint cache " << path << ": ignoring " << bad
                        << " malformed entries";
  }
  return out;
}

std::unique_ptr<FileDigestCache> FileDigestCache::Load(
    const std::string& path) {
  std::unique_ptr<FileDigestCache> cache(new FileDigestCache(path));
  Entries entries = ReadEntries(path);
  absl::MutexLock lock(&cache->mu_);
  cache->entries_ = std::move(entries);
  return cache;
}

std::optional<std::string> FileDigestCache::Lookup(
    const FileIdentity& id) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id.path);
  if (it == entries_.end() || it->second.id != id) return std::nullopt;
  return it->second.sha256;
}

void FileDigestCache::Insert(const FileIdentity& id,
                             const std::string& sha256_hex) {
  absl::MutexLock lock(&mu_);
  Entry entry{id, sha256_hex};
  entries_[id.path] = entry;
  inserted_[id.path] = std::move(entry);
}

absl::Status FileDigestCache::Save() {
  absl::MutexLock lock(&mu_);
  if (inserted_.empty()) return absl::OkStatus();
  // Merge into what the file holds now, keeping only entries that still
  // describe their file.
  Entries merged = ReadEntries(path_);
  for (auto& [key, entry] : inserted_) merged[key] = entry;
  json files = json::object();
  for (const auto& [key, entry] : merged) {
    if (!StillSame(entry.id)) continue;
    files[key] = {{"size", entry.id.size},
                  {"mtime_ns", entry.id.mtime_ns},
                  {"inode", entry.id.inode},
                  {"device", entry.id.device},
                  {"sha256", entry.sha256}};
  }
  const json root = {{"format", kFormat}, {"files", files}};

  const std::string dir = DirName(path_);
  if (absl::Status s = MakeDirs(dir); !s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat("fingerprint cache ", path_, ": ", s.message()));
  }
  static std::atomic<uint64_t> counter{0};
  const std::string tmp =
      absl::StrCat(path_, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << root.dump(1) << "\n";
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::InternalError(
          absl::StrCat("fingerprint cache: cannot write ", tmp));
    }
  }
  if (absl::Status s = RenamePath(tmp, path_); !s.ok()) {
    std::remove(tmp.c_str());
    return absl::Status(s.code(),
                        absl::StrCat("fingerprint cache: ", s.message()));
  }
  inserted_.clear();
  return absl::OkStatus();
}

}  // namespace sweepd
