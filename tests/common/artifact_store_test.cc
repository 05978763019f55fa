// Tests of common/artifact_store.h: atomic content-addressed writes, verified
// reads (DATA_LOSS on a checksum mismatch, NOT_FOUND for a missing object,
// INVALID_ARGUMENT / PERMISSION_DENIED for paths that are not objects of the
// store), checkpoint references, and what a writer killed with SIGKILL in the
// middle of a large artifact leaves behind: no object, only a temp file that
// CleanTemp removes once it is old enough on an injected clock.
#include "common/artifact_store.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/hash.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakeTempDir(::testing::TempDir() + "/artifact_store.");
    ASSERT_THAT(dir, IsOk());
    dir_ = *dir;
    root_ = dir_ + "/store";
    // "Now" is the real time of the files the test writes, moved on by hand.
    clock_ = std::make_unique<FakeClock>(Clock::Real()->NowMs());
    auto store = ArtifactStore::Open(root_, clock_.get());
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }
  void TearDown() override { ASSERT_THAT(RemoveAll(dir_), IsOk()); }

  std::vector<std::string> TmpFiles() {
    auto files = ListDir(root_ + "/tmp");
    EXPECT_THAT(files, IsOk());
    return files.ok() ? *files : std::vector<std::string>{};
  }

  void ExpectNoCheckpoint(const std::string& key) {
    auto got = store_->GetCheckpoint(key);
    ASSERT_THAT(got, IsOk());
    EXPECT_FALSE(got->has_value()) << key;
  }

  static void Overwrite(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  }

  std::string dir_;
  std::string root_;
  std::unique_ptr<FakeClock> clock_;
  std::unique_ptr<ArtifactStore> store_;
};

TEST_F(ArtifactStoreTest, WriteIsInvisibleUntilCommitThenContentAddressed) {
  auto writer = store_->NewWriter("gram/attn_heads[0]/shard0");
  ASSERT_THAT(writer, IsOk());
  ASSERT_THAT((*writer)->Append("hello "), IsOk());
  ASSERT_THAT((*writer)->Append("world"), IsOk());
  // Mid-write: nothing in objects/, one file in tmp/.
  EXPECT_THAT(*store_->List(), IsEmpty());
  EXPECT_THAT(TmpFiles(), SizeIs(1));

  auto info = (*writer)->Commit();
  ASSERT_THAT(info, IsOk());
  const std::string sha = Sha256Hex("hello world");
  EXPECT_EQ(info->sha256, sha);
  EXPECT_EQ(info->path, absl::StrCat("objects/", sha.substr(0, 2), "/", sha));
  EXPECT_EQ(info->bytes, 11);
  EXPECT_EQ(info->name, "gram/attn_heads[0]/shard0");
  EXPECT_TRUE(IsArtifactObjectPath(info->path));
  EXPECT_THAT(TmpFiles(), IsEmpty());
  auto listed = store_->List();
  ASSERT_THAT(listed, IsOk());
  ASSERT_THAT(*listed, SizeIs(1));
  EXPECT_EQ((*listed)[0].path, info->path);
  EXPECT_EQ((*listed)[0].bytes, 11);
  // The writer is spent.
  EXPECT_THAT((*writer)->Append("more"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("already committed")));
  EXPECT_THAT((*writer)->Commit(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(ArtifactStoreTest, AbandonedWriterLeavesNothing) {
  {
    auto writer = store_->NewWriter("abandoned");
    ASSERT_THAT(writer, IsOk());
    ASSERT_THAT((*writer)->Append(std::string(1 << 20, 'x')), IsOk());
  }
  EXPECT_THAT(*store_->List(), IsEmpty());
  EXPECT_THAT(TmpFiles(), IsEmpty());
}

TEST_F(ArtifactStoreTest, SameContentSamePath) {
  auto a = store_->PutBytes("a", "same bytes");
  auto b = store_->PutBytes("b", "same bytes");
  const std::string local = dir_ + "/local.bin";
  Overwrite(local, "same bytes");
  auto c = store_->PutFile("c", local);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(a->path, b->path);
  EXPECT_EQ(a->path, c->path);
  EXPECT_EQ(a->sha256, c->sha256);
  EXPECT_EQ(c->name, "c");
  EXPECT_THAT(*store_->List(), SizeIs(1));
  auto other = store_->PutBytes("d", "other bytes");
  ASSERT_THAT(other, IsOk());
  EXPECT_NE(other->path, a->path);
  EXPECT_THAT(*store_->List(), SizeIs(2));
  EXPECT_THAT(store_->PutFile("e", dir_ + "/missing.bin"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.bin")));
}

TEST_F(ArtifactStoreTest, ReadsVerifyTheChecksum) {
  auto info = store_->PutBytes("weights", "the healed weights");
  ASSERT_THAT(info, IsOk());
  auto read = store_->ReadBytes(info->path, info->sha256);
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(*read, "the healed weights");
  auto resolved = store_->Resolve(info->path, "");
  ASSERT_THAT(resolved, IsOk());
  EXPECT_EQ(BaseName(*resolved), info->sha256);
  EXPECT_THAT(store_->Check(*info, /*rehash=*/true), IsOk());

  // Same size, different bytes: only a hash finds it.
  const std::string full = root_ + "/" + info->path;
  Overwrite(full, "the healed weighTs");
  EXPECT_THAT(
      store_->Resolve(info->path, info->sha256),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum mismatch")));
  EXPECT_THAT(store_->ReadBytes(info->path, ""),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr(info->path)));
  EXPECT_THAT(store_->Check(*info, /*rehash=*/false), IsOk());
  EXPECT_THAT(store_->Check(*info, /*rehash=*/true),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("\"weights\"")));
  // A truncated object fails the cheap check too.
  Overwrite(full, "the healed");
  EXPECT_THAT(store_->Check(*info, /*rehash=*/false),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("has 10 bytes, the reference says 18")));
  EXPECT_THAT(store_->ReadBytes(info->path, ""),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(ArtifactStoreTest, MissingObjectIsNotFound) {
  const std::string sha = Sha256Hex("never written");
  const std::string path = absl::StrCat("objects/", sha.substr(0, 2), "/", sha);
  EXPECT_THAT(store_->Resolve(path, sha),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
  EXPECT_THAT(store_->ReadBytes(path, ""),
              StatusIs(absl::StatusCode::kNotFound));
  ArtifactInfo ref{"activations", path, 12, sha};
  EXPECT_THAT(store_->Check(ref, false),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("artifact \"activations\"")));
}

TEST_F(ArtifactStoreTest, RefusesPathsThatAreNotObjectsOfTheStore) {
  auto info = store_->PutBytes("x", "x");
  ASSERT_THAT(info, IsOk());
  const std::string sha = info->sha256;
  const std::vector<std::string> bad = {
      "",
      "../etc/passwd",
      "/etc/passwd",
      "objects/../../etc/passwd",
      absl::StrCat("/", info->path),
      absl::StrCat("objects/", sha.substr(0, 2), "/", sha, "/"),
      absl::StrCat("objects/", sha.substr(0, 2), "/", sha.substr(0, 63)),
      absl::StrCat("objects/zz/", sha),  // prefix differs
      absl::StrCat("objects/", sha.substr(0, 2), "/../", sha.substr(0, 61)),
      absl::StrCat("tmp/", sha.substr(0, 2), "/", sha),  // not objects/
      absl::StrCat("objects/", sha.substr(0, 2), "/",
                   absl::AsciiStrToUpper(sha)),
  };
  for (const std::string& path : bad) {
    SCOPED_TRACE(path);
    EXPECT_FALSE(IsArtifactObjectPath(path));
    EXPECT_THAT(store_->Resolve(path, ""),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("not an object path")));
    EXPECT_THAT(store_->ReadBytes(path, ""),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  // A reference whose sha256 disagrees with its path.
  EXPECT_THAT(store_->Resolve(info->path, Sha256Hex("y")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not match its path")));
}

TEST_F(ArtifactStoreTest, ObjectLinkingOutOfTheStoreIsRefused) {
  // Content whose hash is right but that lives outside the root.
  const std::string outside = dir_ + "/secret.txt";
  Overwrite(outside, "secret");
  const std::string sha = Sha256Hex("secret");
  ASSERT_THAT(MakeDirs(root_ + "/objects/" + sha.substr(0, 2)), IsOk());
  const std::string path = absl::StrCat("objects/", sha.substr(0, 2), "/", sha);
  ASSERT_EQ(::symlink(outside.c_str(), (root_ + "/" + path).c_str()), 0);
  EXPECT_THAT(
      store_->ReadBytes(path, sha),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("outside")));
  EXPECT_THAT(store_->Resolve(path, sha),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(ArtifactStoreTest, CheckpointsSetGetReplaceClear) {
  const std::string key = "task-abc/retrain";
  ExpectNoCheckpoint(key);
  auto step10 = store_->PutBytes("retrain/step10", "state at step 10");
  auto step20 = store_->PutBytes("retrain/step20", "state at step 20");
  ASSERT_THAT(step10, IsOk());
  ASSERT_THAT(step20, IsOk());

  ASSERT_THAT(store_->SetCheckpoint(key, *step10), IsOk());
  auto got = store_->GetCheckpoint(key);
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->path, step10->path);
  EXPECT_EQ((*got)->sha256, step10->sha256);
  EXPECT_EQ((*got)->bytes, step10->bytes);
  EXPECT_EQ((*got)->name, "retrain/step10");

  ASSERT_THAT(store_->SetCheckpoint(key, *step20), IsOk());
  got = store_->GetCheckpoint(key);
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->path, step20->path);
  // Another key is independent.
  ASSERT_THAT(store_->SetCheckpoint("other", *step10), IsOk());
  auto all = store_->ListCheckpoints();
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(*all, SizeIs(2));
  EXPECT_THAT(TmpFiles(), IsEmpty());

  ASSERT_THAT(store_->ClearCheckpoint(key), IsOk());
  ExpectNoCheckpoint(key);
  EXPECT_THAT(store_->ClearCheckpoint(key), IsOk());  // idempotent
  got = store_->GetCheckpoint("other");
  ASSERT_THAT(got, IsOk());
  EXPECT_TRUE(got->has_value());
}

TEST_F(ArtifactStoreTest, CheckpointMustNameAStoredObject) {
  const std::string sha = Sha256Hex("not stored");
  ArtifactInfo missing{
      "ckpt", absl::StrCat("objects/", sha.substr(0, 2), "/", sha), 10, sha};
  EXPECT_THAT(store_->SetCheckpoint("k", missing),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"ckpt\"")));
  ArtifactInfo bad{"ckpt", "../x", 1, ""};
  EXPECT_THAT(store_->SetCheckpoint("k", bad),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ExpectNoCheckpoint("k");
}

TEST_F(ArtifactStoreTest, CorruptCheckpointFileIsDataLoss) {
  auto info = store_->PutBytes("c", "checkpoint");
  ASSERT_THAT(info, IsOk());
  ASSERT_THAT(store_->SetCheckpoint("key", *info), IsOk());
  Overwrite(root_ + "/checkpoints/" + Sha256Hex("key"), "{\"path\": 3");
  EXPECT_THAT(store_->GetCheckpoint("key"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("not a valid checkpoint reference")));
  // GC refuses to guess which objects it protects.
  EXPECT_THAT(store_->GarbageCollect(ArtifactGcOptions{}),
              StatusIs(absl::StatusCode::kDataLoss));
}

// A child process writes a large artifact and is SIGKILLed in the middle of
// it (after it has committed a small one). Synchronised with a pipe: the
// parent kills only once the child says it is mid-write.
TEST_F(ArtifactStoreTest, TornWriteAfterKillNineIsNeverAnObject) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto store = ArtifactStore::Open(root_);
    if (!store.ok()) ::_exit(10);
    if (!(*store)->PutBytes("complete", "a complete artifact").ok()) {
      ::_exit(11);
    }
    auto writer = (*store)->NewWriter("large");
    if (!writer.ok()) ::_exit(12);
    const std::string chunk(1 << 20, 'a');
    for (int i = 0; i < 8; ++i) {
      if (!(*writer)->Append(chunk).ok()) ::_exit(13);
    }
    const char byte = 'w';
    if (::write(ready[1], &byte, 1) != 1) ::_exit(14);
    // Keep writing (never committing) until killed; block once the file is
    // large so a slow parent cannot fill the disk.
    for (int i = 0; i < 56; ++i) {
      if (!(*writer)->Append(chunk).ok()) ::_exit(15);
    }
    // Then wait for the SIGKILL (a read of the pipe's write end would fail at
    // once and let the child exit by itself when the parent is slow).
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the child failed before "
                                              "writing";
  ASSERT_EQ(byte, 'w');
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ::close(ready[0]);
  ASSERT_TRUE(WIFSIGNALED(wstatus));
  EXPECT_EQ(WTERMSIG(wstatus), SIGKILL);

  // Only the committed artifact is an object, and every object verifies.
  auto objects = store_->List();
  ASSERT_THAT(objects, IsOk());
  ASSERT_THAT(*objects, SizeIs(1));
  EXPECT_EQ((*objects)[0].sha256, Sha256Hex("a complete artifact"));
  for (const ArtifactInfo& o : *objects) {
    EXPECT_THAT(store_->Resolve(o.path, o.sha256), IsOk()) << o.path;
  }
  // The torn write is a temp file (at least what the child wrote before it
  // signalled), named as a writer's.
  std::vector<std::string> tmp = TmpFiles();
  ASSERT_THAT(tmp, SizeIs(1));
  EXPECT_THAT(tmp[0], StartsWith("w-"));
  auto size = FileSize(root_ + "/tmp/" + tmp[0]);
  ASSERT_THAT(size, IsOk());
  EXPECT_GE(*size, uint64_t{8} << 20);

  // A fresh temp file is left alone (its writer may be alive) ...
  auto young = store_->CleanTemp(absl::Hours(1));
  ASSERT_THAT(young, IsOk());
  EXPECT_EQ(young->tmp_files_deleted, 0);
  EXPECT_THAT(TmpFiles(), SizeIs(1));
  // ... and removed once it is older than the grace period.
  clock_->AdvanceMs(absl::ToInt64Milliseconds(absl::Hours(2)));
  auto dry = store_->CleanTemp(absl::Hours(1), /*dry_run=*/true);
  ASSERT_THAT(dry, IsOk());
  EXPECT_EQ(dry->tmp_files_deleted, 1);
  EXPECT_THAT(TmpFiles(), SizeIs(1));
  auto cleaned = store_->CleanTemp(absl::Hours(1));
  ASSERT_THAT(cleaned, IsOk());
  EXPECT_EQ(cleaned->tmp_files_deleted, 1);
  EXPECT_EQ(cleaned->tmp_bytes_deleted, static_cast<int64_t>(*size));
  EXPECT_THAT(TmpFiles(), IsEmpty());
  EXPECT_THAT(*store_->List(), SizeIs(1));
}

TEST_F(ArtifactStoreTest, GarbageCollectKeepsReferencedCheckpointedAndYoung) {
  auto kept = store_->PutBytes("kept", "referenced by a result");
  auto ckpt = store_->PutBytes("ckpt", "named by a checkpoint");
  auto old_garbage = store_->PutBytes("garbage", "nobody wants this");
  ASSERT_THAT(kept, IsOk());
  ASSERT_THAT(ckpt, IsOk());
  ASSERT_THAT(old_garbage, IsOk());
  ASSERT_THAT(store_->SetCheckpoint("task/retrain", *ckpt), IsOk());
  auto stray = store_->NewWriter("stray");
  ASSERT_THAT(stray, IsOk());
  ASSERT_THAT((*stray)->Append("half"), IsOk());

  ArtifactGcOptions options;
  options.referenced = {kept->path};
  // Everything is young: nothing goes.
  auto young = store_->GarbageCollect(options);
  ASSERT_THAT(young, IsOk());
  EXPECT_EQ(young->objects_deleted, 0);
  EXPECT_EQ(young->objects_too_young, 1);
  EXPECT_EQ(young->objects_kept, 3);
  EXPECT_EQ(young->tmp_files_deleted, 0);
  EXPECT_EQ(young->checkpoints, 1);

  clock_->AdvanceMs(absl::ToInt64Milliseconds(absl::Hours(2)));
  // A new unreferenced object written "now" on the fake clock would be
  // young; its file time is real time, 2 h before the clock: old.
  options.dry_run = true;
  auto dry = store_->GarbageCollect(options);
  ASSERT_THAT(dry, IsOk());
  EXPECT_EQ(dry->objects_deleted, 1);
  EXPECT_EQ(dry->bytes_deleted, old_garbage->bytes);
  EXPECT_EQ(dry->tmp_files_deleted, 1);
  EXPECT_THAT(*store_->List(), SizeIs(3));

  options.dry_run = false;
  auto done = store_->GarbageCollect(options);
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->objects_deleted, 1);
  EXPECT_EQ(done->objects_kept, 2);
  EXPECT_EQ(done->bytes_kept, kept->bytes + ckpt->bytes);
  EXPECT_EQ(done->tmp_files_deleted, 1);
  EXPECT_EQ(done->tmp_bytes_deleted, 4);
  EXPECT_THAT(store_->Resolve(kept->path, ""), IsOk());
  EXPECT_THAT(store_->Resolve(ckpt->path, ""), IsOk());
  EXPECT_THAT(store_->Resolve(old_garbage->path, ""),
              StatusIs(absl::StatusCode::kNotFound));
  // The writer whose temp file was collected fails to commit, loudly.
  EXPECT_THAT((*stray)->Commit(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("rename")));

  // Clearing the checkpoint makes its object garbage.
  ASSERT_THAT(store_->ClearCheckpoint("task/retrain"), IsOk());
  auto after = store_->GarbageCollect(options);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->objects_deleted, 1);
  EXPECT_THAT(*store_->List(), SizeIs(1));
}

TEST(ArtifactStoreOpenTest, EmptyRootIsRefused) {
  EXPECT_THAT(ArtifactStore::Open(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("root")));
}

}  // namespace
}  // namespace sweepd
