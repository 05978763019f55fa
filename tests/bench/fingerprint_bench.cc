// fingerprint_bench: how long the model fingerprint
// (common/model_fingerprint.h) takes on a multi-GB checkpoint, cold and cached.
//
// Writes a checkpoint of random bytes (config.json plus --shards safetensors
// files of one U8 tensor each, --gib GiB in all) into a fresh temp directory
// (or --dir), then times:
//   cold    - empty digest cache; before it, every file is fdatasync'ed and
//             dropped from the OS page cache with posix_fadvise(DONTNEED) (no
//             root needed; the kernel may keep some pages: the share still
//             resident, measured with mincore, is printed);
//   warm    - no digest cache, files now in the page cache if memory allows
//             (the hashing rate itself);
//   cached  - the digest cache written by the cold run: only stat and header
//             checks, no file is read.
// The checkpoint is removed at the end unless --keep.
//
//   fingerprint_bench --gib 2 --shards 4
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "common/model_fingerprint.h"

ABSL_FLAG(double, gib, 4.0, "Checkpoint size in GiB (all shards together).");
ABSL_FLAG(int, shards, 4, "Number of *.safetensors files.");
ABSL_FLAG(int, threads, 0,
          "Hashing threads (0 = hardware threads, at most 8).");
ABSL_FLAG(std::string, dir, "",
          "Directory to write the checkpoint into (default: a fresh temp "
          "directory under $TMPDIR or /tmp).");
ABSL_FLAG(bool, keep, false, "Keep the checkpoint afterwards.");

namespace sweepd {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "fingerprint_bench: %s\n", what.c_str());
  std::exit(1);
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since)
      .count();
}

// One safetensors file holding the U8 tensor "w" of `bytes` random bytes.
void WriteShard(const std::string& path, uint64_t bytes, uint64_t seed) {
  std::string header =
      absl::StrCat("{\"w\":{\"dtype\":\"U8\",\"shape\":[", bytes,
                   "],\"data_offsets\":[0,", bytes, "]}}");
  while ((8 + header.size()) % 8 != 0) header.push_back(' ');
  std::string head(8, '\0');
  for (int i = 0; i < 8; ++i) {
    head[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  }
  head += header;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) Die(absl::StrCat("cannot create ", path));
  if (std::fwrite(head.data(), 1, head.size(), f) != head.size()) {
    Die(absl::StrCat("write ", path));
  }
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> block((8 << 20) / 8);
  for (uint64_t left = bytes; left > 0;) {
    for (uint64_t& v : block) v = rng();
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>(left, block.size() * sizeof(uint64_t)));
    if (std::fwrite(block.data(), 1, n, f) != n) {
      Die(absl::StrCat("write ", path));
    }
    left -= n;
  }
  if (std::fclose(f) != 0) Die(absl::StrCat("close ", path));
}

// Flushes `path` and asks the kernel to drop its pages from the page cache.
void DropFromPageCache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  (void)::fdatasync(fd);
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// Bytes of `path` resident in the page cache (mincore).
uint64_t ResidentBytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return 0;
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size == 0) {
    ::close(fd);
    return 0;
  }
  void* map = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return 0;
  const long page = ::sysconf(_SC_PAGESIZE);
  std::vector<unsigned char> vec((st.st_size + page - 1) / page);
  uint64_t resident = 0;
  if (::mincore(map, st.st_size, vec.data()) == 0) {
    for (unsigned char v : vec) resident += (v & 1) ? page : 0;
  }
  ::munmap(map, st.st_size);
  return std::min<uint64_t>(resident, st.st_size);
}

int Main() {
  const double gib = absl::GetFlag(FLAGS_gib);
  const int shards = absl::GetFlag(FLAGS_shards);
  if (gib <= 0 || shards <= 0) Die("--gib and --shards must be positive");
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    absl::StatusOr<std::string> made = MakeTempDir(
        JoinPath(tmp != nullptr && *tmp ? tmp : "/tmp", "fingerprint_bench."));
    if (!made.ok()) Die(made.status().ToString());
    dir = *made;
  } else if (absl::Status s = MakeDirs(dir); !s.ok()) {
    Die(s.ToString());
  }
  const std::string model = JoinPath(dir, "model");
  const std::string cache = JoinPath(dir, "cache/fingerprints.json");
  if (absl::Status s = MakeDirs(model); !s.ok()) Die(s.ToString());

  const uint64_t total = static_cast<uint64_t>(gib * (1ull << 30));
  const uint64_t per_shard = total / shards;
  std::FILE* cfg = std::fopen(JoinPath(model, "config.json").c_str(), "wb");
  if (cfg == nullptr) Die("cannot write config.json");
  std::fputs("{\"num_hidden_layers\": 2, \"num_attention_heads\": 2}\n", cfg);
  std::fclose(cfg);
  std::vector<std::string> files = {JoinPath(model, "config.json")};
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < shards; ++i) {
    const std::string path = JoinPath(
        model,
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards));
    WriteShard(path, per_shard, 1000 + i);
    files.push_back(path);
  }
  std::printf("wrote %d shards, %.2f GiB, in %.1f s into %s\n", shards,
              static_cast<double>(per_shard) * shards / (1ull << 30),
              Seconds(start), model.c_str());
  // Files modified in the last second are never cached (racy window).
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));

  ModelFingerprintOptions with_cache;
  with_cache.cache_path = cache;
  with_cache.threads = absl::GetFlag(FLAGS_threads);
  ModelFingerprintOptions no_cache = with_cache;
  no_cache.cache_path = "";

  auto run = [&](const char* label, const ModelFingerprintOptions& o) {
    auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<ModelFingerprint> fp = FingerprintModelDir(model, o);
    const double s = Seconds(t0);
    if (!fp.ok()) Die(fp.status().ToString());
    std::printf(
        "%-7s %9.1f ms  files %d, hashed %d, %.2f GiB read, %.2f GiB/s  %s\n",
        label, s * 1e3, fp->files, fp->files_hashed,
        static_cast<double>(fp->bytes_hashed) / (1ull << 30),
        s > 0 ? static_cast<double>(fp->bytes_hashed) / (1ull << 30) / s : 0.0,
        fp->hex.c_str());
    return fp->hex;
  };

  uint64_t resident = 0, size = 0;
  for (const std::string& f : files) {
    DropFromPageCache(f);
    resident += ResidentBytes(f);
    size += *FileSize(f);
  }
  std::printf(
      "page cache before the cold run: %.1f%% of the files resident\n",
      100.0 * static_cast<double>(resident) / static_cast<double>(size));
  const std::string cold = run("cold", with_cache);
  const std::string warm = run("warm", no_cache);
  const std::string cached = run("cached", with_cache);
  if (cold != warm || cold != cached) Die("fingerprints differ between runs");

  if (!absl::GetFlag(FLAGS_keep)) {
    if (absl::Status s = RemoveAll(dir); !s.ok()) Die(s.ToString());
  }
  return 0;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Times the model fingerprint of a generated multi-GB checkpoint, cold "
      "and cached.\n  fingerprint_bench --gib 2 --shards 4");
  absl::ParseCommandLine(argc, argv);
  return sweepd::Main();
}
