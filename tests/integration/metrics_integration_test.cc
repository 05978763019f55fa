// sweepd and a sweep-worker started with --metrics-listen run a synthetic
// sweep; both /metrics endpoints are scraped while it runs and after it ends,
// and each exposition is checked with `promtool check metrics` (Debian's
// prometheus package). The only lint promtool may report is the colon in the
// worker's vLLM-style names (`sweepd_worker:...`, like `vllm:...`), which is
// deliberate (docs/OBSERVABILITY.md); anything else fails the test.
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/http_get.h"
#include "tests/testing/process.h"
#include "tests/testing/sweep_cluster.h"

namespace sweepd::testing {
namespace {

namespace v1 = ::sweepd::v1;
using ::testing::HasSubstr;

// Waits until `log` holds "<prefix>127.0.0.1:PORT" and returns PORT.
int WaitForAddressInLog(const std::string& log, const std::string& prefix) {
  const std::regex re(prefix + "127\\.0\\.0\\.1:([0-9]+)");
  for (int i = 0; i < 200; ++i) {
    std::smatch m;
    const std::string text = ReadFileOrEmpty(log);
    if (std::regex_search(text, m, re)) return std::stoi(m[1]);
    absl::SleepFor(absl::Milliseconds(50));
  }
  return 0;
}

struct PromtoolResult {
  int exit_code = -1;
  std::string output;
};

PromtoolResult Promtool(const std::string& dir, const std::string& name,
                        const std::string& exposition) {
  const std::string path = absl::StrCat(dir, "/", name, ".prom");
  std::ofstream(path) << exposition;
  PromtoolResult r;
  FILE* p = popen(
      absl::StrCat("promtool check metrics < '", path, "' 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Lint lines other than the accepted colon warning.
std::vector<std::string> UnexpectedLint(const std::string& output) {
  std::vector<std::string> bad;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (line.empty()) continue;
    if (absl::StartsWith(line, "sweepd_worker:") &&
        absl::EndsWith(line, "metric names should not contain ':'")) {
      continue;
    }
    bad.emplace_back(line);
  }
  return bad;
}

// Sample lines "name{labels} value" -> value (labels kept as written).
std::map<std::string, double> Samples(const std::string& exposition) {
  std::map<std::string, double> out;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double v = 0;
    if (space == absl::string_view::npos ||
        !absl::SimpleAtod(line.substr(space + 1), &v)) {
      continue;
    }
    out[std::string(line.substr(0, space))] = v;
  }
  return out;
}

TEST(MetricsIntegrationTest, BothEndpointsPassPromtoolDuringAndAfterASweep) {
  constexpr int kTasks = 60;
  auto dir = MakeTempDir("sweepd-metrics");
  ASSERT_TRUE(dir.ok()) << dir.status();
  SweepClusterOptions options{*dir};
  options.sweepd_args = {"--metrics-listen", "127.0.0.1:0"};
  auto cluster_or = SweepCluster::Create(options);
  ASSERT_TRUE(cluster_or.ok()) << cluster_or.status();
  SweepCluster& cluster = **cluster_or;
  ASSERT_TRUE(cluster.StartCoordinator().ok()) << cluster.DescribeLogs();
  auto worker = cluster.StartWorker(
      "metrics-worker", {"--metrics-listen", "127.0.0.1:0", "--heartbeat-ms",
                         "200", "--max-tasks", "2", "--log-format", "json"});
  ASSERT_TRUE(worker.ok()) << worker.status();
  const int worker_port =
      WaitForAddressInLog((*worker)->log_path(), "sweep-worker metrics on ");
  ASSERT_GT(worker_port, 0) << cluster.DescribeLogs();
  std::smatch m;
  const std::string logs = cluster.DescribeLogs(1 << 20);
  ASSERT_TRUE(std::regex_search(
      logs, m, std::regex("sweepd metrics on 127\\.0\\.0\\.1:([0-9]+)")))
      << logs;
  const int sweepd_port = std::stoi(m[1]);

  // 60 tasks of 40-60 ms on one worker taking 2 at a time: about 1.5 s; 10%
  // transient failures (retried up to 10 times) so failures are counted too.
  // Short leases: under load a heartbeat can race a lease grant and the worker
  // drops a task the coordinator still counts as leased (seen with 200 ms
  // heartbeats); it then waits for the lease to expire, so keep that short.
  v1::SweepSpec spec = SyntheticSweep("metrics", kTasks, 40, 60,
                                      /*failure_rate=*/0.1,
                                      /*max_attempts=*/10,
                                      /*lease_seconds=*/5);
  auto submitted = cluster.Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string sweep_id = submitted->sweep_id();

  // While it runs: some but not all tasks done.
  std::string running;
  for (int i = 0; i < 600; ++i) {  // up to 30 s on a loaded machine
    auto status = cluster.GetSweep(sweep_id);
    ASSERT_TRUE(status.ok()) << status.status();
    if (status->counts().done() >= 4) {
      auto got = HttpGet("127.0.0.1", sweepd_port, "/metrics");
      ASSERT_TRUE(got.ok()) << got.status();
      running = got->body;
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  auto worker_running = HttpGet("127.0.0.1", worker_port, "/metrics");
  ASSERT_TRUE(worker_running.ok()) << worker_running.status();
  ASSERT_FALSE(running.empty()) << "no task finished in 30 s\n"
                                << cluster.DescribeLogs();
  {
    const auto s = Samples(running);
    const std::string labels =
        absl::StrCat("{sweep=\"", sweep_id, "\",sweep_name=\"metrics\",");
    EXPECT_EQ(s.at("sweepd_sweeps{state=\"running\"}"), 1);
    EXPECT_EQ(s.at("sweepd_workers{state=\"live\"}"), 1);
    EXPECT_LT(s.at(absl::StrCat("sweepd_tasks", labels, "state=\"done\"}")),
              kTasks);
    EXPECT_GE(s.at(absl::StrCat("sweepd_tasks", labels, "state=\"done\"}")), 4);
  }
  PromtoolResult coord_check = Promtool(*dir, "sweepd-running", running);
  EXPECT_EQ(coord_check.exit_code, 0) << coord_check.output;
  PromtoolResult worker_check =
      Promtool(*dir, "worker-running", worker_running->body);
  EXPECT_THAT(worker_check.exit_code, ::testing::AnyOf(0, 3))
      << worker_check.output;  // 3 = lint problems only (parse errors are 1)
  EXPECT_THAT(UnexpectedLint(worker_check.output), ::testing::IsEmpty());

  auto final_status = cluster.WaitForSweepEnd(sweep_id, absl::Seconds(240));
  ASSERT_TRUE(final_status.ok())
      << final_status.status() << cluster.DescribeLogs();
  ASSERT_EQ(final_status->counts().done(), kTasks) << cluster.DescribeLogs();

  auto coord_after = HttpGet("127.0.0.1", sweepd_port, "/metrics");
  auto worker_after = HttpGet("127.0.0.1", worker_port, "/metrics");
  ASSERT_TRUE(coord_after.ok() && worker_after.ok());
  EXPECT_THAT(coord_after->content_type, HasSubstr("text/plain"));
  const auto c = Samples(coord_after->body);
  EXPECT_EQ(c.at(absl::StrCat("sweepd_tasks{sweep=\"", sweep_id,
                              "\",sweep_name=\"metrics\",state=\"done\"}")),
            kTasks);
  EXPECT_EQ(c.at("sweepd_sweeps{state=\"done\"}"), 1);
  EXPECT_GE(c.at("grpc_server_handled_total{grpc_code=\"OK\",grpc_method="
                 "\"ReportResult\",grpc_service=\"sweepd.v1.WorkerGateway\"}"),
            kTasks);
  EXPECT_GE(c.at("sweepd_lease_latency_seconds_count"), 1);
  EXPECT_GE(c.at("sweepd_ledger_commit_seconds_count"), 1);
  const auto w = Samples(worker_after->body);
  // The worker reported every task once; its counter says so.
  EXPECT_EQ(w.at("sweepd_worker:tasks_done_total{kind=\"synthetic\"}"), kTasks);
  EXPECT_EQ(w.at("sweepd_worker:task_seconds_count{kind=\"synthetic\"}"),
            kTasks);
  EXPECT_GE(w.at("sweepd_worker:tasks_failed_total{kind=\"synthetic\","
                 "permanent=\"false\"}"),
            1);
  EXPECT_EQ(w.at("sweepd_worker:generation_tokens_total{model_name=\"none\"}"),
            0);
  // A CPU worker has no GPU memory samples.
  EXPECT_THAT(worker_after->body,
              ::testing::Not(HasSubstr("gpu_memory_used_bytes")));
  coord_check = Promtool(*dir, "sweepd-after", coord_after->body);
  EXPECT_EQ(coord_check.exit_code, 0) << coord_check.output;
  worker_check = Promtool(*dir, "worker-after", worker_after->body);
  EXPECT_THAT(UnexpectedLint(worker_check.output), ::testing::IsEmpty());

  // Every metric the shipped Grafana dashboard queries is exposed (those that
  // need a GPU or a snapshot directory aside).
  std::set<std::string> families;
  for (const std::string* body : {&coord_after->body, &worker_after->body}) {
    for (absl::string_view line : absl::StrSplit(*body, '\n')) {
      if (!absl::StartsWith(line, "# TYPE ")) continue;
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      if (parts.size() >= 3) families.insert(parts[2]);
    }
  }
  std::ifstream dashboard_file("deploy/grafana/sweepd.json");
  ASSERT_TRUE(dashboard_file.good()) << "run from the source directory";
  const nlohmann::json dashboard = nlohmann::json::parse(dashboard_file);
  const std::regex metric_re("(sweepd_[a-z_:]+|grpc_server_[a-z_]+)");
  int queried = 0;
  for (const auto& panel : dashboard.at("panels")) {
    for (const auto& target : panel.at("targets")) {
      const std::string expr = target.at("expr");
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), metric_re);
           it != std::sregex_iterator(); ++it) {
        std::string name = (*it)[1];
        if (absl::EndsWith(name, "_bucket")) {
          name = name.substr(0, name.size() - 7);
        }
        if (name == "sweepd_worker:gpu_memory_used_bytes" ||
            name == "sweepd_snapshot_age_seconds") {
          continue;
        }
        ++queried;
        EXPECT_TRUE(families.count(name)) << "dashboard queries " << name;
      }
    }
  }
  EXPECT_GT(queried, 10);

  // SIGTERM drains the worker; --log-format json wrote JSON lines.
  ASSERT_TRUE((*worker)->Signal(SIGTERM).ok());
  auto exit = (*worker)->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  const std::string worker_log = ReadFileOrEmpty((*worker)->log_path());
  EXPECT_THAT(worker_log, HasSubstr("\"level\":\"info\""));
  EXPECT_THAT(worker_log, HasSubstr("\"msg\":\"draining"));
}

}  // namespace
}  // namespace sweepd::testing
