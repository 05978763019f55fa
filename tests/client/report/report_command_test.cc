// Tests of `sweepctl report` against an in-process fake Coordinator on port 0:
// paging through ListResults, the written HTML, flag parsing and error exits.
#include "client/report_command.h"

#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/ctl_commands.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/client/report/report_test_util.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using ::sweepd::testing::MakeEval;
using ::sweepd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Serves `records` one per page ("p1", "p2", ...) and a sweep named
// "layer-study".
class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  explicit FakeCoordinator(std::vector<v1::TaskRecord> records)
      : records_(std::move(records)) {}

  grpc::Status GetSweep(grpc::ServerContext*, const v1::GetSweepRequest* req,
                        v1::SweepStatus* resp) override {
    if (req->sweep_id() != "sw-test") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no sweep " + req->sweep_id());
    }
    resp->set_sweep_id("sw-test");
    resp->set_name("layer-study");
    return grpc::Status::OK;
  }
  grpc::Status ListResults(grpc::ServerContext*,
                           const v1::ListResultsRequest* req,
                           v1::ListResultsResponse* resp) override {
    absl::MutexLock lock(&mu_);
    page_tokens_.push_back(req->page_token());
    if (req->sweep_id() != "sw-test") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no sweep " + req->sweep_id());
    }
    size_t index = 0;
    if (!req->page_token().empty())
      index = std::stoul(req->page_token().substr(1));
    if (index < records_.size()) *resp->add_tasks() = records_[index];
    if (index + 1 < records_.size())
      resp->set_next_page_token(absl::StrCat("p", index + 1));
    return grpc::Status::OK;
  }
  std::vector<std::string> page_tokens() {
    absl::MutexLock lock(&mu_);
    return page_tokens_;
  }

 private:
  const std::vector<v1::TaskRecord> records_;
  absl::Mutex mu_;
  std::vector<std::string> page_tokens_ ABSL_GUARDED_BY(mu_);
};

std::vector<v1::TaskRecord> Records() {
  const double t = 100;
  return {MakeEval("b", "wiki", 0, 1, {}, t * std::log(10.0), t),
          MakeEval("s0", "wiki", 0, 1, {{"skip", "0"}}, t * std::log(50.0), t),
          MakeEval("s1", "wiki", 0, 1, {{"skip", "1"}}, t * std::log(9.0), t)};
}

class ReportCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterCtlCommand(ReportCtlCommand());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = absl::StrCat("127.0.0.1:", port);
    std::string dir = ::testing::TempDir() + "/report-cmd-XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
  }
  void TearDown() override { server_->Shutdown(); }

  int Run(const std::vector<std::string>& args) {
    out_.str("");
    err_.str("");
    CtlEnv env{&out_, &err_, false, &clock_, ""};
    std::vector<std::string> full = {"--coordinator", address_};
    full.insert(full.end(), args.begin(), args.end());
    return RunSweepctl(full, env);
  }

  FakeCoordinator service_{Records()};
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::string dir_;
  FakeClock clock_;
  std::ostringstream out_, err_;
};

TEST_F(ReportCommandTest, FetchesEveryPageAndWritesTheReport) {
  const std::string path = dir_ + "/report.html";
  ASSERT_EQ(Run({"report", "sw-test", "--out", path, "--drop-k", "1",
                 "--critical-threshold", "200", "--num-layers", "2"}),
            0)
      << err_.str();
  EXPECT_THAT(service_.page_tokens(), ElementsAre("", "p1", "p2"));
  EXPECT_THAT(out_.str(), HasSubstr(absl::StrCat("wrote ", path,
                                                 ": 2 charts, 2 layers, 3/3")));
  std::ifstream in(path);
  std::stringstream html;
  html << in.rdbuf();
  EXPECT_THAT(html.str(), HasSubstr("<title>layer-study (sw-test)</title>"));
  EXPECT_THAT(html.str(), HasSubstr("id=\"chart-ablation\""));
  EXPECT_THAT(html.str(), HasSubstr("id=\"chart-safety\""));
  // Layer 0 (+400%) is above the 200% threshold; the k = 1 plan is layer 1,
  // measured -10%.
  EXPECT_THAT(html.str(),
              HasSubstr("Never touch (single-layer Δppl &gt; 200%): 0"));
  EXPECT_THAT(
      html.str(),
      HasSubstr("<tr><td>1</td><td>1</td><td>9</td><td>-10.0%</td></tr>"));
}

TEST_F(ReportCommandTest, ReportsUsageAndServerErrors) {
  EXPECT_EQ(Run({"report", "sw-test"}), kCtlExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--out FILE is required"));
  EXPECT_EQ(Run({"report", "sw-test", "--out", dir_ + "/x.html",
                 "--safety-weights", "1,2"}),
            kCtlExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--safety-weights: expected BI,VAR,DELTA"));
  EXPECT_EQ(Run({"report", "sw-other", "--out", dir_ + "/x.html"}),
            kCtlExitError);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND"));
  EXPECT_EQ(Run({"report", "sw-test", "--out", dir_ + "/x.html", "--title", "t",
                 "--safety-weights", "0,0,0"}),
            kCtlExitError);
  EXPECT_THAT(
      err_.str(),
      HasSubstr(
          "INVALID_ARGUMENT: safety weights bi, bi_var, delta are all zero"));
}

TEST(ParseReportArgsTest, ParsesEveryFlag) {
  absl::StatusOr<ReportCommandArgs> args = ParseReportArgs(
      {"sw-1", "--out=r.html", "--safety-weights", "0.5,0.25,0.25",
       "--critical-threshold", "800", "--drop-k", "10, 14,18",
       "--ablation-dataset", "wikitext", "--model-config", "m/config.json",
       "--num-layers", "60", "--title", "Study"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->sweep_id, "sw-1");
  EXPECT_EQ(args->out_path, "r.html");
  EXPECT_DOUBLE_EQ(args->options.weights.bi, 0.5);
  EXPECT_DOUBLE_EQ(args->options.weights.bi_var, 0.25);
  EXPECT_DOUBLE_EQ(args->options.weights.delta, 0.25);
  EXPECT_DOUBLE_EQ(args->options.critical_delta_pct, 800);
  EXPECT_THAT(args->options.drop_k, ElementsAre(10, 14, 18));
  EXPECT_EQ(args->options.ablation_dataset, "wikitext");
  EXPECT_EQ(args->model_config_path, "m/config.json");
  EXPECT_EQ(args->options.num_layers, 60);
  EXPECT_EQ(args->options.title, "Study");

  EXPECT_THAT(ParseReportArgs({"sw-1", "--out", "r", "--drop-k", "10,x"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--drop-k: \"x\" is not an integer")));
  EXPECT_THAT(ParseReportArgs({"sw-1", "--out", "r", "--colour", "red"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown flag --colour")));
  EXPECT_THAT(ParseReportArgs({"--out", "r"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("missing argument SWEEP")));
  EXPECT_THAT(ParseReportArgs({"sw-1", "--out"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--out needs a value")));
}

}  // namespace
}  // namespace sweepd
