// worker/jobs/job_artifacts.h: a job that needs the store fails permanently
// with FAILED_PRECONDITION naming --artifact-root on a worker without one;
// with a store (a temp dir) it gets it, and a committed object becomes a
// result row.
#include "worker/jobs/job_artifacts.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/artifact_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/jobs/executor.h"

namespace sweepd {
namespace {

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

}  // namespace
}  // namespace sweepd
