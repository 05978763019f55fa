// Integration test: sweepd with --http-listen runs the demo's layer study on
// the tiny generated model while tests/dashboard/dashboard_check.mjs drives the
// dashboard in Debian's headless Chromium: DOM assertions before the workers
// start, while the sweep runs (progress, workers, task filters) and after it
// ends (every report chart drew, nothing fetched from outside the dashboard).
// Screenshots are kept as
// $SWEEPD_BUILD_DIR/test-artifacts/dashboard{,-running}.png.
//
// Skips (with the reason) only when chromium, node or the playwright-core
// install of tests/client/report is absent.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/spec_loader.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/sweep_cluster.h"

namespace sweepd::testing {
namespace {

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

TEST(DashboardBrowserTest, ShowsARunningLayerStudyAndDrawsItsReport) {
  const std::string source = EnvOr("SWEEPD_SOURCE_DIR", ".");
  const std::string build = EnvOr("SWEEPD_BUILD_DIR", "build");
  const std::string chromium = EnvOr("SWEEPD_CHROMIUM", "/usr/bin/chromium");
  if (::access(chromium.c_str(), X_OK) != 0) {
    GTEST_SKIP() << chromium << " is not installed (apt-get install chromium)";
  }
  const std::string node = "/usr/bin/node";
  if (::access(node.c_str(), X_OK) != 0)
    GTEST_SKIP() << "node is not installed";
  if (!Exists(
          source +
          "/tests/client/report/node_modules/playwright-core/package.json")) {
    GTEST_SKIP()
        << "playwright-core is not installed: npm ci in tests/client/report";
  }

  auto dir = MakeTempDir("sweepd-dashboard");
  ASSERT_TRUE(dir.ok()) << dir.status();
  // The tiny demo model, as scripts/demo.sh makes it.
  auto worker_bin = BuildBinary("worker/sweep-worker");
  ASSERT_TRUE(worker_bin.ok()) << worker_bin.status();
  const std::string model = *dir + "/models/gemma4-tiny";
  {
    auto make = Process::Spawn({{*worker_bin, "make-model", "--config",
                                 source + "/configs/models/gemma4-tiny.json",
                                 "--seed", "1", "--out", model},
                                *dir + "/make-model.log"});
    ASSERT_TRUE(make.ok()) << make.status();
    auto exit = (*make)->Wait(absl::Seconds(120));
    ASSERT_TRUE(exit.ok() && exit->exited && exit->code == 0)
        << ReadFileOrEmpty(*dir + "/make-model.log");
  }

  SweepClusterOptions options{*dir};
  options.sweepd_args = {"--http-listen", "127.0.0.1:0",
                         "--model-root",  *dir + "/models",
                         "--data-root",   source + "/configs/data"};
  auto cluster_or = SweepCluster::Create(options);
  ASSERT_TRUE(cluster_or.ok()) << cluster_or.status();
  SweepCluster& cluster = **cluster_or;
  ASSERT_TRUE(cluster.StartCoordinator().ok()) << cluster.DescribeLogs();
  std::smatch m;
  const std::string logs = cluster.DescribeLogs(1 << 20);
  ASSERT_TRUE(std::regex_search(
      logs, m,
      std::regex("sweepd dashboard on (http://127\\.0\\.0\\.1:[0-9]+)/")))
      << logs;
  const std::string url = m[1];

  auto spec = LoadSweepSpecFile(source + "/configs/sweeps/layer_study.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto submitted = cluster.Submit(*spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();

  const std::string artifacts = build + "/test-artifacts";
  ::mkdir(artifacts.c_str(), 0755);
  const std::string marker = *dir + "/phase1.done";
  auto check = Process::Spawn(
      {{node, source + "/tests/dashboard/dashboard_check.mjs", url,
        submitted->sweep_id(), marker, artifacts + "/dashboard.png"},
       *dir + "/dashboard_check.log",
       {{"SWEEPD_CHROMIUM", chromium}}});
  ASSERT_TRUE(check.ok()) << check.status();
  // Workers start once the page has seen the sweep waiting for them.
  for (int i = 0; i < 1200 && !Exists(marker) && (*check)->Running(); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(Exists(marker)) << ReadFileOrEmpty(*dir + "/dashboard_check.log");
  for (int i = 0; i < 2; ++i) {
    auto w = cluster.StartWorker(
        absl::StrCat("dash-worker-", i),
        {"--model", model, "--threads", "1", "--heartbeat-ms", "300"});
    ASSERT_TRUE(w.ok()) << w.status();
  }
  auto exit = (*check)->Wait(absl::Seconds(400));
  ASSERT_TRUE(exit.ok()) << exit.status()
                         << ReadFileOrEmpty(*dir + "/dashboard_check.log");
  const std::string output = ReadFileOrEmpty(*dir + "/dashboard_check.log");
  EXPECT_TRUE(exit->exited && exit->code == 0)
      << output << cluster.DescribeLogs();
  EXPECT_NE(output.find("all checks passed"), std::string::npos) << output;
  std::cout << output;
}

}  // namespace
}  // namespace sweepd::testing
