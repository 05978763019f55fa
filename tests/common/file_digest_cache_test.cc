// Tests of common/file_digest_cache.h: identity-keyed digests, persistence,
// merging, pruning, corrupt files and the default location.
#include "common/file_digest_cache.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/text_files.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

using ::sweepd::testing::ReadText;
using ::sweepd::testing::WriteText;

const std::string kDigestA(64, 'a');
const std::string kDigestB(64, 'b');

class FileDigestCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir =
        MakeTempDir(JoinPath(::testing::TempDir(), "file_digest_cache_test."));
    ASSERT_TRUE(dir.ok()) << dir.status();
    root_ = *dir;
    cache_ = JoinPath(root_, "nested/dir/fingerprints.json");
  }
  void TearDown() override { EXPECT_TRUE(RemoveAll(root_).ok()); }

  FileIdentity Identity(const std::string& name) {
    absl::StatusOr<FileIdentity> id = StatFileIdentity(JoinPath(root_, name));
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : FileIdentity{};
  }

  std::string root_;
  std::string cache_;
};

TEST_F(FileDigestCacheTest, IdentityIsAbsoluteAndResolved) {
  WriteText(JoinPath(root_, "f"), "hello");
  ASSERT_EQ(
      ::symlink(JoinPath(root_, "f").c_str(), JoinPath(root_, "link").c_str()),
      0);
  const FileIdentity id = Identity("f");
  EXPECT_EQ(id.size, 5u);
  EXPECT_EQ(id.path[0], '/');
  EXPECT_EQ(Identity("link"), id);
  EXPECT_EQ(StatFileIdentity(JoinPath(root_, "missing")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(StatFileIdentity(root_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(FileDigestCacheTest, RoundTripAndIdentityMismatch) {
  WriteText(JoinPath(root_, "f"), "hello");
  const FileIdentity id = Identity("f");
  {
    std::unique_ptr<FileDigestCache> cache = FileDigestCache::Load(cache_);
    EXPECT_EQ(cache->Lookup(id), std::nullopt);
    cache->Insert(id, kDigestA);
    EXPECT_THAT(cache->Lookup(id), Optional(kDigestA));
    ASSERT_TRUE(cache->Save().ok());
  }
  std::unique_ptr<FileDigestCache> cache = FileDigestCache::Load(cache_);
  EXPECT_THAT(cache->Lookup(id), Optional(kDigestA));
  for (int field = 0; field < 4; ++field) {
    FileIdentity other = id;
    if (field == 0) other.size += 1;
    if (field == 1) other.mtime_ns += 1;
    if (field == 2) other.inode += 1;
    if (field == 3) other.device += 1;
    EXPECT_EQ(cache->Lookup(other), std::nullopt) << "field " << field;
  }
}

TEST_F(FileDigestCacheTest, SaveMergesOtherWritersAndPrunesStaleEntries) {
  WriteText(JoinPath(root_, "f"), "1");
  WriteText(JoinPath(root_, "g"), "2");
  WriteText(JoinPath(root_, "gone"), "3");
  std::unique_ptr<FileDigestCache> first = FileDigestCache::Load(cache_);
  std::unique_ptr<FileDigestCache> second = FileDigestCache::Load(cache_);
  first->Insert(Identity("f"), kDigestA);
  first->Insert(Identity("gone"), kDigestA);
  ASSERT_TRUE(first->Save().ok());
  ASSERT_EQ(::unlink(JoinPath(root_, "gone").c_str()), 0);
  second->Insert(Identity("g"), kDigestB);
  ASSERT_TRUE(second->Save().ok());
  const std::string text = ReadText(cache_);
  EXPECT_THAT(text, HasSubstr(Identity("f").path));
  EXPECT_THAT(text, HasSubstr(Identity("g").path));
  EXPECT_THAT(text, ::testing::Not(HasSubstr(JoinPath(root_, "gone"))));
  std::unique_ptr<FileDigestCache> third = FileDigestCache::Load(cache_);
  EXPECT_THAT(third->Lookup(Identity("f")), Optional(kDigestA));
  EXPECT_THAT(third->Lookup(Identity("g")), Optional(kDigestB));
  // No temp files are left behind.
  absl::StatusOr<std::vector<std::string>> names = ListDir(DirName(cache_));
  ASSERT_TRUE(names.ok());
  EXPECT_THAT(*names, ::testing::ElementsAre("fingerprints.json"));
}

TEST_F(FileDigestCacheTest, CorruptFilesAndEntriesAreIgnored) {
  WriteText(JoinPath(root_, "f"), "hello");
  const FileIdentity id = Identity("f");
  ASSERT_TRUE(MakeDirs(DirName(cache_)).ok());
  for (const std::string& bad :
       {std::string("garbage"), std::string("[]"),
        std::string("{\"format\": \"other\", \"files\": {}}"),
        std::string("{\"format\": \"sweepd-file-digests-v1\"}")}) {
    WriteText(cache_, bad);
    std::unique_ptr<FileDigestCache> cache = FileDigestCache::Load(cache_);
    EXPECT_EQ(cache->Lookup(id), std::nullopt) << bad;
  }
  // One malformed entry does not spoil the others.
  WriteText(cache_,
            "{\"format\": \"sweepd-file-digests-v1\", \"files\": {"
            "\"/x\": {\"size\": \"big\"},"
            "\"" +
                id.path + "\": {\"size\": " + std::to_string(id.size) +
                ", \"mtime_ns\": " + std::to_string(id.mtime_ns) +
                ", \"inode\": " + std::to_string(id.inode) +
                ", \"device\": " + std::to_string(id.device) +
                ", \"sha256\": \"" + kDigestB + "\"}}}");
  EXPECT_THAT(FileDigestCache::Load(cache_)->Lookup(id), Optional(kDigestB));
}

// Saves an environment variable and puts it back when destroyed.
class ScopedEnv {
 public:
  explicit ScopedEnv(const char* name) : name_(name) {
    const char* v = std::getenv(name);
    if (v != nullptr) value_ = v;
    was_set_ = v != nullptr;
  }
  ~ScopedEnv() {
    if (was_set_) {
      ::setenv(name_, value_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string value_;
  bool was_set_ = false;
};

TEST_F(FileDigestCacheTest, DefaultPath) {
  ScopedEnv a("SWEEPD_FINGERPRINT_CACHE"), b("XDG_CACHE_HOME"), c("HOME");
  ::setenv("SWEEPD_FINGERPRINT_CACHE", "/some/where.json", 1);
  EXPECT_EQ(DefaultFileDigestCachePath(), "/some/where.json");
  ::setenv("SWEEPD_FINGERPRINT_CACHE", "off", 1);
  EXPECT_EQ(DefaultFileDigestCachePath(), "");
  ::unsetenv("SWEEPD_FINGERPRINT_CACHE");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(DefaultFileDigestCachePath(), "/xdg/sweepd/fingerprints.json");
  ::unsetenv("XDG_CACHE_HOME");
  ::setenv("HOME", "/home/u", 1);
  EXPECT_EQ(DefaultFileDigestCachePath(),
            "/home/u/.cache/sweepd/fingerprints.json");
  ::unsetenv("HOME");
  EXPECT_EQ(DefaultFileDigestCachePath(), "");
}

}  // namespace
}  // namespace sweepd
