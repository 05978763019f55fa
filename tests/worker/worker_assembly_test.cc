// Tests of the worker assembly (worker/worker_assembly.h): option validation,
// the registry and agent options it builds without a model, and errors that
// name the model directory.
#include "worker/worker_assembly.h"

#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/engine/engine.h"

namespace sweepd {
namespace {

using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(WorkerAssemblyTest, WithoutModelRegistersSyntheticAndFillsAgentOptions) {
  WorkerOptions options;
  options.agent.coordinator = "127.0.0.1:1";
  options.agent.name = "w";
  options.drain_grace_s = 2.5;
  absl::StatusOr<WorkerAssembly> assembly = AssembleWorker(options);
  ASSERT_THAT(assembly, IsOk());
  EXPECT_THAT(assembly->registry->kinds(), ElementsAre("synthetic"));
  EXPECT_EQ(assembly->agent_options.registry, assembly->registry.get());
  EXPECT_EQ(assembly->agent_options.drain_grace_ms, 2500);
  EXPECT_EQ(assembly->agent_options.coordinator, "127.0.0.1:1");
  EXPECT_EQ(assembly->agent_options.name, "w");
  EXPECT_EQ(assembly->agent_options.capabilities.model_fingerprint, "");
}

// Defect: a worker started with --device cuda advertised "cpu". It now
// advertises the GPU (its name where the build can read it, else "cuda"), a
// GPU count and memory; explicit --device-kind / --gpu-* values win.
TEST(WorkerAssemblyTest, CudaWorkerAdvertisesItsDevice) {
  WorkerOptions options;
  options.device = "cuda";
  options.agent.capabilities.tensor_parallel = 2;
  absl::StatusOr<WorkerAssembly> assembly = AssembleWorker(options);
  ASSERT_THAT(assembly, IsOk());
  const WorkerCapabilityInfo& caps = assembly->agent_options.capabilities;
  EXPECT_NE(caps.device_kind, "cpu");
  EXPECT_FALSE(caps.device_kind.empty());
  EXPECT_EQ(caps.gpu_count, 2);

  options.agent.capabilities.device_kind = "nvidia-h200";
  options.agent.capabilities.gpu_count = 8;
  assembly = AssembleWorker(options);
  ASSERT_THAT(assembly, IsOk());
  EXPECT_EQ(assembly->agent_options.capabilities.device_kind, "nvidia-h200");
  EXPECT_EQ(assembly->agent_options.capabilities.gpu_count, 8);

  options.device = "cpu";
  options.agent.capabilities = WorkerCapabilityInfo{};
  assembly = AssembleWorker(options);
  ASSERT_THAT(assembly, IsOk());
  EXPECT_EQ(assembly->agent_options.capabilities.device_kind, "cpu");
}

TEST(WorkerAssemblyTest, RejectsBadFlagsAsInvalidArgument) {
  WorkerOptions options;
  options.drain_grace_s = -1;
  EXPECT_THAT(ValidateWorkerOptions(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--drain-grace-s must be >= 0")));
  options.drain_grace_s = 30;
  options.model_dir = "/models/m";
  options.dtype = "float8";
  EXPECT_THAT(AssembleWorker(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bad --dtype 'float8'")));
  options.dtype = "";
  options.prefix_reuse = "maybe";
  EXPECT_THAT(ValidateWorkerOptions(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--prefix-reuse 'maybe' (on|off)")));
  // Without a model the engine flags are not looked at.
  options.model_dir = "";
  EXPECT_THAT(ValidateWorkerOptions(options), IsOk());
}

TEST(WorkerAssemblyTest, DerivesEngineAndExecutorOptions) {
  WorkerOptions options;
  options.model_dir = "/models/m";
  options.device = "cuda";
  options.prefix_budget_mb = 3;
  options.max_batch_tokens = 77;
  options.prefix_reuse = "off";
  options.agent.capabilities.tensor_parallel = 0;
  absl::StatusOr<LmBackendOptions> backend = LmBackendOptionsFor(options, "fp");
  ASSERT_THAT(backend, IsOk());
  EXPECT_EQ(backend->engine.model_dir, "/models/m");
  EXPECT_EQ(backend->engine.dtype, engine::DType::kBFloat16);  // cuda default
  EXPECT_EQ(backend->engine.tp_size, 1);
  EXPECT_EQ(backend->engine.prefix_device_budget_bytes, int64_t{3} << 20);
  EXPECT_EQ(backend->model_fingerprint, "fp");
  const LmExecutorOptions lm = LmExecutorOptionsFor(options);
  EXPECT_FALSE(lm.prefix_reuse);
  EXPECT_EQ(lm.max_batch_tokens, 77);
}

TEST(WorkerAssemblyTest, MissingModelNamesTheDirectory) {
  WorkerOptions options;
  options.model_dir = ::testing::TempDir() + "/no-such-model";
  EXPECT_THAT(AssembleWorker(options),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("--model " + options.model_dir)));
}

TEST(WorkerAssemblyTest, ModelOutsideTheModelRootsIsRefusedBeforeLoading) {
  WorkerOptions options;
  const std::string root = ::testing::TempDir() + "/assembly-root";
  mkdir(root.c_str(), 0755);
  options.model_roots = {root};
  // Outside the root (and missing: the root check comes first).
  options.model_dir = ::testing::TempDir() + "/elsewhere-model";
  mkdir(options.model_dir.c_str(), 0755);
  EXPECT_THAT(AssembleWorker(options),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("--model " + options.model_dir),
                             HasSubstr("outside the root " + root))));
}

TEST(WorkerAssemblyTest, ArtifactRootOpensTheStore) {
  WorkerOptions options;
  EXPECT_EQ(AssembleWorker(options)->artifacts, nullptr);
  options.artifact_root = ::testing::TempDir() + "/assembly-artifacts";
  absl::StatusOr<WorkerAssembly> assembly = AssembleWorker(options);
  ASSERT_THAT(assembly, IsOk());
  ASSERT_NE(assembly->artifacts, nullptr);
  EXPECT_EQ(assembly->artifacts->root(), options.artifact_root);
  struct stat st;
  EXPECT_EQ(stat((options.artifact_root + "/objects").c_str(), &st), 0);
  // A root that cannot be a directory is named.
  const std::string file = ::testing::TempDir() + "/assembly-artifacts-file";
  FILE* f = fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  options.artifact_root = file;
  EXPECT_THAT(AssembleWorker(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("--artifact-root " + file)));
}

TEST(WorkerAssemblyTest, TokenWithoutTlsIsRefused) {
  WorkerOptions options;
  options.tls.token = "secret-token-value";
  absl::StatusOr<WorkerAssembly> assembly = AssembleWorker(options);
  EXPECT_THAT(assembly, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("over plaintext")));
  EXPECT_THAT(assembly.status().message(),
              ::testing::Not(HasSubstr("secret-token-value")));
}

}  // namespace
}  // namespace sweepd
