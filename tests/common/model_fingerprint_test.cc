// Tests of common/model_fingerprint.h: what the model fingerprint covers
// (tensor bytes, tokenizer.json, config, index), its documented record stream,
// and the per-file digest cache it uses.
#include "common/model_fingerprint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/text_files.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

using ::sweepd::testing::ReadText;
using ::sweepd::testing::WriteText;

// Sets the modification time of `path` to `seconds` since the epoch (+ `ns`).
void SetMtime(const std::string& path, int64_t seconds, long ns = 0) {
  struct timespec times[2];
  times[0].tv_sec = seconds;
  times[0].tv_nsec = ns;
  times[1] = times[0];
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

// Overwrites byte `offset` of `path` in place (same inode, same size).
void PokeByte(const std::string& path, uint64_t offset, char value) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::pwrite(fd, &value, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

class ModelFingerprintTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir =
        MakeTempDir(JoinPath(::testing::TempDir(), "model_fingerprint_test."));
    ASSERT_TRUE(dir.ok()) << dir.status();
    root_ = *dir;
    cache_ = JoinPath(root_, "cache/fingerprints.json");
  }
  void TearDown() override { EXPECT_TRUE(RemoveAll(root_).ok()); }

  // A model directory `name` with config.json and one safetensors file
  // holding the U8 tensor "w" = `weights`. Returns its path.
  std::string WriteModel(const std::string& name, const std::string& weights,
                         const std::string& config = "{\"a\": 1}") {
    const std::string dir = JoinPath(root_, name);
    EXPECT_TRUE(MakeDirs(dir).ok());
    WriteText(JoinPath(dir, "config.json"), config);
    SafetensorsWriter w;
    EXPECT_TRUE(w.Add("w", StDtype::kU8, {static_cast<int64_t>(weights.size())},
                      weights.data(), weights.size())
                    .ok());
    EXPECT_TRUE(w.WriteFile(JoinPath(dir, "model.safetensors")).ok());
    return dir;
  }

  // Puts every file of `dir` an hour into the past (outside the racy window).
  void Age(const std::string& dir, int64_t seconds_ago = 3600) {
    absl::StatusOr<std::vector<std::string>> names = ListDir(dir);
    ASSERT_TRUE(names.ok());
    for (const std::string& n : *names) {
      SetMtime(JoinPath(dir, n), ::time(nullptr) - seconds_ago);
    }
  }

  std::string Fp(const std::string& dir, const std::string& cache = "") {
    ModelFingerprintOptions o;
    o.cache_path = cache;
    absl::StatusOr<std::string> fp = ComputeModelFingerprint(dir, o);
    EXPECT_TRUE(fp.ok()) << fp.status();
    return fp.ok() ? *fp : "";
  }

  ModelFingerprint Full(const std::string& dir, const std::string& cache) {
    ModelFingerprintOptions o;
    o.cache_path = cache;
    absl::StatusOr<ModelFingerprint> fp = FingerprintModelDir(dir, o);
    EXPECT_TRUE(fp.ok()) << fp.status();
    return fp.ok() ? *fp : ModelFingerprint{};
  }

  std::string root_;
  std::string cache_;
};

// Defect 3: an edited checkpoint with the base's layout (same config, same
// safetensors header, same sizes) must not share the base's fingerprint.
TEST_F(ModelFingerprintTest, OneTensorByteChangesTheFingerprint) {
  const std::string base = WriteModel("base", std::string(4096, 'a'));
  std::string edited_bytes(4096, 'a');
  edited_bytes[1234] = 'b';
  const std::string edited = WriteModel("edited", edited_bytes);
  // Same layout: the headers and sizes are identical.
  ASSERT_EQ(ReadText(JoinPath(base, "model.safetensors")).size(),
            ReadText(JoinPath(edited, "model.safetensors")).size());
  EXPECT_NE(Fp(base), Fp(edited));
  // Same bytes in another directory: same fingerprint (paths are not hashed).
  EXPECT_EQ(Fp(base), Fp(WriteModel("copy", std::string(4096, 'a'))));
}

TEST_F(ModelFingerprintTest, TokenizerConfigAndIndexAreCovered) {
  const std::string dir = WriteModel("m", "abcd");
  const std::string plain = Fp(dir);
  WriteText(JoinPath(dir, "tokenizer.json"), "{\"model\": {}}");
  const std::string with_tokenizer = Fp(dir);
  EXPECT_NE(plain, with_tokenizer);
  WriteText(JoinPath(dir, "tokenizer.json"), "{\"model\": {\"x\": 1}}");
  EXPECT_NE(with_tokenizer, Fp(dir));
  ASSERT_EQ(::unlink(JoinPath(dir, "tokenizer.json").c_str()), 0);
  EXPECT_EQ(plain, Fp(dir));

  WriteText(JoinPath(dir, "config.json"), "{\"a\": 2}");
  const std::string other_config = Fp(dir);
  EXPECT_NE(plain, other_config);
  WriteText(JoinPath(dir, "model.safetensors.index.json"),
            "{\"weight_map\": {}}");
  EXPECT_NE(other_config, Fp(dir));
  // Files outside the covered set do not count.
  const std::string covered = Fp(dir);
  WriteText(JoinPath(dir, "README.md"), "notes");
  EXPECT_EQ(covered, Fp(dir));
}

// The stream documented in model_fingerprint.h, rebuilt from the files.
TEST_F(ModelFingerprintTest, MatchesTheDocumentedRecordStream) {
  const std::string dir = WriteModel("m", "0123456789");
  WriteText(JoinPath(dir, "tokenizer.json"), "{}");
  const std::string shard2 = JoinPath(dir, "b.safetensors");
  ASSERT_TRUE(CopyFile(JoinPath(dir, "model.safetensors"), shard2).ok());
  PokeByte(shard2, ReadText(shard2).size() - 1, 'x');
  auto record = [](const std::string& label, const std::string& value) {
    return absl::StrCat(label, std::string(1, '\0'), value.size(),
                        std::string(1, '\0'), value);
  };
  auto file = [&](const std::string& name) {
    const std::string bytes = ReadText(JoinPath(dir, name));
    return absl::StrCat(bytes.size(), " ", Sha256Hex(bytes));
  };
  const std::string stream =
      record("format", "sweepd-model-fingerprint-v2") +
      record("config config.json", file("config.json")) +
      record("weights b.safetensors", file("b.safetensors")) +
      record("weights model.safetensors", file("model.safetensors")) +
      record("tokenizer tokenizer.json", file("tokenizer.json"));
  EXPECT_EQ(Fp(dir), Sha256Hex(stream));
  // Any thread count gives the same answer.
  for (int threads : {1, 2, 4}) {
    ModelFingerprintOptions o;
    o.threads = threads;
    absl::StatusOr<std::string> fp = ComputeModelFingerprint(dir, o);
    ASSERT_TRUE(fp.ok()) << fp.status();
    EXPECT_EQ(*fp, Sha256Hex(stream)) << threads << " threads";
  }
}

// The cache serves a file whose identity (path, size, mtime, inode, device)
// is unchanged without reading it: an in-place edit that puts the old mtime
// back is NOT seen (the documented trade-off); touching the file is.
TEST_F(ModelFingerprintTest, CacheIsKeyedByFileIdentity) {
  const std::string dir = WriteModel("m", std::string(1000, 'a'));
  Age(dir);
  const std::string weights = JoinPath(dir, "model.safetensors");
  struct stat st;
  ASSERT_EQ(::stat(weights.c_str(), &st), 0);

  const ModelFingerprint cold = Full(dir, cache_);
  EXPECT_EQ(cold.files, 2);
  EXPECT_EQ(cold.files_hashed, 2);
  EXPECT_GT(cold.bytes_hashed, 1000u);
  EXPECT_TRUE(PathExists(cache_));

  const ModelFingerprint cached = Full(dir, cache_);
  EXPECT_EQ(cached.hex, cold.hex);
  EXPECT_EQ(cached.files_hashed, 0);
  EXPECT_EQ(cached.bytes_hashed, 0u);

  // Same size, same inode, old mtime restored: the cached digest is kept.
  PokeByte(weights, st.st_size - 1, 'z');
  SetMtime(weights, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  EXPECT_EQ(Full(dir, cache_).hex, cold.hex);
  // Without the cache the edit is seen.
  const std::string truth = Fp(dir);
  EXPECT_NE(truth, cold.hex);

  // Touching the file (a new mtime) makes it read again.
  SetMtime(weights, st.st_mtim.tv_sec - 60);
  const ModelFingerprint touched = Full(dir, cache_);
  EXPECT_EQ(touched.hex, truth);
  EXPECT_EQ(touched.files_hashed, 1);
}

// A digest the caller computed itself is used while the file's identity is the
// one it gave, and ignored once the file changed.
TEST_F(ModelFingerprintTest, KnownDigestsAreUsedWhileTheIdentityHolds) {
  const std::string dir = WriteModel("m", std::string(1000, 'a'));
  const std::string weights = JoinPath(dir, "model.safetensors");
  const std::string truth = Fp(dir);
  absl::StatusOr<FileIdentity> id = StatFileIdentity(weights);
  ASSERT_TRUE(id.ok()) << id.status();
  absl::StatusOr<std::string> digest = Sha256File(weights);
  ASSERT_TRUE(digest.ok());

  ModelFingerprintOptions o;
  o.known_digests["model.safetensors"] = {*id, *digest};
  absl::StatusOr<ModelFingerprint> known = FingerprintModelDir(dir, o);
  ASSERT_TRUE(known.ok()) << known.status();
  EXPECT_EQ(known->hex, truth);
  EXPECT_EQ(known->files_hashed, 1);  // config.json only
  EXPECT_EQ(known->bytes_hashed, 8u);

  // A wrong digest with the current identity is trusted (the caller's word):
  // this shows the file was not read.
  o.known_digests["model.safetensors"].sha256 = std::string(64, '0');
  absl::StatusOr<ModelFingerprint> trusted = FingerprintModelDir(dir, o);
  ASSERT_TRUE(trusted.ok());
  EXPECT_NE(trusted->hex, truth);

  // Once the file changes (new mtime), the entry is ignored and it is read.
  struct stat st;
  ASSERT_EQ(::stat(weights.c_str(), &st), 0);
  PokeByte(weights, st.st_size - 1, 'z');
  SetMtime(weights, st.st_mtim.tv_sec - 60);
  absl::StatusOr<ModelFingerprint> changed = FingerprintModelDir(dir, o);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(changed->hex, Fp(dir));
  EXPECT_NE(changed->hex, truth);
  EXPECT_EQ(changed->files_hashed, 2);
}

TEST_F(ModelFingerprintTest, RecentlyModifiedFilesAreNotCached) {
  const std::string dir = WriteModel("m", "abcd");
  // Modified "now": inside the racy window, so never served from the cache.
  EXPECT_EQ(Full(dir, cache_).files_hashed, 2);
  EXPECT_EQ(Full(dir, cache_).files_hashed, 2);
  Age(dir);
  EXPECT_EQ(Full(dir, cache_).files_hashed, 2);
  EXPECT_EQ(Full(dir, cache_).files_hashed, 0);
}

TEST_F(ModelFingerprintTest, CorruptCacheIsIgnored) {
  const std::string dir = WriteModel("m", "abcd");
  Age(dir);
  ASSERT_TRUE(MakeDirs(DirName(cache_)).ok());
  WriteText(cache_, "{not json");
  const ModelFingerprint fp = Full(dir, cache_);
  EXPECT_EQ(fp.hex, Fp(dir));
  EXPECT_EQ(fp.files_hashed, 2);
  // The cache was rewritten and now serves the files.
  EXPECT_EQ(Full(dir, cache_).files_hashed, 0);
  // A cache path that cannot be written is not an error either.
  WriteText(JoinPath(root_, "file"), "x");
  EXPECT_EQ(Full(dir, JoinPath(root_, "file/sub/cache.json")).hex, fp.hex);
}

TEST_F(ModelFingerprintTest, Errors) {
  const std::string trunc = JoinPath(root_, "trunc");
  ASSERT_TRUE(MakeDirs(trunc).ok());
  WriteText(JoinPath(trunc, "config.json"), "{}");
  WriteText(JoinPath(trunc, "model.safetensors"), std::string("\x02\0\0", 3));
  absl::StatusOr<std::string> fp = ComputeModelFingerprint(trunc);
  EXPECT_EQ(fp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(fp.status().message()),
              HasSubstr("model.safetensors"));

  const std::string no_weights = JoinPath(root_, "noweights");
  ASSERT_TRUE(MakeDirs(no_weights).ok());
  WriteText(JoinPath(no_weights, "config.json"), "{}");
  fp = ComputeModelFingerprint(no_weights);
  EXPECT_EQ(fp.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(fp.status().message()),
              HasSubstr("no *.safetensors"));

  const std::string no_config = JoinPath(root_, "noconfig");
  ASSERT_TRUE(MakeDirs(no_config).ok());
  fp = ComputeModelFingerprint(no_config);
  EXPECT_EQ(fp.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(fp.status().message()), HasSubstr("config.json"));
}

}  // namespace
}  // namespace sweepd
