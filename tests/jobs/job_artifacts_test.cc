// worker/jobs/job_artifacts.h: a job that needs the store fails permanently
// with FAILED_PRECONDITION naming --artifact-root on a worker without one;
// with a store (a temp dir) it gets it, input artifacts are verified (a
// missing one is retryable), and a committed object becomes a result row.
#include "worker/jobs/job_artifacts.h"

#include <fstream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/artifact_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/jobs/executor.h"

namespace sweepd {
namespace {

using ::testing::AllOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;

TEST(JobArtifactsTest, NoStoreIsAPermanentFailureNamingTheFlag) {
  absl::StatusOr<ArtifactStore*> store =
      RequireArtifactStore(nullptr, "capture of attn_heads[3]");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(),
              HasSubstr("capture of attn_heads[3] needs --artifact-root on "
                        "the worker"));
  EXPECT_TRUE(IsPermanentTaskError(store.status()));
}

TEST(JobArtifactsTest, StoreIsHandedOutAndObjectsBecomeRows) {
  absl::StatusOr<std::unique_ptr<ArtifactStore>> opened =
      ArtifactStore::Open(::testing::TempDir() + "/job-artifacts");
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::shared_ptr<ArtifactStore> shared = std::move(*opened);
  absl::StatusOr<ArtifactStore*> store = RequireArtifactStore(shared, "heal");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*store, shared.get());

  absl::StatusOr<ArtifactInfo> info =
      (*store)->PutBytes("heal/o_proj/layer1", "weights");
  ASSERT_TRUE(info.ok()) << info.status();
  const ArtifactRow row = ToArtifactRow(*info);
  EXPECT_EQ(row.name, "heal/o_proj/layer1");
  EXPECT_EQ(row.path, info->path);
  EXPECT_EQ(row.bytes, 7);
  EXPECT_EQ(row.sha256, info->sha256);
  EXPECT_EQ(row.path, "objects/" + row.sha256.substr(0, 2) + "/" + row.sha256);
}

TEST(JobArtifactsTest, InputArtifactsAreVerifiedAndAMissingOneIsRetryable) {
  absl::StatusOr<std::unique_ptr<ArtifactStore>> opened =
      ArtifactStore::Open(::testing::TempDir() + "/job-artifacts-input");
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::shared_ptr<ArtifactStore> store = std::move(*opened);
  absl::StatusOr<ArtifactInfo> info = store->PutBytes("steer/v", "vector");
  ASSERT_TRUE(info.ok()) << info.status();

  absl::StatusOr<std::string> bytes =
      ReadInputArtifact(store, info->path, info->sha256, "steer at layer 2");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, "vector");
  absl::StatusOr<std::string> local =
      ResolveInputArtifact(store, info->path, "", "replace_layer 2");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_THAT(*local, EndsWith("/" + info->path));

  // Not (yet) in this box's store: retryable, naming what needed it.
  const std::string missing = "objects/ab/ab" + std::string(62, '0');
  absl::StatusOr<std::string> absent =
      ReadInputArtifact(store, missing, "", "steer at layer 2");
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(absent.status().message(),
              AllOf(HasSubstr("steer at layer 2: "), HasSubstr(missing)));
  EXPECT_FALSE(IsPermanentTaskError(absent.status()));

  // Corrupt content: DATA_LOSS (retryable); a bad path: permanent.
  {
    std::ofstream(store->root() + "/" + info->path, std::ios::trunc)
        << "vectoR";
  }
  EXPECT_EQ(ResolveInputArtifact(store, info->path, "", "x").status().code(),
            absl::StatusCode::kDataLoss);
  absl::StatusOr<std::string> bad =
      ReadInputArtifact(store, "../etc/passwd", "", "x");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsPermanentTaskError(bad.status()));
  EXPECT_EQ(ReadInputArtifact(nullptr, info->path, "", "steer at layer 2")
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace sweepd
