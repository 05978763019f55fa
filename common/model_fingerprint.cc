#include "common/model_fingerprint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/file_digest_cache.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/safetensors.h"
#include "common/status.h"

namespace sweepd {
namespace {

constexpr char kFormat[] = "sweepd-model-fingerprint-v2";
constexpr size_t kReadBlockBytes = 8 << 20;
constexpr int kMaxThreads = 8;

// One file the fingerprint covers, and what hashing it gave.
struct FileJob {
  std::string role;  // config, weights, index, tokenizer
  std::string name;  // within the directory
  std::string path;
  // Results.
  uint64_t size = 0;
  std::string sha256;
  bool hashed = false;  // read (not served from the cache)
};

// <label> NUL <len(value)> NUL <value>.
void AddRecord(Sha256& h, absl::string_view label, absl::string_view value) {
  h.Update(label);
  h.Update(absl::string_view("\0", 1));
  h.Update(std::to_string(value.size()));
  h.Update(absl::string_view("\0", 1));
  h.Update(value);
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// SHA-256 of the whole file behind `fd`, read sequentially in large blocks.
absl::StatusOr<std::string> HashFd(int fd, const std::string& path,
                                   uint64_t* bytes_read) {
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<char[]> buf(new char[kReadBlockBytes]);
  Sha256 h;
  for (;;) {
    const ssize_t n = ::read(fd, buf.get(), kReadBlockBytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(
          absl::StrCat("error reading ", path, ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    h.Update(absl::string_view(buf.get(), static_cast<size_t>(n)));
    *bytes_read += static_cast<uint64_t>(n);
  }
  return h.HexDigest();
}

// Fills job->size, sha256 and hashed, from the cache when it knows the file.
absl::Status DigestFile(FileJob* job, const ModelFingerprintOptions& options,
                        FileDigestCache* cache, int64_t started_ns,
                        uint64_t* bytes_read) {
  ASSIGN_OR_RETURN(FileIdentity before, StatFileIdentity(job->path));
  if (job->role == "weights") {
    // The reader's full header validation; the mapping is dropped at once.
    RETURN_IF_ERROR(SafetensorsFile::Open(job->path).status());
  }
  job->size = before.size;
  if (auto known = options.known_digests.find(job->name);
      known != options.known_digests.end() &&
      known->second.identity == before && !known->second.sha256.empty()) {
    job->sha256 = known->second.sha256;
    return absl::OkStatus();
  }
  if (cache != nullptr) {
    if (std::optional<std::string> hit = cache->Lookup(before)) {
      job->sha256 = *std::move(hit);
      return absl::OkStatus();
    }
  }
  const int fd = ::open(job->path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", job->path, ": ", std::strerror(errno)));
  }
  uint64_t read_now = 0;
  absl::StatusOr<std::string> digest = HashFd(fd, job->path, &read_now);
  ::close(fd);
  *bytes_read += read_now;
  if (!digest.ok()) return digest.status();
  absl::StatusOr<FileIdentity> after = StatFileIdentity(job->path);
  if (!after.ok() || *after != before || read_now != before.size) {
    return absl::FailedPreconditionError(absl::StrCat(
        job->path,
        " changed while it was being fingerprinted; fingerprint the model "
        "once it is completely written"));
  }
  job->sha256 = *std::move(digest);
  job->hashed = true;
  if (cache != nullptr && before.mtime_ns <= started_ns - kRacyWindowNs) {
    cache->Insert(before, job->sha256);
  }
  return absl::OkStatus();
}

}  // namespace

ModelFingerprintOptions ModelFingerprintOptions::WithDefaultCache() {
  ModelFingerprintOptions o;
  o.cache_path = DefaultFileDigestCachePath();
  return o;
}

absl::StatusOr<ModelFingerprint> FingerprintModelDir(
    const std::string& dir, const ModelFingerprintOptions& options) {
  const int64_t started_ns = NowNs();
  if (!PathExists(JoinPath(dir, "config.json"))) {
    return absl::NotFoundError(
        absl::StrCat("model directory ", dir, " has no config.json"));
  }
  absl::StatusOr<std::vector<std::string>> names = ListDir(dir);
  if (!names.ok()) {
    return absl::Status(names.status().code(),
                        absl::StrCat("cannot list model directory ", dir, ": ",
                                     names.status().message()));
  }
  // ListDir sorts by name, so each group below is in byte order.
  std::vector<FileJob> jobs;
  auto add = [&](const std::string& role, const std::string& name) {
    FileJob job;
    job.role = role;
    job.name = name;
    job.path = JoinPath(dir, name);
    jobs.push_back(std::move(job));
  };
  add("config", "config.json");
  for (const std::string& n : *names) {
    if (absl::EndsWith(n, ".safetensors")) add("weights", n);
  }
  if (jobs.size() == 1) {
    return absl::NotFoundError(
        absl::StrCat("model directory ", dir, " has no *.safetensors file"));
  }
  for (const std::string& n : *names) {
    if (absl::EndsWith(n, ".safetensors.index.json")) add("index", n);
  }
  if (std::binary_search(names->begin(), names->end(), "tokenizer.json")) {
    add("tokenizer", "tokenizer.json");
  }

  std::unique_ptr<FileDigestCache> cache;
  if (!options.cache_path.empty()) {
    cache = FileDigestCache::Load(options.cache_path);
  }

  // A small pool: each thread takes the next file until none is left or one
  // failed. Largest files first, so one big shard does not start last.
  std::vector<size_t> order(jobs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::vector<uint64_t> sizes(jobs.size(), 0);
  for (size_t i = 0; i < jobs.size(); ++i) {
    struct stat st;
    if (::stat(jobs[i].path.c_str(), &st) == 0) sizes[i] = st.st_size;
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  int threads =
      options.threads > 0
          ? options.threads
          : std::min<int>(kMaxThreads,
                          std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min<int>(threads, static_cast<int>(jobs.size()));
  std::vector<absl::Status> status(jobs.size());
  std::vector<uint64_t> bytes(threads, 0);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto work = [&](int t) {
    for (size_t k; !failed.load() && (k = next.fetch_add(1)) < order.size();) {
      const size_t i = order[k];
      status[i] =
          DigestFile(&jobs[i], options, cache.get(), started_ns, &bytes[t]);
      if (!status[i].ok()) failed.store(true);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (std::thread& th : pool) th.join();
  for (const absl::Status& s : status) RETURN_IF_ERROR(s);

  if (cache != nullptr) {
    if (absl::Status s = cache->Save(); !s.ok()) {
      SWEEPD_LOG(WARNING) << "model fingerprint of " << dir
                          << ": cache not saved: " << s;
    }
  }

  ModelFingerprint out;
  Sha256 h;
  AddRecord(h, "format", kFormat);
  for (const FileJob& job : jobs) {
    AddRecord(h, absl::StrCat(job.role, " ", job.name),
              absl::StrCat(job.size, " ", job.sha256));
    ++out.files;
    if (job.hashed) ++out.files_hashed;
  }
  for (uint64_t b : bytes) out.bytes_hashed += b;
  out.hex = h.HexDigest();
  return out;
}

absl::StatusOr<std::string> ComputeModelFingerprint(
    const std::string& dir, const ModelFingerprintOptions& options) {
  ASSIGN_OR_RETURN(ModelFingerprint fp, FingerprintModelDir(dir, options));
  return fp.hex;
}

}  // namespace sweepd
