// sweepctl: formatting, the progress meter, and the commands end to end against
// an in-process fake Coordinator service on a loopback port.
#include <stdlib.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "client/ctl_commands.h"
#include "client/ctl_format.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sweepd/v1/coordinator.grpc.pb.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

v1::TaskRecord Record(int64_t index, v1::TaskState state) {
  v1::TaskRecord r;
  r.set_sweep_id("sw-1");
  r.set_task_key(absl::StrCat("key", index, "aaaaaaaaaaaaaaaaaaaa"));
  r.set_state(state);
  r.mutable_spec()->set_index(index);
  r.mutable_spec()->set_seed(7);
  r.mutable_spec()
      ->mutable_interventions()
      ->add_interventions()
      ->mutable_skip()
      ->set_layers(absl::StrCat(index));
  (*r.mutable_spec()->mutable_params())["temperature"].set_double_value(0.5);
  r.mutable_spec()->mutable_data()->mutable_dataset()->set_name("wiki");
  r.mutable_spec()->mutable_data()->set_shard_index(1);
  if (state == v1::TASK_STATE_DONE) {
    v1::Metric* nll = r.mutable_result()->add_metrics();
    nll->set_name("nll");
    nll->set_value(2.5 + index);
    (*nll->mutable_labels())["category"] = "code, python";
    v1::Metric* ppl = r.mutable_result()->add_metrics();
    ppl->set_name("tokens");
    ppl->set_value(1000);
  } else {
    r.set_error("boom");
  }
  return r;
}

// ---- Formatting
// ----------------------------------------------------------------------------

TEST(CtlFormatTest, InterventionAndParamSummaries) {
  v1::InterventionSet set;
  EXPECT_EQ(InterventionSummary(set), "baseline");
  set.add_interventions()->mutable_skip()->set_layers("3");
  auto* hm = set.add_interventions()->mutable_mask_heads();
  hm->set_layer(4);
  hm->add_heads(0);
  hm->add_heads(1);
  auto* re = set.add_interventions()->mutable_reinit();
  re->set_layers("5-6");
  re->set_seed(9);
  EXPECT_EQ(InterventionSummary(set),
            "skip:3+mask_heads:4[0,1]+reinit:5-6@seed=9");

  v1::TaskSpec spec;
  (*spec.mutable_params())["z"].set_int_value(3);
  (*spec.mutable_params())["a"].set_string_value("x");
  (*spec.mutable_params())["m"].set_bool_value(true);
  EXPECT_EQ(ParamsSummary(spec), "a=x,m=true,z=3");
}

TEST(CtlFormatTest, SteerAndReplaceLayerSummariesNameTheirInputs) {
  v1::InterventionSet set;
  auto* st = set.add_interventions()->mutable_steer();
  st->set_layer(3);
  st->add_vector(1.0f);
  st->add_vector(2.0f);
  st->set_scale(2);
  st->add_positions(0);
  st->add_positions(-1);
  auto* rl = set.add_interventions()->mutable_replace_layer();
  rl->set_layer(4);
  rl->mutable_weights()->set_path("objects/ab/abcdef0123456789" +
                                  std::string(48, '0'));
  const std::string summary = InterventionSummary(set);
  EXPECT_THAT(summary, ::testing::StartsWith("steer:3[add,x2,pos=0,-1]#v"));
  EXPECT_THAT(summary, ::testing::EndsWith("+replace_layer:4#abcdef012345"));
  // Another inline vector, or an artifact vector, gives another summary.
  v1::InterventionSet other = set;
  other.mutable_interventions(0)->mutable_steer()->set_vector(1, 3.0f);
  EXPECT_NE(InterventionSummary(other), summary);
  v1::Steer art;
  art.set_layer(1);
  art.set_mode("replace");
  art.mutable_vector_artifact()->set_path("objects/12/1234567890abcdef" +
                                          std::string(48, '0'));
  art.mutable_vector_artifact()->set_tensor("dir");
  EXPECT_EQ(SteerSummary(art), "steer:1[replace,x1]#1234567890ab@dir");
}

TEST(CtlFormatTest, TidyRowsOnePerMetricOrOneForFailures) {
  std::vector<ResultRow> rows = TidyRows(Record(3, v1::TASK_STATE_DONE));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].metric, "nll");
  EXPECT_DOUBLE_EQ(rows[0].value, 5.5);
  EXPECT_EQ(rows[0].state, "done");
  EXPECT_EQ(rows[0].interventions, "skip:3");
  EXPECT_EQ(rows[0].params, "temperature=0.5");
  EXPECT_EQ(rows[0].dataset, "wiki#1");
  EXPECT_EQ(rows[0].labels.at("category"), "code, python");
  rows = TidyRows(Record(4, v1::TASK_STATE_FAILED));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_FALSE(rows[0].has_value);
  EXPECT_EQ(rows[0].error, "boom");
}

TEST(CtlFormatTest, CsvAndJsonOutput) {
  std::vector<ResultRow> rows = TidyRows(Record(1, v1::TASK_STATE_DONE));
  for (ResultRow& r : TidyRows(Record(2, v1::TASK_STATE_FAILED)))
    rows.push_back(r);
  std::ostringstream csv;
  WriteResults(rows, ResultFormat::kCsv, csv);
  std::vector<std::string> lines =
      absl::StrSplit(csv.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0],
            "sweep_id,task_key,index,state,interventions,params,seed,dataset,"
            "metric,category,"
            "value,error");
  EXPECT_EQ(lines[1],
            "sw-1,key1aaaaaaaaaaaaaaaaaaaa,1,done,skip:1,temperature=0.5,7,"
            "wiki#1,nll,"
            "\"code, python\",3.5,");
  EXPECT_EQ(lines[3],
            "sw-1,key2aaaaaaaaaaaaaaaaaaaa,2,failed,skip:2,temperature=0.5,7,"
            "wiki#1,,,,boom");

  std::ostringstream js;
  WriteResults(rows, ResultFormat::kJson, js);
  nlohmann::json parsed = nlohmann::json::parse(js.str());
  ASSERT_TRUE(parsed.is_array());
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed[0]["metric"], "nll");
  EXPECT_EQ(parsed[0]["labels"]["category"], "code, python");
  EXPECT_DOUBLE_EQ(parsed[1]["value"].get<double>(), 1000.0);
  EXPECT_TRUE(parsed[2]["value"].is_null());
  EXPECT_EQ(parsed[2]["state"], "failed");

  std::ostringstream table;
  WriteResults(rows, ResultFormat::kTable, table);
  EXPECT_THAT(table.str(),
              AllOf(HasSubstr("key1aaaaaaaa "), Not(HasSubstr("key1aaaaaaaaa")),
                    HasSubstr("code, python")));
}

TEST(CtlFormatTest, ParsesStatesAndFormats) {
  EXPECT_EQ(*ParseTaskState("done"), v1::TASK_STATE_DONE);
  EXPECT_EQ(*ParseTaskState("FAILED"), v1::TASK_STATE_FAILED);
  EXPECT_THAT(ParseTaskState("finished").status().message(),
              HasSubstr("pending, leased, done, failed, cancelled"));
  EXPECT_FALSE(ParseResultFormat("xml").ok());
  EXPECT_EQ(FormatDuration(5), "5s");
  EXPECT_EQ(FormatDuration(125), "2m05s");
  EXPECT_EQ(FormatDuration(3725), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "-");
  EXPECT_EQ(ResolveCoordinatorAddress("h:1", "e:2"), "h:1");
  EXPECT_EQ(ResolveCoordinatorAddress("", "e:2"), "e:2");
  EXPECT_EQ(ResolveCoordinatorAddress("", ""), "127.0.0.1:7070");
}

v1::SweepStatus Status(int64_t done, int64_t failed, int64_t total,
                       v1::SweepState state = v1::SWEEP_STATE_RUNNING) {
  v1::SweepStatus s;
  s.set_sweep_id("sw-1");
  s.set_state(state);
  s.mutable_counts()->set_total(total);
  s.mutable_counts()->set_done(done);
  s.mutable_counts()->set_failed(failed);
  return s;
}

// A running sweep whose 4 pending eval tasks no live worker runs.
v1::SweepStatus BlockedStatus() {
  v1::SweepStatus s = Status(0, 0, 4);
  s.set_sweep_id("sw-blocked");
  s.mutable_counts()->set_pending(4);
  v1::WaitingWork* w = s.add_waiting();
  w->set_kind(v1::JOB_KIND_EVAL);
  w->set_pending(4);
  w->set_no_capable_worker(true);
  s.set_blocked_reason(
      "no live worker can run 4 pending eval task(s); live workers: cpu-a "
      "runs synthetic with tensor_parallel 1");
  v1::WorkerOffer* o = s.add_live_workers();
  o->set_worker_id("w-1");
  o->set_name("cpu-a");
  o->add_job_kinds(v1::JOB_KIND_SYNTHETIC);
  o->set_tensor_parallel(1);
  return s;
}

TEST(CtlFormatTest, SweepDetailAndTableSayWhyTasksWait) {
  const std::string detail = FormatSweepDetail(BlockedStatus());
  EXPECT_THAT(detail, HasSubstr("waiting:    4 eval: no live worker runs it"));
  EXPECT_THAT(detail, HasSubstr("blocked:    no live worker can run 4 pending "
                                "eval task(s)"));
  EXPECT_THAT(detail,
              HasSubstr("worker:     cpu-a runs synthetic, tensor_parallel 1"));
  const std::string table =
      FormatSweepTable({BlockedStatus(), Status(1, 0, 2)});
  EXPECT_THAT(table, HasSubstr("sw-blocked blocked: no live worker can run"));
  EXPECT_EQ(FormatSweepTable({Status(1, 0, 2)}).find("blocked"),
            std::string::npos);
}

TEST(ProgressMeterTest, RateOverSlidingWindowAndEta) {
  FakeClock clock;
  ProgressMeter meter(&clock, /*window_ms=*/30'000);
  meter.Observe(Status(0, 0, 1000));
  EXPECT_EQ(meter.Rate(), 0.0);
  EXPECT_LT(meter.EtaSeconds(), 0);
  clock.AdvanceMs(10'000);
  meter.Observe(Status(90, 10, 1000));
  EXPECT_DOUBLE_EQ(meter.Rate(), 10.0);
  EXPECT_DOUBLE_EQ(meter.EtaSeconds(), 90.0);
  EXPECT_THAT(meter.Line(10),
              AllOf(HasSubstr("[#.........] 90/1000 done"),
                    HasSubstr("10 failed"), HasSubstr("10.0 tasks/s"),
                    HasSubstr("ETA 1m30s"), HasSubstr("running")));
  // A stall longer than the window: the old burst leaves the window and the
  // rate drops.
  clock.AdvanceMs(40'000);
  meter.Observe(Status(90, 10, 1000));
  EXPECT_DOUBLE_EQ(meter.Rate(), 0.0);
  clock.AdvanceMs(5'000);
  meter.Observe(Status(190, 10, 1000));
  EXPECT_DOUBLE_EQ(
      meter.Rate(),
      100.0 / 45.0);  // anchor: last sample before the window (t = 10 s)
}

// ---- Commands against a fake coordinator
// ---------------------------------------------------

class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  grpc::Status SubmitSweep(grpc::ServerContext*,
                           const v1::SubmitSweepRequest* req,
                           v1::SubmitSweepResponse* resp) override {
    absl::MutexLock lock(&mu_);
    submitted_.push_back(req->spec());
    resp->set_sweep_id("sw-new");
    resp->set_total_tasks(req->spec().synthetic().tasks());
    return grpc::Status::OK;
  }
  grpc::Status GetSweep(grpc::ServerContext*, const v1::GetSweepRequest* req,
                        v1::SweepStatus* resp) override {
    if (req->sweep_id() == "sw-failed") {
      *resp = Status(8, 2, 10, v1::SWEEP_STATE_FAILED);
      return grpc::Status::OK;
    }
    if (req->sweep_id() == "sw-blocked") {
      *resp = BlockedStatus();
      return grpc::Status::OK;
    }
    if (req->sweep_id() != "sw-1" && req->sweep_id() != "sw-new") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no sweep " + req->sweep_id());
    }
    *resp = Status(10, 0, 10, v1::SWEEP_STATE_DONE);
    resp->set_name("demo");
    return grpc::Status::OK;
  }
  // Two pages: "first", then "second-page".
  grpc::Status ListSweeps(grpc::ServerContext*,
                          const v1::ListSweepsRequest* req,
                          v1::ListSweepsResponse* resp) override {
    {
      absl::MutexLock lock(&mu_);
      list_requests_.push_back(*req);
    }
    *resp->add_sweeps() = Status(3, 1, 10);
    if (req->page_token().empty()) {
      resp->mutable_sweeps(0)->set_name("first");
      resp->set_next_page_token("page-2");
    } else {
      resp->mutable_sweeps(0)->set_sweep_id("sw-2");
      resp->mutable_sweeps(0)->set_name("second-page");
    }
    return grpc::Status::OK;
  }
  std::vector<v1::ListSweepsRequest> list_requests() {
    absl::MutexLock lock(&mu_);
    return list_requests_;
  }
  grpc::Status WatchSweep(grpc::ServerContext*,
                          const v1::WatchSweepRequest* req,
                          grpc::ServerWriter<v1::SweepEvent>* writer) override {
    if (req->sweep_id() == "sw-missing") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no sweep sw-missing");
    }
    const bool fail = req->sweep_id() == "sw-failed";
    if (req->sweep_id() == "sw-blocked") {
      // Blocked, then a capable worker registers (same counts), then done.
      v1::SweepEvent e;
      *e.mutable_status() = BlockedStatus();
      writer->Write(e);
      *e.mutable_status() = Status(0, 0, 4);
      writer->Write(e);
      *e.mutable_status() = Status(4, 0, 4, v1::SWEEP_STATE_DONE);
      writer->Write(e);
      return grpc::Status::OK;
    }
    for (int64_t done : {0, 5, 8}) {
      v1::SweepEvent e;
      *e.mutable_status() = Status(done, 0, 10);
      writer->Write(e);
    }
    v1::SweepEvent last;
    *last.mutable_status() = fail ? Status(8, 2, 10, v1::SWEEP_STATE_FAILED)
                                  : Status(10, 0, 10, v1::SWEEP_STATE_DONE);
    writer->Write(last);
    return grpc::Status::OK;
  }
  grpc::Status CancelSweep(grpc::ServerContext*,
                           const v1::CancelSweepRequest* req,
                           v1::CancelSweepResponse* resp) override {
    resp->set_cancelled_tasks(req->sweep_id() == "sw-1" ? 4 : 0);
    return grpc::Status::OK;
  }
  grpc::Status ListResults(grpc::ServerContext*,
                           const v1::ListResultsRequest* req,
                           v1::ListResultsResponse* resp) override {
    absl::MutexLock lock(&mu_);
    result_requests_.push_back(*req);
    if (req->page_token().empty()) {
      *resp->add_tasks() = Record(0, v1::TASK_STATE_DONE);
      resp->set_next_page_token("p2");
    } else if (req->page_token() == "p2") {
      *resp->add_tasks() = Record(1, v1::TASK_STATE_DONE);
    } else {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad page token");
    }
    return grpc::Status::OK;
  }
  grpc::Status ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                           v1::ListWorkersResponse* resp) override {
    v1::WorkerInfo* w = resp->add_workers();
    w->set_worker_id("w-1");
    w->set_name("gpu-node-a");
    w->set_device_kind("cpu");
    w->set_active_leases(2);
    w->set_tasks_done(17);
    return grpc::Status::OK;
  }

  std::vector<v1::SweepSpec> submitted() {
    absl::MutexLock lock(&mu_);
    return submitted_;
  }
  std::vector<v1::ListResultsRequest> result_requests() {
    absl::MutexLock lock(&mu_);
    return result_requests_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::SweepSpec> submitted_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ListSweepsRequest> list_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ListResultsRequest> result_requests_ ABSL_GUARDED_BY(mu_);
};

class SweepctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  void TearDown() override { server_->Shutdown(); }

  int Run(std::vector<std::string> args, bool tty = false) {
    out_.str("");
    err_.str("");
    CtlEnv env;
    env.out = &out_;
    env.err = &err_;
    env.out_is_tty = tty;
    env.clock = &clock_;
    env.env_coordinator = address_;  // as if $SWEEPD_COORDINATOR were set
    return RunSweepctl(args, env);
  }

  FakeCoordinator service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  FakeClock clock_;
  std::ostringstream out_, err_;
};

TEST_F(SweepctlTest, ResultsPagesThroughAndFiltersByState) {
  ASSERT_EQ(
      Run({"results", "sw-1", "--format", "csv", "--state", "done,failed"}), 0)
      << err_.str();
  std::vector<std::string> lines =
      absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u);  // header + 2 tasks x 2 metrics
  EXPECT_THAT(lines[1], HasSubstr(",0,done,skip:0,"));
  EXPECT_THAT(lines[3], HasSubstr(",1,done,skip:1,"));
  auto reqs = service_.result_requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].page_token(), "p2");
  EXPECT_THAT(reqs[0].states(),
              ElementsAre(v1::TASK_STATE_DONE, v1::TASK_STATE_FAILED));

  ASSERT_EQ(Run({"results", "sw-1", "--format=json"}), 0) << err_.str();
  EXPECT_EQ(nlohmann::json::parse(out_.str()).size(), 4u);
}

TEST_F(SweepctlTest, ServerErrorsGoToStderrWithTheirCode) {
  EXPECT_EQ(Run({"status", "sw-nope"}), kCtlExitError);
  EXPECT_THAT(err_.str(),
              AllOf(HasSubstr("sweepctl status: NOT_FOUND: no sweep sw-nope"),
                    HasSubstr(address_)));
  EXPECT_EQ(Run({"watch", "sw-missing"}), kCtlExitError);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND: no sweep sw-missing"));
}

TEST_F(SweepctlTest, StatusCancelAndWorkers) {
  ASSERT_EQ(Run({"status"}), 0) << err_.str();
  EXPECT_THAT(out_.str(),
              AllOf(HasSubstr("SWEEP"), HasSubstr("first"), HasSubstr("3/10")));
  ASSERT_EQ(Run({"status", "sw-1"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("name:       demo"),
                                HasSubstr("state:      done")));
  ASSERT_EQ(Run({"cancel", "sw-1"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("4 tasks cancelled"));
  ASSERT_EQ(Run({"workers"}), 0);
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("gpu-node-a"), HasSubstr("17")));
}

// Listings are paged and carry no specs, so large specs cannot make them
// exceed the message limit.
TEST_F(SweepctlTest, StatusListsEveryPageWithoutSpecs) {
  ASSERT_EQ(Run({"status"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("first"), HasSubstr("second-page")));
  const auto requests = service_.list_requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_GT(requests[0].page_size(), 0);
  EXPECT_FALSE(requests[0].include_spec());
  EXPECT_EQ(requests[0].page_token(), "");
  EXPECT_EQ(requests[1].page_token(), "page-2");
}

TEST_F(SweepctlTest, WatchPrintsOneLinePerUpdateAndExitsOnTheFinalState) {
  ASSERT_EQ(Run({"watch", "sw-1"}), 0) << err_.str();
  std::vector<std::string> lines =
      absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_THAT(lines[1], HasSubstr("5/10 done"));
  EXPECT_THAT(lines[4], HasSubstr("sweep sw-1 done: 10/10 done"));
  EXPECT_EQ(out_.str().find('\r'), std::string::npos);

  ASSERT_EQ(Run({"watch", "sw-1"}, /*tty=*/true), 0);
  EXPECT_NE(out_.str().find("\r["), std::string::npos);

  EXPECT_EQ(Run({"watch", "sw-failed"}), kCtlExitSweepFailed);
  EXPECT_THAT(out_.str(),
              HasSubstr("sweep sw-failed failed: 8/10 done, 2 failed"));
}

TEST_F(SweepctlTest, StatusAndWatchSayWhyPendingTasksWait) {
  ASSERT_EQ(Run({"status", "sw-blocked"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("waiting:    4 eval"),
                                HasSubstr("blocked:    no live worker can run"),
                                HasSubstr("worker:     cpu-a runs synthetic")));
  ASSERT_EQ(Run({"watch", "sw-blocked"}), 0) << err_.str();
  std::vector<std::string> lines =
      absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 6u) << out_.str();
  EXPECT_THAT(lines[0], HasSubstr("blocked: no live worker can run 4 pending "
                                  "eval task(s); live workers: cpu-a"));
  EXPECT_THAT(lines[1], HasSubstr("0/4 done"));
  EXPECT_THAT(lines[2], HasSubstr("unblocked"));
  EXPECT_THAT(lines[5], HasSubstr("sweep sw-blocked done"));
}

TEST_F(SweepctlTest, SubmitReadsTheSpecFileAndCanWatch) {
  std::string dir = ::testing::TempDir() + "/ctl_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string path = dir + "/s.yaml";
  std::ofstream(path) << "name: from-file\nsynthetic: {tasks: 10, max_ms: 5}\n";
  ASSERT_EQ(Run({"--coordinator", address_, "submit", path, "--watch"}), 0)
      << err_.str();
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("submitted sweep sw-new (10 tasks)"),
                                HasSubstr("sweep sw-new done")));
  ASSERT_EQ(service_.submitted().size(), 1u);
  EXPECT_EQ(service_.submitted()[0].name(), "from-file");

  std::ofstream(dir + "/bad.yaml") << "name: x\nsynthetic: {taks: 10}\n";
  EXPECT_EQ(Run({"submit", dir + "/bad.yaml"}), kCtlExitError);
  EXPECT_THAT(err_.str(),
              AllOf(HasSubstr("INVALID_ARGUMENT"),
                    HasSubstr("unknown field 'taks' at synthetic")));
  EXPECT_EQ(service_.submitted().size(), 1u);

  // Invalid UTF-8: a clear error and exit 1, not an abort.
  std::ofstream(dir + "/latin1.yaml") << "name: caf\xe9\nsynthetic: {}\n";
  EXPECT_EQ(Run({"submit", dir + "/latin1.yaml"}), kCtlExitError);
  EXPECT_THAT(err_.str(), HasSubstr("latin1.yaml is not valid UTF-8: byte "
                                    "0xe9 at line 1, column 10"));
  EXPECT_EQ(service_.submitted().size(), 1u);
}

TEST_F(SweepctlTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Run({}), kCtlExitUsage);
  EXPECT_EQ(Run({"frobnicate"}), kCtlExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("unknown command 'frobnicate'"));
  EXPECT_EQ(Run({"results", "sw-1", "--format", "xml"}), kCtlExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("unknown format 'xml'"));
  EXPECT_EQ(Run({"results", "sw-1", "--bogus"}), kCtlExitUsage);
  EXPECT_EQ(Run({"watch"}), kCtlExitUsage);
  EXPECT_EQ(Run({"--timeout-s", "-3", "status"}), kCtlExitUsage);
  EXPECT_EQ(Run({"results", "--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("--format"));
}

TEST(CtlCommandsTest, ReportCanBeRegistered) {
  CtlCommand report;
  report.name = "report";
  report.args = "SWEEP";
  report.summary = "Render a report.";
  report.run = [](CtlContext& ctx, const std::vector<std::string>& args) {
    *ctx.env.out << "report for " << args.at(0) << " via " << ctx.coordinator
                 << "\n";
    return 0;
  };
  RegisterCtlCommand(report);
  std::ostringstream out, err;
  FakeClock clock;
  CtlEnv env{&out, &err, false, &clock, ""};
  EXPECT_EQ(RunSweepctl({"report", "sw-9"}, env), 0);
  EXPECT_EQ(out.str(), "report for sw-9 via 127.0.0.1:7070\n");
}

}  // namespace
}  // namespace sweepd
