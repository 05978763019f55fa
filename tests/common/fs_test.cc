// Tests of common/fs.h: the POSIX file-system helpers used instead of the
// standard filesystem library.
#include "common/fs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/text_files.h"

namespace sweepd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

void ExpectStatus(const absl::Status& status, absl::StatusCode code,
                  const std::vector<std::string>& substrings) {
  EXPECT_EQ(status.code(), code) << status;
  for (const std::string& s : substrings) {
    EXPECT_THAT(std::string(status.message()), HasSubstr(s));
  }
}

using ::sweepd::testing::ReadText;
using ::sweepd::testing::WriteText;

class FsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir =
        MakeTempDir(JoinPath(::testing::TempDir(), "fs_test."));
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
  }
  void TearDown() override {
    const absl::Status removed = RemoveAll(dir_);
    EXPECT_TRUE(removed.ok()) << removed;
    EXPECT_FALSE(PathExists(dir_));
  }
  std::string Path(const std::string& name) const {
    return JoinPath(dir_, name);
  }

  std::string dir_;
};

TEST(FsPathTest, JoinPath) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("/x/y", "b/c"), "/x/y/b/c");
  EXPECT_EQ(JoinPath("", "b"), "b");
  EXPECT_EQ(JoinPath("a", "/abs"), "/abs");
  EXPECT_EQ(JoinPath("a", ""), "a/");
}

TEST(FsPathTest, BaseNameAndDirName) {
  EXPECT_EQ(BaseName("a/b/c.txt"), "c.txt");
  EXPECT_EQ(BaseName("c.txt"), "c.txt");
  EXPECT_EQ(BaseName("a/b/"), "");
  EXPECT_EQ(DirName("a/b/c"), "a/b");
  EXPECT_EQ(DirName("/a/b//c"), "/a/b");
  EXPECT_EQ(DirName("a/b/"), "a");
  EXPECT_EQ(DirName("c"), ".");
  EXPECT_EQ(DirName("/c"), "/");
  EXPECT_EQ(DirName("/"), "/");
  EXPECT_EQ(DirName(""), ".");
}

TEST_F(FsTest, PathExistsAndIsDirectory) {
  WriteText(Path("file"), "x");
  ASSERT_EQ(::symlink(dir_.c_str(), Path("link_to_dir").c_str()), 0);
  ASSERT_EQ(::symlink(Path("absent").c_str(), Path("dangling").c_str()), 0);

  EXPECT_TRUE(PathExists(dir_));
  EXPECT_TRUE(IsDirectory(dir_));
  EXPECT_TRUE(PathExists(Path("file")));
  EXPECT_FALSE(IsDirectory(Path("file")));
  EXPECT_FALSE(PathExists(Path("absent")));
  EXPECT_FALSE(IsDirectory(Path("absent")));
  // Symlinks are followed.
  EXPECT_TRUE(IsDirectory(Path("link_to_dir")));
  EXPECT_FALSE(PathExists(Path("dangling")));
}

TEST_F(FsTest, MakeDirsCreatesNestedDirectories) {
  const std::string deep = Path("a/b/c");
  ASSERT_TRUE(MakeDirs(deep).ok());
  EXPECT_TRUE(IsDirectory(Path("a")));
  EXPECT_TRUE(IsDirectory(Path("a/b")));
  EXPECT_TRUE(IsDirectory(deep));
  // A trailing slash and doubled separators name the same directories.
  ASSERT_TRUE(MakeDirs(Path("a//b/d/")).ok());
  EXPECT_TRUE(IsDirectory(Path("a/b/d")));
}

TEST_F(FsTest, MakeDirsOnExistingDirectoryIsOk) {
  ASSERT_TRUE(MakeDirs(Path("x")).ok());
  WriteText(Path("x/keep"), "kept");
  const absl::Status again = MakeDirs(Path("x"));
  EXPECT_TRUE(again.ok()) << again;
  EXPECT_EQ(ReadText(Path("x/keep")), "kept");
}

TEST_F(FsTest, MakeDirsOnRegularFileNamesPath) {
  WriteText(Path("plain"), "data");
  ExpectStatus(MakeDirs(Path("plain")), absl::StatusCode::kFailedPrecondition,
               {Path("plain"), "not a directory"});
  EXPECT_EQ(ReadText(Path("plain")), "data");
}

TEST_F(FsTest, MakeDirsUnderRegularFileNamesPathAndComponent) {
  WriteText(Path("plain"), "data");
  const std::string target = Path("plain/sub/dir");
  const absl::Status status = MakeDirs(target);
  ExpectStatus(status, absl::StatusCode::kFailedPrecondition,
               {"cannot create directory " + target,
                Path("plain") + " exists and is not a directory"});
}

TEST_F(FsTest, MakeDirsRejectsEmptyPath) {
  ExpectStatus(MakeDirs(""), absl::StatusCode::kInvalidArgument,
               {"empty path"});
}

TEST_F(FsTest, RemoveAllRemovesNestedTreeButNotSymlinkTargets) {
  // Outside the tree: a directory and a file that links inside point to.
  ASSERT_TRUE(MakeDirs(Path("outside")).ok());
  WriteText(Path("outside/precious"), "keep me");
  WriteText(Path("outside_file"), "keep me too");

  const std::string tree = Path("tree");
  ASSERT_TRUE(MakeDirs(JoinPath(tree, "a/b/c")).ok());
  ASSERT_TRUE(MakeDirs(JoinPath(tree, "empty")).ok());
  WriteText(JoinPath(tree, "top.txt"), "1");
  WriteText(JoinPath(tree, "a/mid.txt"), "2");
  WriteText(JoinPath(tree, "a/b/c/deep.txt"), "3");
  WriteText(JoinPath(tree, "a/.hidden"), "4");
  ASSERT_EQ(::symlink(Path("outside").c_str(),
                      JoinPath(tree, "a/link_to_dir").c_str()),
            0);
  ASSERT_EQ(::symlink(Path("outside_file").c_str(),
                      JoinPath(tree, "a/b/link_to_file").c_str()),
            0);
  ASSERT_EQ(
      ::symlink(Path("nowhere").c_str(), JoinPath(tree, "dangling").c_str()),
      0);

  const absl::Status removed = RemoveAll(tree);
  ASSERT_TRUE(removed.ok()) << removed;
  EXPECT_FALSE(PathExists(tree));
  struct stat st;
  EXPECT_NE(::lstat(tree.c_str(), &st), 0) << "tree itself is gone";
  // The links went with the tree; what they pointed to did not.
  EXPECT_TRUE(IsDirectory(Path("outside")));
  EXPECT_EQ(ReadText(Path("outside/precious")), "keep me");
  EXPECT_EQ(ReadText(Path("outside_file")), "keep me too");
  absl::StatusOr<std::vector<std::string>> left = ListDir(dir_);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_THAT(*left, ElementsAre("outside", "outside_file"));
}

TEST_F(FsTest, RemoveAllOnSymlinkRemovesOnlyTheLink) {
  ASSERT_TRUE(MakeDirs(Path("target")).ok());
  WriteText(Path("target/file"), "x");
  ASSERT_EQ(::symlink(Path("target").c_str(), Path("link").c_str()), 0);
  ASSERT_TRUE(RemoveAll(Path("link")).ok());
  struct stat st;
  EXPECT_NE(::lstat(Path("link").c_str(), &st), 0);
  EXPECT_EQ(ReadText(Path("target/file")), "x");
}

TEST_F(FsTest, RemoveAllOnFileAndMissingPath) {
  WriteText(Path("single"), "x");
  ASSERT_TRUE(RemoveAll(Path("single")).ok());
  EXPECT_FALSE(PathExists(Path("single")));
  const absl::Status missing = RemoveAll(Path("never/was"));
  EXPECT_TRUE(missing.ok()) << missing;
}

TEST_F(FsTest, RenamePathMovesAndReplaces) {
  WriteText(Path("from"), "new");
  WriteText(Path("to"), "old contents");
  ASSERT_TRUE(RenamePath(Path("from"), Path("to")).ok());
  EXPECT_FALSE(PathExists(Path("from")));
  EXPECT_EQ(ReadText(Path("to")), "new");

  ExpectStatus(
      RenamePath(Path("from"), Path("elsewhere")), absl::StatusCode::kNotFound,
      {"rename " + Path("from") + " -> " + Path("elsewhere"), "No such file"});
}

TEST_F(FsTest, CopyFileCopiesBytesAndReplacesDestination) {
  // Larger than the copy buffer, with every byte value.
  std::string data(200'003, '\0');
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  }
  WriteText(Path("src"), data);
  ASSERT_EQ(::chmod(Path("src").c_str(), 0640), 0);
  const mode_t old_umask = ::umask(022);
  const absl::Status copied = CopyFile(Path("src"), Path("dst"));
  ::umask(old_umask);
  ASSERT_TRUE(copied.ok()) << copied;
  EXPECT_EQ(ReadText(Path("dst")), data);
  struct stat st;
  ASSERT_EQ(::stat(Path("dst").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u) << "permission bits of the source";

  // A longer existing destination is truncated to the source.
  WriteText(Path("short"), "abc");
  ASSERT_TRUE(CopyFile(Path("short"), Path("dst")).ok());
  EXPECT_EQ(ReadText(Path("dst")), "abc");
  // The source is unchanged.
  EXPECT_EQ(ReadText(Path("src")), data);
}

TEST_F(FsTest, CopyFileErrorsNamePaths) {
  ExpectStatus(CopyFile(Path("absent"), Path("dst")),
               absl::StatusCode::kNotFound,
               {"cannot copy " + Path("absent") + " to " + Path("dst"),
                "opening " + Path("absent")});
  EXPECT_FALSE(PathExists(Path("dst")));

  ASSERT_TRUE(MakeDirs(Path("dir")).ok());
  ExpectStatus(CopyFile(Path("dir"), Path("dst")),
               absl::StatusCode::kFailedPrecondition,
               {Path("dir") + " is not a regular file"});

  WriteText(Path("src"), "x");
  ExpectStatus(CopyFile(Path("src"), Path("no/such/dir/dst")),
               absl::StatusCode::kInternal,
               {"creating " + Path("no/such/dir/dst"), "No such file"});
}

TEST_F(FsTest, FileSize) {
  WriteText(Path("five"), "12345");
  WriteText(Path("empty"), "");
  absl::StatusOr<uint64_t> five = FileSize(Path("five"));
  ASSERT_TRUE(five.ok()) << five.status();
  EXPECT_EQ(*five, 5u);
  absl::StatusOr<uint64_t> empty = FileSize(Path("empty"));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, 0u);
  ExpectStatus(FileSize(Path("absent")).status(), absl::StatusCode::kNotFound,
               {Path("absent")});
  ExpectStatus(FileSize(dir_).status(), absl::StatusCode::kFailedPrecondition,
               {dir_, "is a directory"});
}

TEST_F(FsTest, ListDirReturnsSortedEntryNames) {
  WriteText(Path("b.txt"), "");
  WriteText(Path("a.txt"), "");
  WriteText(Path(".dot"), "");
  ASSERT_TRUE(MakeDirs(Path("c_dir/inner")).ok());
  absl::StatusOr<std::vector<std::string>> names = ListDir(dir_);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, ElementsAre(".dot", "a.txt", "b.txt", "c_dir"));

  ASSERT_TRUE(MakeDirs(Path("hollow")).ok());
  names = ListDir(Path("hollow"));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_TRUE(names->empty());
}

TEST_F(FsTest, ListDirErrorsNamePath) {
  ExpectStatus(ListDir(Path("absent")).status(), absl::StatusCode::kNotFound,
               {"cannot list directory " + Path("absent")});
  WriteText(Path("file"), "");
  ExpectStatus(ListDir(Path("file")).status(),
               absl::StatusCode::kFailedPrecondition,
               {"cannot list directory " + Path("file"), "Not a directory"});
}

TEST_F(FsTest, MakeTempDirCreatesDistinctDirectories) {
  const std::string prefix = Path("scratch.");
  absl::StatusOr<std::string> first = MakeTempDir(prefix);
  absl::StatusOr<std::string> second = MakeTempDir(prefix);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(*first, *second);
  EXPECT_THAT(*first, StartsWith(prefix));
  EXPECT_EQ(first->size(), prefix.size() + 6);
  EXPECT_TRUE(IsDirectory(*first));
  EXPECT_TRUE(IsDirectory(*second));
  struct stat st;
  ASSERT_EQ(::stat(first->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  ExpectStatus(
      MakeTempDir(Path("missing/dir/x.")).status(), absl::StatusCode::kInternal,
      {"cannot create temporary directory " + Path("missing/dir/x.XXXXXX")});
}

}  // namespace
}  // namespace sweepd
