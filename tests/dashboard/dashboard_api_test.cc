// dashboard/dashboard_api over an in-process Coordinator (fake clock): sweeps
// with progress and ETA, workers, filtered tasks, the report, /metrics, the
// page and its assets.
#include "dashboard/dashboard_api.h"

#include <map>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Await;
using ::sweepd::testing::MakePlan;
using ::sweepd::testing::PlanShape;
using ::testing::HasSubstr;
using json = nlohmann::json;

class DashboardApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions options;
    options.clock = &clock_;
    options.policy.lease_seconds = 30;
    auto c = ::sweepd::testing::StartTestCoordinator(options);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(*c);
    DashboardApiOptions api;
    api.scheduler = coordinator_->scheduler();
    api.ledger = coordinator_->ledger();
    api.clock = &clock_;
    api.worker_timeout_ms = 30'000;
    api.metrics = coordinator_->metrics()->collectables();
    api_ = std::make_unique<DashboardApi>(api);

    PlanShape shape;
    shape.sweep_id = "sw-dash";
    shape.tasks = 4;
    auto submitted = Await<SubmitOutcome>([&](auto cb) {
      coordinator_->scheduler()->SubmitPlan(MakePlan(shape), cb);
    });
    ASSERT_TRUE(submitted.ok()) << submitted.status();
    v1::WorkerCapabilities caps;
    caps.set_device_kind("NVIDIA H100 80GB HBM3");
    caps.set_gpu_count(2);
    caps.set_tensor_parallel(2);
    caps.set_model_fingerprint("model-a");
    auto reg = Await<v1::RegisterWorkerResponse>([&](auto cb) {
      coordinator_->scheduler()->RegisterWorker("gpu-worker", caps, cb);
    });
    ASSERT_TRUE(reg.ok()) << reg.status();
    worker_ = reg->worker_id();
  }
  void TearDown() override {
    api_.reset();
    if (coordinator_) {
      EXPECT_TRUE(coordinator_->Shutdown().ok());
    }
  }

  // Leases one task and reports it done with one metric.
  void FinishOne() {
    auto batch = Await<LeaseBatch>([&](auto cb) {
      coordinator_->scheduler()->LeaseTasks(worker_, 1, std::nullopt, cb);
    });
    ASSERT_TRUE(batch.ok() && batch->tasks.size() == 1);
    ResultReport report;
    report.worker_id = worker_;
    report.task_key = batch->tasks[0].task_key();
    report.fencing_token = batch->tasks[0].fencing_token();
    v1::TaskResult result;
    v1::Metric* m = result.add_metrics();
    m->set_name("value");
    m->set_value(1.5);
    report.result = result;
    auto done = Await<bool>(
        [&](auto cb) { coordinator_->scheduler()->ReportResult(report, cb); });
    ASSERT_TRUE(done.ok() && *done);
  }

  json Get(const std::string& path,
           const std::map<std::string, std::string>& query = {},
           int status = 200) {
    HttpReply r = api_->Handle(path, query);
    EXPECT_EQ(r.status, status) << path << ": " << r.body;
    EXPECT_EQ(r.content_type, "application/json");
    return json::parse(r.body);
  }

  FakeClock clock_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<DashboardApi> api_;
  std::string worker_;
};

TEST_F(DashboardApiTest, SweepsShowProgressRateAndEta) {
  json s = Get("/api/sweeps")["sweeps"];
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0]["sweep_id"], "sw-dash");
  EXPECT_EQ(s[0]["state"], "running");
  EXPECT_EQ(s[0]["total"], 4);
  EXPECT_EQ(s[0]["progress"], 0.0);
  EXPECT_TRUE(s[0]["eta_seconds"].is_null());
  ASSERT_NO_FATAL_FAILURE(FinishOne());
  clock_.AdvanceMs(10'000);
  s = Get("/api/sweeps")["sweeps"];
  EXPECT_EQ(s[0]["done"], 1);
  EXPECT_EQ(s[0]["progress"], 0.25);
  EXPECT_DOUBLE_EQ(s[0]["tasks_per_second"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(s[0]["eta_seconds"].get<double>(), 30.0);  // 3 left at 0.1/s
}

TEST_F(DashboardApiTest, WorkersShowDeviceTpModelLeasesAndLiveness) {
  ASSERT_NO_FATAL_FAILURE(FinishOne());
  auto batch = Await<LeaseBatch>([&](auto cb) {
    coordinator_->scheduler()->LeaseTasks(worker_, 1, std::nullopt, cb);
  });
  ASSERT_TRUE(batch.ok());
  json w = Get("/api/workers")["workers"];
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0]["name"], "gpu-worker");
  EXPECT_EQ(w[0]["device_kind"], "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(w[0]["gpu_count"], 2);
  EXPECT_EQ(w[0]["tensor_parallel"], 2);
  EXPECT_EQ(w[0]["model_fingerprint"], "model-a");
  EXPECT_EQ(w[0]["active_leases"], 1);
  EXPECT_EQ(w[0]["tasks_done"], 1);
  EXPECT_EQ(w[0]["draining"], false);
  EXPECT_EQ(w[0]["live"], true);
  clock_.AdvanceMs(31'000);
  w = Get("/api/workers")["workers"];
  EXPECT_EQ(w[0]["live"], false);
  EXPECT_DOUBLE_EQ(w[0]["heartbeat_age_seconds"].get<double>(), 31.0);
}

TEST_F(DashboardApiTest, TasksFilterByStateStageAndIntervention) {
  ASSERT_NO_FATAL_FAILURE(FinishOne());
  json all = Get("/api/sweeps/sw-dash/tasks");
  EXPECT_EQ(all["matched"], 4);
  EXPECT_EQ(all["tasks"].size(), 4u);
  EXPECT_EQ(all["stages"], json::array({""}));
  json done = Get("/api/sweeps/sw-dash/tasks", {{"state", "done"}});
  ASSERT_EQ(done["tasks"].size(), 1u);
  EXPECT_EQ(done["tasks"][0]["state"], "done");
  EXPECT_EQ(done["tasks"][0]["kind"], "synthetic");
  EXPECT_EQ(done["tasks"][0]["metrics"], 1);
  EXPECT_EQ(done["tasks"][0]["interventions"], "baseline");
  EXPECT_EQ(
      Get("/api/sweeps/sw-dash/tasks", {{"state", "pending,done"}})["matched"],
      4);
  EXPECT_EQ(
      Get("/api/sweeps/sw-dash/tasks", {{"intervention", "base"}})["matched"],
      4);
  EXPECT_EQ(
      Get("/api/sweeps/sw-dash/tasks", {{"intervention", "skip:"}})["matched"],
      0);
  EXPECT_EQ(Get("/api/sweeps/sw-dash/tasks", {{"stage", "probe"}})["matched"],
            0);
  json limited = Get("/api/sweeps/sw-dash/tasks", {{"limit", "2"}});
  EXPECT_EQ(limited["tasks"].size(), 2u);
  EXPECT_EQ(limited["truncated"], true);
  EXPECT_THAT(
      Get("/api/sweeps/sw-dash/tasks", {{"state", "bogus"}}, 400)["error"]
          .get<std::string>(),
      HasSubstr("bogus"));
  EXPECT_THAT(Get("/api/sweeps/sw-dash/tasks", {{"limit", "0"}}, 400)["error"]
                  .get<std::string>(),
              HasSubstr("limit"));
  Get("/api/sweeps/sw-nope/tasks", {}, 404);
}

TEST_F(DashboardApiTest, ReportIsTheSweepctlReportAndIsCachedPerVersion) {
  ASSERT_NO_FATAL_FAILURE(FinishOne());
  json r = Get("/api/sweeps/sw-dash/report");
  EXPECT_EQ(r["sweep_id"], "sw-dash");
  EXPECT_THAT(r["body"].get<std::string>(), HasSubstr("4 total, 1 done"));
  EXPECT_TRUE(r["specs"].is_object());
  const uint64_t version = r["version"];
  // Unchanged sweep: the same answer; a new result changes the version.
  EXPECT_EQ(Get("/api/sweeps/sw-dash/report")["body"], r["body"]);
  ASSERT_NO_FATAL_FAILURE(FinishOne());
  json r2 = Get("/api/sweeps/sw-dash/report");
  EXPECT_GT(r2["version"].get<uint64_t>(), version);
  EXPECT_THAT(r2["body"].get<std::string>(), HasSubstr("4 total, 2 done"));
  Get("/api/sweeps/sw-nope/report", {}, 404);
}

TEST_F(DashboardApiTest, ServesThePageAssetsAndMetrics) {
  HttpReply page = api_->Handle("/", {});
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.content_type, HasSubstr("text/html"));
  EXPECT_THAT(page.body, HasSubstr("id=\"sweeps-table\""));
  // No CDN: scripts come from this server.
  EXPECT_THAT(page.body, ::testing::Not(HasSubstr("https://")));
  for (const char* asset :
       {"vega.min.js", "vega-lite.min.js", "vega-embed.min.js"}) {
    HttpReply js = api_->Handle(std::string("/assets/") + asset, {});
    EXPECT_EQ(js.status, 200) << asset;
    EXPECT_GT(js.body.size(), 10'000u) << asset;
  }
  EXPECT_EQ(api_->Handle("/assets/jquery.js", {}).status, 404);
  HttpReply metrics = api_->Handle("/metrics", {});
  EXPECT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.body, HasSubstr("sweepd_sweeps{state=\"running\"} 1"));
  EXPECT_EQ(api_->Handle("/nowhere", {}).status, 404);
}

}  // namespace
}  // namespace sweepd
