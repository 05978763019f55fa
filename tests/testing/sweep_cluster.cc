#include "tests/testing/sweep_cluster.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sweepd::testing {
namespace {

namespace v1 = ::sweepd::v1;

void SetDeadline(grpc::ClientContext* ctx, int64_t ms = 10'000) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(ms));
}

absl::Status FromGrpc(const grpc::Status& s, const char* what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

std::string Tail(const std::string& text, size_t n) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

}  // namespace

v1::SweepSpec SyntheticSweep(const std::string& name, int tasks, int min_ms,
                             int max_ms, double failure_rate, int max_attempts,
                             int lease_seconds) {
  v1::SweepSpec spec;
  spec.set_name(name);
  v1::SyntheticJob* job = spec.mutable_synthetic();
  job->set_tasks(tasks);
  job->set_min_ms(min_ms);
  job->set_max_ms(max_ms);
  job->set_failure_rate(failure_rate);
  spec.mutable_policy()->set_max_attempts(max_attempts);
  spec.mutable_policy()->set_retry_backoff_ms(50);
  if (lease_seconds > 0)
    spec.mutable_policy()->set_lease_seconds(lease_seconds);
  return spec;
}

absl::StatusOr<std::unique_ptr<SweepCluster>> SweepCluster::Create(
    const SweepClusterOptions& options) {
  if (options.dir.empty())
    return absl::InvalidArgumentError("SweepClusterOptions.dir is empty");
  auto cluster = std::unique_ptr<SweepCluster>(new SweepCluster(options));
  auto sweepd = BuildBinary("coordinator/sweepd");
  if (!sweepd.ok()) return sweepd.status();
  auto worker = BuildBinary("worker/sweep-worker");
  if (!worker.ok()) return worker.status();
  cluster->sweepd_path_ = *sweepd;
  cluster->worker_path_ = *worker;
  cluster->ledger_path_ = options.dir + "/ledger.db";
  cluster->port_file_ = options.dir + "/sweepd.port";
  if (options.fixed_port) {
    auto port = PickFreePort();
    if (!port.ok()) return port.status();
    cluster->port_ = *port;
  }
  return cluster;
}

SweepCluster::~SweepCluster() {
  for (auto& [name, w] : workers_) w->Kill();
  if (coordinator_ != nullptr) coordinator_->Kill();
}

std::string SweepCluster::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

absl::Status SweepCluster::StartCoordinator() {
  if (coordinator_ != nullptr && coordinator_->Running()) {
    return absl::FailedPreconditionError("sweepd is already running");
  }
  std::remove(port_file_.c_str());
  std::string log =
      absl::StrCat(options_.dir, "/sweepd.", ++coordinator_starts_, ".log");
  coordinator_logs_.push_back(log);
  SpawnOptions spawn;
  spawn.argv = {sweepd_path_, "--listen",   absl::StrCat("127.0.0.1:", port_),
                "--ledger",   ledger_path_, "--port-file",
                port_file_};
  for (const std::string& a : options_.sweepd_args) spawn.argv.push_back(a);
  spawn.log_path = log;
  const absl::Time spawned = absl::Now();
  auto proc = Process::Spawn(spawn);
  if (!proc.ok()) return proc.status();
  coordinator_ = std::move(*proc);
  auto port = WaitForPortFile(port_file_, *coordinator_, absl::Seconds(30));
  if (!port.ok()) return port.status();
  last_start_to_listening_ = absl::Now() - spawned;
  if (port_ != 0 && *port != port_) {
    return absl::InternalError(
        absl::StrCat("sweepd listens on ", *port, ", asked for ", port_));
  }
  port_ = *port;
  if (stub_ == nullptr) {
    absl::Status s = Connect();
    if (!s.ok()) return s;
  }
  // Ready when it answers.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (true) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, 2'000);
    v1::ListSweepsResponse resp;
    grpc::Status s = stub_->ListSweeps(&ctx, v1::ListSweepsRequest(), &resp);
    if (s.ok()) return absl::OkStatus();
    if (absl::Now() >= deadline || !coordinator_->Running()) {
      return absl::UnavailableError(absl::StrCat(
          "sweepd at ", address(), " does not answer: ", s.error_message(),
          "\n", DescribeLogs()));
    }
    absl::SleepFor(absl::Milliseconds(20));  // polling readiness
  }
}

absl::Status SweepCluster::Connect() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::InsecureChannelCredentials();
  if (!options_.tls_ca_file.empty()) {
    std::ifstream in(options_.tls_ca_file);
    std::stringstream ca;
    ca << in.rdbuf();
    if (!in || ca.str().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("SweepClusterOptions.tls_ca_file ", options_.tls_ca_file,
                       " cannot be read"));
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ca.str();
    credentials = grpc::SslCredentials(ssl);
    if (!options_.token.empty()) {
      credentials = grpc::CompositeChannelCredentials(
          credentials, grpc::AccessTokenCredentials(options_.token));
    }
  } else if (!options_.token.empty()) {
    return absl::InvalidArgumentError(
        "SweepClusterOptions.token needs tls_ca_file (no token over "
        "plaintext)");
  }
  auto channel = grpc::CreateCustomChannel(address(), credentials, args);
  stub_ = v1::Coordinator::NewStub(channel);
  return absl::OkStatus();
}

void SweepCluster::KillCoordinator() {
  if (coordinator_ != nullptr) coordinator_->Kill();
}

absl::StatusOr<ExitInfo> SweepCluster::StopCoordinator(absl::Duration grace) {
  if (coordinator_ == nullptr)
    return absl::FailedPreconditionError("sweepd never started");
  if (coordinator_->Running()) (void)coordinator_->Signal(SIGTERM);
  auto info = coordinator_->Wait(grace);
  if (info.ok()) return info;
  coordinator_->Kill();
  return coordinator_->Wait(absl::Seconds(5));
}

absl::StatusOr<Process*> SweepCluster::StartWorker(
    const std::string& name, const std::vector<std::string>& extra) {
  if (workers_.count(name) && workers_[name]->Running()) {
    return absl::AlreadyExistsError(
        absl::StrCat("worker ", name, " is running"));
  }
  SpawnOptions spawn;
  spawn.argv = {worker_path_, "--coordinator", address(), "--name", name};
  for (const std::string& a : extra) spawn.argv.push_back(a);
  spawn.log_path = absl::StrCat(options_.dir, "/worker-", name, ".log");
  auto proc = Process::Spawn(spawn);
  if (!proc.ok()) return proc.status();
  Process* raw = proc->get();
  workers_[name] = std::move(*proc);
  return raw;
}

Process* SweepCluster::worker(const std::string& name) {
  auto it = workers_.find(name);
  return it == workers_.end() ? nullptr : it->second.get();
}

absl::StatusOr<v1::SubmitSweepResponse> SweepCluster::Submit(
    const v1::SweepSpec& spec) {
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  v1::SubmitSweepRequest req;
  *req.mutable_spec() = spec;
  while (true) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, 30'000);
    v1::SubmitSweepResponse resp;
    grpc::Status s = stub_->SubmitSweep(&ctx, req, &resp);
    if (s.ok()) return resp;
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE ||
        absl::Now() >= deadline) {
      return FromGrpc(s, "SubmitSweep");
    }
    absl::SleepFor(absl::Milliseconds(50));  // retry pacing
  }
}

absl::StatusOr<v1::SweepStatus> SweepCluster::GetSweep(
    const std::string& sweep_id) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::GetSweepRequest req;
  req.set_sweep_id(sweep_id);
  v1::SweepStatus resp;
  grpc::Status s = stub_->GetSweep(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s, "GetSweep");
  return resp;
}

absl::StatusOr<v1::SweepStatus> SweepCluster::WaitForSweepEnd(
    const std::string& sweep_id, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  std::string last = "no answer yet";
  while (absl::Now() < deadline) {
    auto status = GetSweep(sweep_id);
    if (status.ok()) {
      if (status->state() != v1::SWEEP_STATE_RUNNING &&
          status->state() != v1::SWEEP_STATE_UNSPECIFIED) {
        return status;
      }
      last = status->counts().ShortDebugString();
    } else if (status.status().code() != absl::StatusCode::kUnavailable &&
               status.status().code() != absl::StatusCode::kDeadlineExceeded) {
      return status.status();
    }
    absl::SleepFor(absl::Milliseconds(100));  // polling progress
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "sweep ", sweep_id, " still running after ",
      absl::FormatDuration(timeout), " (", last, ")\n", DescribeLogs()));
}

absl::StatusOr<std::vector<v1::TaskRecord>> SweepCluster::ListAllTasks(
    const std::string& sweep_id, const std::vector<v1::TaskState>& states,
    int page_size) {
  std::vector<v1::TaskRecord> out;
  v1::ListResultsRequest req;
  req.set_sweep_id(sweep_id);
  req.set_page_size(page_size);
  for (v1::TaskState s : states) req.add_states(s);
  for (int pages = 0; pages < 100'000; ++pages) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, 30'000);
    v1::ListResultsResponse resp;
    grpc::Status s = stub_->ListResults(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc(s, "ListResults");
    for (auto& t : *resp.mutable_tasks()) out.push_back(std::move(t));
    if (resp.next_page_token().empty()) return out;
    req.set_page_token(resp.next_page_token());
  }
  return absl::InternalError("ListResults: more than 100000 pages");
}

absl::StatusOr<std::vector<v1::WorkerInfo>> SweepCluster::ListWorkers() {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ListWorkersResponse resp;
  grpc::Status s = stub_->ListWorkers(&ctx, v1::ListWorkersRequest(), &resp);
  if (!s.ok()) return FromGrpc(s, "ListWorkers");
  return std::vector<v1::WorkerInfo>(resp.workers().begin(),
                                     resp.workers().end());
}

std::string SweepCluster::DescribeLogs(size_t tail_bytes) const {
  std::string out;
  if (!coordinator_logs_.empty()) {
    const std::string& log = coordinator_logs_.back();
    absl::StrAppend(&out, "---- ", log, "\n",
                    Tail(ReadFileOrEmpty(log), tail_bytes), "\n");
  }
  for (const auto& [name, w] : workers_) {
    absl::StrAppend(&out, "---- ", w->log_path(), "\n",
                    Tail(ReadFileOrEmpty(w->log_path()), tail_bytes), "\n");
  }
  return out;
}

absl::StatusOr<LedgerCounts> ReadLedgerCounts(const std::string& ledger_path,
                                              const std::string& sweep_id) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(ledger_path.c_str(), &db, SQLITE_OPEN_READWRITE,
                      nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::NotFoundError(absl::StrCat("open ", ledger_path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 10'000);
  LedgerCounts c;
  auto query =
      [&](const std::string& sql,
          const std::function<void(sqlite3_stmt*)>& row) -> absl::Status {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
    }
    if (sql.find('?') != std::string::npos) {
      sqlite3_bind_text(st, 1, sweep_id.c_str(), -1, SQLITE_TRANSIENT);
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) row(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
      return absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
    }
    return absl::OkStatus();
  };
  absl::Status s =
      query(absl::StrCat(
                "SELECT count(*), count(DISTINCT task_key), ",
                "coalesce(sum(state = ", v1::TASK_STATE_DONE, "), 0), ",
                "coalesce(sum(state = ", v1::TASK_STATE_DONE,
                " AND result IS NOT NULL AND length(result) > 0), 0), ",
                "coalesce(sum(state = ", v1::TASK_STATE_FAILED, "), 0), ",
                "coalesce(sum(state IN (", v1::TASK_STATE_PENDING, ", ",
                v1::TASK_STATE_LEASED, ")), 0) FROM tasks WHERE sweep_id = ?"),
            [&](sqlite3_stmt* st) {
              c.tasks = sqlite3_column_int64(st, 0);
              c.distinct_keys = sqlite3_column_int64(st, 1);
              c.done = sqlite3_column_int64(st, 2);
              c.done_with_result = sqlite3_column_int64(st, 3);
              c.failed = sqlite3_column_int64(st, 4);
              c.not_terminal = sqlite3_column_int64(st, 5);
            });
  if (s.ok()) {
    s = query("SELECT coalesce(sum(tasks_done), 0) FROM workers",
              [&](sqlite3_stmt* st) {
                c.worker_tasks_done = sqlite3_column_int64(st, 0);
              });
  }
  if (s.ok()) {
    s = query("PRAGMA integrity_check", [&](sqlite3_stmt* st) {
      if (c.integrity_check.empty()) {
        c.integrity_check =
            reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      }
    });
  }
  sqlite3_close(db);
  if (!s.ok()) return s;
  return c;
}

absl::StatusOr<int64_t> QueryLedgerInt(const std::string& ledger_path,
                                       const std::string& sql,
                                       const std::string& param) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(ledger_path.c_str(), &db, SQLITE_OPEN_READWRITE,
                      nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::NotFoundError(absl::StrCat("open ", ledger_path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 10'000);
  sqlite3_stmt* st = nullptr;
  absl::StatusOr<int64_t> out =
      absl::NotFoundError(absl::StrCat(sql, ": no row"));
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    out = absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
  } else {
    sqlite3_bind_text(st, 1, param.c_str(), -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      out = sqlite3_column_int64(st, 0);
    } else if (rc != SQLITE_DONE) {
      out = absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

absl::Status MakeTinyModelWithWorker(const std::string& worker_bin,
                                     const std::string& out_dir,
                                     const std::string& log_path) {
  SpawnOptions make;
  make.argv = {worker_bin, "make-model",
               "--config", SourceDir() + "/configs/models/gemma4-tiny.json",
               "--seed",   "1",
               "--out",    out_dir};
  make.log_path = log_path;
  auto maker = Process::Spawn(make);
  if (!maker.ok()) return maker.status();
  auto made = (*maker)->Wait(absl::Seconds(120));
  if (!made.ok() || !made->exited || made->code != 0) {
    return absl::InternalError(
        absl::StrCat("sweep-worker make-model --out ", out_dir, " failed (",
                     made.ok() ? made->ToString() : made.status().ToString(),
                     "): ", ReadFileOrEmpty(log_path)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ArtifactCluster> StartTinyArtifactCluster(
    const std::string& dir, const std::string& worker_name) {
  auto worker_bin = BuildBinary("worker/sweep-worker");
  if (!worker_bin.ok()) return worker_bin.status();
  auto sweepd_bin = BuildBinary("coordinator/sweepd");
  if (!sweepd_bin.ok()) return sweepd_bin.status();
  ArtifactCluster out;
  out.models = dir + "/models";
  out.artifacts = dir + "/artifacts";
  const std::string model = out.models + "/gemma4-tiny";
  if (absl::Status s =
          MakeTinyModelWithWorker(*worker_bin, model, dir + "/make-model.log");
      !s.ok()) {
    return s;
  }
  SweepClusterOptions options;
  options.dir = dir;
  options.sweepd_args = {"--model-root",    out.models,
                         "--data-root",     SourceDir() + "/configs/data",
                         "--artifact-root", out.artifacts};
  auto cluster = SweepCluster::Create(options);
  if (!cluster.ok()) return cluster.status();
  if (absl::Status s = (*cluster)->StartCoordinator(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("starting sweepd: ", s.message(),
                                               (*cluster)->DescribeLogs()));
  }
  auto w = (*cluster)->StartWorker(
      worker_name,
      {"--model", model, "--model-root", out.models, "--artifact-root",
       out.artifacts, "--threads", "1", "--heartbeat-ms", "300"});
  if (!w.ok()) {
    return absl::Status(
        w.status().code(),
        absl::StrCat("starting worker ", worker_name, ": ",
                     w.status().message(), (*cluster)->DescribeLogs()));
  }
  out.cluster = std::move(*cluster);
  return out;
}

}  // namespace sweepd::testing
