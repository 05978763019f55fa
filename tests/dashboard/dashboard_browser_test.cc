// Integration test: sweepd with --http-listen runs the demo's layer study on
// the tiny generated model while Debian's headless Chromium drives the
// dashboard.
//   - ShowsARunningLayerStudyAndDrawsItsReport: plain HTTP, no token file
//     (loopback); tests/dashboard/dashboard_check.mjs makes DOM assertions
//     before the workers start, while the sweep runs (progress, workers, task
//     filters) and after it ends (every report chart drew, nothing fetched
//     from outside the dashboard). Screenshots:
//     $SWEEPD_BUILD_DIR/test-artifacts/dashboard{,-running}.png.
//   - SignsInOverHttpsAndWatchesARunningSweep: as deployed — HTTPS with a
//     test CA's certificate, a token file with admin, submitter, reader and
//     worker tokens, workers over TLS with their token;
//     tests/dashboard/dashboard_signin_check.mjs signs in through the page's
//     form (no token: form and 401s; a wrong and a worker token: errors; the
//     reader's: the running sweep, workers, tasks and charts), reloads and
//     signs out. No token may reach a URL or sweepd's log. Screenshots:
//     test-artifacts/dashboard-signin-{error,wrong-role}.png and
//     dashboard-signed-in.png.
//
// Skips (with the reason) only when chromium, node or the playwright-core
// install of tests/client/report is absent.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/spec_loader.h"
#include "common/hash.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/sweep_cluster.h"
#include "tests/testing/test_certs.h"

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

// Writes `text` to `path` with mode 0600 (keys and tokens).
void WritePrivate(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr) << path;
  ::fchmod(::fileno(f), 0600);
  ASSERT_EQ(std::fwrite(text.data(), 1, text.size(), f), text.size()) << path;
  ASSERT_EQ(std::fclose(f), 0) << path;
}

// Shared set-up: the tools, the tiny demo model (as scripts/demo.sh makes it;
// made once for the suite), a temp dir per test and the artifact dir.
class DashboardBrowserTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    source_ = EnvOr("SWEEPD_SOURCE_DIR", ".");
    build_ = EnvOr("SWEEPD_BUILD_DIR", "build");
    chromium_ = EnvOr("SWEEPD_CHROMIUM", "/usr/bin/chromium");
    skip_reason_.clear();
    if (::access(chromium_.c_str(), X_OK) != 0) {
      skip_reason_ = chromium_ + " is not installed (apt-get install chromium)";
    } else if (::access(kNode, X_OK) != 0) {
      skip_reason_ = "node is not installed";
    } else if (!Exists(source_ +
                       "/tests/client/report/node_modules/playwright-core/"
                       "package.json")) {
      skip_reason_ =
          "playwright-core is not installed: npm ci in tests/client/report";
    }
    if (!skip_reason_.empty()) return;
    auto dir = MakeTempDir("sweepd-dashboard-model");
    ASSERT_TRUE(dir.ok()) << dir.status();
    auto worker_bin = BuildBinary("worker/sweep-worker");
    ASSERT_TRUE(worker_bin.ok()) << worker_bin.status();
    models_ = *dir + "/models";
    model_ = models_ + "/gemma4-tiny";
    auto make = Process::Spawn({{*worker_bin, "make-model", "--config",
                                 source_ + "/configs/models/gemma4-tiny.json",
                                 "--seed", "1", "--out", model_},
                                *dir + "/make-model.log",
                                {}});
    ASSERT_TRUE(make.ok()) << make.status();
    auto exit = (*make)->Wait(absl::Seconds(120));
    ASSERT_TRUE(exit.ok() && exit->exited && exit->code == 0)
        << ReadFileOrEmpty(*dir + "/make-model.log");
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_FALSE(model_.empty()) << "the tiny model was not made";
    auto dir = MakeTempDir("sweepd-dashboard");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
    artifacts_ = build_ + "/test-artifacts";
    ::mkdir(artifacts_.c_str(), 0755);
  }

  // sweepd's flags for the demo model and data.
  std::vector<std::string> ModelFlags() const {
    return {"--model-root", models_, "--data-root", source_ + "/configs/data"};
  }

  // The dashboard URL sweepd printed ("http" or "https").
  static std::string DashboardUrl(const SweepCluster& cluster,
                                  const std::string& scheme) {
    std::smatch m;
    const std::string logs = cluster.DescribeLogs(1 << 20);
    if (!std::regex_search(logs, m,
                           std::regex("sweepd dashboard on (" + scheme +
                                      "://127\\.0\\.0\\.1:[0-9]+)/"))) {
      ADD_FAILURE() << "no " << scheme << " dashboard URL in " << logs;
      return "";
    }
    return m[1];
  }

  // Runs `node SCRIPT ARGS` in the background; waits until it writes
  // `marker` (the page got as far as it must without workers), then starts two
  // workers with `worker_flags`; waits for the script and checks it passed.
  // Returns the script's output.
  std::string RunCheck(SweepCluster& cluster, const std::string& script,
                       const std::vector<std::string>& args,
                       const std::string& marker,
                       const std::vector<std::string>& worker_flags) {
    std::vector<std::string> argv = {kNode,
                                     source_ + "/tests/dashboard/" + script};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir_ + "/" + script + ".log";
    auto check = Process::Spawn({argv, log, {{"SWEEPD_CHROMIUM", chromium_}}});
    EXPECT_TRUE(check.ok()) << check.status();
    if (!check.ok()) return "";
    for (int i = 0; i < 1200 && !Exists(marker) && (*check)->Running(); ++i) {
      absl::SleepFor(absl::Milliseconds(100));
    }
    EXPECT_TRUE(Exists(marker)) << ReadFileOrEmpty(log);
    if (!Exists(marker)) return "";
    for (int i = 0; i < 2; ++i) {
      std::vector<std::string> flags = {
          "--model", model_, "--threads", "1", "--heartbeat-ms", "300"};
      flags.insert(flags.end(), worker_flags.begin(), worker_flags.end());
      auto w = cluster.StartWorker(absl::StrCat("dash-worker-", i), flags);
      EXPECT_TRUE(w.ok()) << w.status();
    }
    auto exit = (*check)->Wait(absl::Seconds(400));
    EXPECT_TRUE(exit.ok()) << exit.status() << ReadFileOrEmpty(log);
    const std::string output = ReadFileOrEmpty(log);
    EXPECT_TRUE(exit.ok() && exit->exited && exit->code == 0)
        << output << cluster.DescribeLogs();
    EXPECT_NE(output.find("all checks passed"), std::string::npos) << output;
    std::cout << output;
    return output;
  }

  static constexpr char kNode[] = "/usr/bin/node";
  static inline std::string source_, build_, chromium_, skip_reason_, models_,
      model_;
  std::string dir_, artifacts_;
};

TEST_F(DashboardBrowserTest, ShowsARunningLayerStudyAndDrawsItsReport) {
  SweepClusterOptions options;
  options.dir = dir_;
  options.sweepd_args = {"--http-listen", "127.0.0.1:0"};
  for (const std::string& f : ModelFlags()) options.sweepd_args.push_back(f);
  auto cluster_or = SweepCluster::Create(options);
  ASSERT_TRUE(cluster_or.ok()) << cluster_or.status();
  SweepCluster& cluster = **cluster_or;
  ASSERT_TRUE(cluster.StartCoordinator().ok()) << cluster.DescribeLogs();
  const std::string url = DashboardUrl(cluster, "http");
  ASSERT_FALSE(url.empty());

  auto spec = LoadSweepSpecFile(source_ + "/configs/sweeps/layer_study.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto submitted = cluster.Submit(*spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();

  const std::string marker = dir_ + "/phase1.done";
  RunCheck(cluster, "dashboard_check.mjs",
           {url, submitted->sweep_id(), marker, artifacts_ + "/dashboard.png"},
           marker, {});
}

TEST_F(DashboardBrowserTest, SignsInOverHttpsAndWatchesARunningSweep) {
  // Tokens as an operator makes them; the file holds only their hashes.
  const std::string admin = "dash-admin-3e8b1f0c6a27";
  const std::string submitter = "dash-submitter-91d4c2e7b503";
  const std::string reader = "dash-reader-5f0c2a9e71b3";
  const std::string worker = "dash-worker-c47a09d2e18f";
  const std::string wrong = "dash-wrong-0b6e73a4c9d5";
  const std::vector<std::string> secrets = {admin, submitter, reader, worker,
                                            wrong};
  auto line = [](const char* name, const char* role, const std::string& t) {
    return absl::StrCat(name, " ", role, " ", Sha256Hex(t), "\n");
  };
  WritePrivate(dir_ + "/tokens",
               absl::StrCat(line("root", "admin", admin),
                            line("alice", "submitter", submitter),
                            line("browser", "reader", reader),
                            line("workers", "worker", worker)));
  WritePrivate(dir_ + "/worker.token", worker + "\n");
  WritePrivate(dir_ + "/browser-tokens.json",
               absl::StrCat("{\"reader\": \"", reader, "\", \"worker\": \"",
                            worker, "\", \"wrong\": \"", wrong, "\"}\n"));
  // A fresh test CA and a server certificate for 127.0.0.1 and localhost.
  TestCa ca("sweepd-dashboard-test-ca");
  const PemPair server = ca.IssueServer();
  WritePrivate(dir_ + "/ca.pem", ca.ca().cert);
  WritePrivate(dir_ + "/server.pem", server.cert);
  WritePrivate(dir_ + "/server.key", server.key);

  SweepClusterOptions options;
  options.dir = dir_;
  options.sweepd_args = {"--http-listen", "127.0.0.1:0",
                         "--tls-cert",    dir_ + "/server.pem",
                         "--tls-key",     dir_ + "/server.key",
                         "--token-file",  dir_ + "/tokens"};
  for (const std::string& f : ModelFlags()) options.sweepd_args.push_back(f);
  options.tls_ca_file = dir_ + "/ca.pem";
  options.token = submitter;
  auto cluster_or = SweepCluster::Create(options);
  ASSERT_TRUE(cluster_or.ok()) << cluster_or.status();
  SweepCluster& cluster = **cluster_or;
  ASSERT_TRUE(cluster.StartCoordinator().ok()) << cluster.DescribeLogs();
  const std::string url = DashboardUrl(cluster, "https");
  ASSERT_FALSE(url.empty());

  auto spec = LoadSweepSpecFile(source_ + "/configs/sweeps/layer_study.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto submitted = cluster.Submit(*spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();

  // Workers lease at most 4 tasks at a time, so results (and the report's
  // versions) arrive in several steps the page can see.
  const std::string marker = dir_ + "/form.shown";
  const std::string output =
      RunCheck(cluster, "dashboard_signin_check.mjs",
               {url, submitted->sweep_id(), marker, artifacts_,
                dir_ + "/browser-tokens.json", dir_ + "/server.pem"},
               marker,
               {"--tls-ca", dir_ + "/ca.pem", "--token-file",
                dir_ + "/worker.token", "--max-tasks", "4"});

  // The workers did their part over TLS with their token.
  auto status = cluster.GetSweep(submitted->sweep_id());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_GT(status->counts().done(), 0) << status->DebugString();
  // sweepd logged the browser's refused calls, never a token; neither did the
  // check, the workers, or any other log of the run.
  const std::string sweepd_log = ReadFileOrEmpty(dir_ + "/sweepd.1.log");
  EXPECT_NE(sweepd_log.find("auth: denied GET /api/sweeps from 127.0.0.1:"),
            std::string::npos)
      << sweepd_log;
  EXPECT_NE(sweepd_log.find("(token 'workers', role worker, dashboard)"),
            std::string::npos)
      << sweepd_log;
  const std::string all_logs = cluster.DescribeLogs(1 << 22) + output;
  for (const std::string& secret : secrets) {
    EXPECT_EQ(sweepd_log.find(secret), std::string::npos)
        << "sweepd's log holds a token";
    EXPECT_EQ(all_logs.find(secret), std::string::npos)
        << "a log of the run holds a token";
  }
}

}  // namespace
}  // namespace sweepd::testing
