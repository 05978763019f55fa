// libFuzzer target for the coordinator's RPC handlers: every input is a
// sequence of calls to a fresh in-process Coordinator (the one sweepd builds:
// temp ledger, FakeClock, 127.0.0.1 port 0, called through the server's
// in-process channel), each with an arbitrary request.
//
// Input: records of [op][fix][length, 2 bytes little-endian][payload]. `op`
// picks the call (or a clock step / maintenance Tick); the payload is the
// request's protobuf encoding. A payload that parses as the request type is
// first patched with ids the sequence has seen (`fix` bits: a registered
// worker id, a granted lease's task key and fencing token, a submitted sweep
// id), so mutations reach past "unknown worker" into leases, reports and
// cancels; one that does not parse goes to the server as raw bytes.
//
// Checks besides "no crash, no sanitizer report":
//   - every call completes within 20 s (a hang is a finding);
//   - its status is one a handler may give: never UNKNOWN, INTERNAL,
//     UNIMPLEMENTED, DATA_LOSS, UNAUTHENTICATED (no auth configured), and
//     every error carries a message. gRPC's own answer to request bytes that
//     are not the request type (UNIMPLEMENTED or INTERNAL, empty) is accepted
//     for every method but SubmitSweep, which parses its bytes itself and must
//     answer INVALID_ARGUMENT naming what is wrong;
//   - fencing tokens of granted leases only grow; no task's result is
//     acknowledged as committed twice;
//   - at the end, after Shutdown, the ledger passes PRAGMA integrity_check and
//     every task acknowledged as committed is DONE in it.
//
// SWEEPD_RPC_FUZZER_WRITE_SEEDS=DIR: write the seed corpus (call sequences
// over the example sweep specs under configs/sweeps/ and a synthetic sweep)
// into DIR and exit; run from the repository root. scripts/fuzz.sh runs the
// target on tests/fuzz/corpus/rpc_fuzzer/.
#include <grpcpp/generic/generic_stub.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "client/spec_loader.h"
#include "common/clock.h"
#include "common/logging.h"
#include "coordinator/coordinator.h"
#include "grpcpp/grpcpp.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "sweepd/v1/worker.grpc.pb.h"

namespace sweepd {
namespace {

namespace fs = std::filesystem;

enum Op : uint8_t {
  kSubmitSweep,
  kGetSweep,
  kListSweeps,
  kWatchSweep,
  kCancelSweep,
  kListResults,
  kListWorkers,
  kRegisterWorker,
  kLeaseTasks,
  kHeartbeat,
  kReportResult,
  kReleaseTasks,
  kAdvanceClock,  // payload: milliseconds, 4 bytes little-endian
  kTick,          // Coordinator::Tick (snapshots off: health only)
  kOpCount,
};

const char* MethodOf(Op op) {
  switch (op) {
    case kSubmitSweep:
      return "/sweepd.v1.Coordinator/SubmitSweep";
    case kGetSweep:
      return "/sweepd.v1.Coordinator/GetSweep";
    case kListSweeps:
      return "/sweepd.v1.Coordinator/ListSweeps";
    case kWatchSweep:
      return "/sweepd.v1.Coordinator/WatchSweep";
    case kCancelSweep:
      return "/sweepd.v1.Coordinator/CancelSweep";
    case kListResults:
      return "/sweepd.v1.Coordinator/ListResults";
    case kListWorkers:
      return "/sweepd.v1.Coordinator/ListWorkers";
    case kRegisterWorker:
      return "/sweepd.v1.WorkerGateway/RegisterWorker";
    case kLeaseTasks:
      return "/sweepd.v1.WorkerGateway/LeaseTasks";
    case kHeartbeat:
      return "/sweepd.v1.WorkerGateway/Heartbeat";
    case kReportResult:
      return "/sweepd.v1.WorkerGateway/ReportResult";
    case kReleaseTasks:
      return "/sweepd.v1.WorkerGateway/ReleaseTasks";
    default:
      return "";
  }
}

// `fix` bits.
constexpr uint8_t kFixWorker = 1;  // worker_id := a registered worker
constexpr uint8_t kFixLease = 2;   // task_key, fencing_token := a granted lease
constexpr uint8_t kFixSweep = 4;   // sweep_id := a submitted sweep
// Which of the known ids to use: (fix >> 3) modulo their count.
constexpr int kFixIndexShift = 3;

[[noreturn]] void Finding(const std::string& what) {
  std::fprintf(stderr, "rpc_fuzzer finding: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// What the sequence has seen so far.
struct Seen {
  std::vector<std::string> workers;
  std::vector<std::string> sweeps;
  std::vector<v1::TaskAssignment> leases;
  std::set<std::string> committed;  // task keys acknowledged committed=true
  int64_t max_token = 0;
};

template <typename T>
const T* Pick(const std::vector<T>& items, uint8_t fix) {
  if (items.empty()) return nullptr;
  return &items[(fix >> kFixIndexShift) % items.size()];
}

// Patches a parsed request with ids the sequence has seen.
void Fix(Op op, uint8_t fix, const Seen& seen, google::protobuf::Message* m) {
  const std::string* worker =
      (fix & kFixWorker) ? Pick(seen.workers, fix) : nullptr;
  const v1::TaskAssignment* lease =
      (fix & kFixLease) ? Pick(seen.leases, fix) : nullptr;
  const std::string* sweep =
      (fix & kFixSweep) ? Pick(seen.sweeps, fix) : nullptr;
  auto set_progress = [&](v1::LeaseProgress* p) {
    if (lease == nullptr) return;
    p->set_task_key(lease->task_key());
    p->set_fencing_token(lease->fencing_token());
  };
  switch (op) {
    case kGetSweep:
      if (sweep) static_cast<v1::GetSweepRequest*>(m)->set_sweep_id(*sweep);
      break;
    case kWatchSweep:
      if (sweep) static_cast<v1::WatchSweepRequest*>(m)->set_sweep_id(*sweep);
      break;
    case kCancelSweep:
      if (sweep) static_cast<v1::CancelSweepRequest*>(m)->set_sweep_id(*sweep);
      break;
    case kListResults:
      if (sweep) static_cast<v1::ListResultsRequest*>(m)->set_sweep_id(*sweep);
      break;
    case kLeaseTasks:
      if (worker)
        static_cast<v1::LeaseTasksRequest*>(m)->set_worker_id(*worker);
      break;
    case kHeartbeat: {
      auto* r = static_cast<v1::HeartbeatRequest*>(m);
      if (worker) r->set_worker_id(*worker);
      if (lease) set_progress(r->add_leases());
      break;
    }
    case kReportResult: {
      auto* r = static_cast<v1::ReportResultRequest*>(m);
      if (worker) r->set_worker_id(*worker);
      if (lease) {
        r->set_task_key(lease->task_key());
        r->set_fencing_token(lease->fencing_token());
      }
      break;
    }
    case kReleaseTasks: {
      auto* r = static_cast<v1::ReleaseTasksRequest*>(m);
      if (worker) r->set_worker_id(*worker);
      if (lease) set_progress(r->add_leases());
      break;
    }
    default:
      break;
  }
}

std::unique_ptr<google::protobuf::Message> NewRequest(Op op) {
  switch (op) {
    case kSubmitSweep:
      return std::make_unique<v1::SubmitSweepRequest>();
    case kGetSweep:
      return std::make_unique<v1::GetSweepRequest>();
    case kListSweeps:
      return std::make_unique<v1::ListSweepsRequest>();
    case kWatchSweep:
      return std::make_unique<v1::WatchSweepRequest>();
    case kCancelSweep:
      return std::make_unique<v1::CancelSweepRequest>();
    case kListResults:
      return std::make_unique<v1::ListResultsRequest>();
    case kListWorkers:
      return std::make_unique<v1::ListWorkersRequest>();
    case kRegisterWorker:
      return std::make_unique<v1::RegisterWorkerRequest>();
    case kLeaseTasks:
      return std::make_unique<v1::LeaseTasksRequest>();
    case kHeartbeat:
      return std::make_unique<v1::HeartbeatRequest>();
    case kReportResult:
      return std::make_unique<v1::ReportResultRequest>();
    case kReleaseTasks:
      return std::make_unique<v1::ReleaseTasksRequest>();
    default:
      return nullptr;
  }
}

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

std::unique_ptr<grpc::ClientContext> NewContext() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
  return ctx;
}

// The status rules in the header comment.
void CheckStatus(Op op, bool parsed, const grpc::Status& status) {
  const std::string where =
      std::string(MethodOf(op)) + (parsed ? "" : " (unparsable request)");
  const grpc::StatusCode code = status.error_code();
  if (code == grpc::StatusCode::OK) return;
  if (!parsed && op != kSubmitSweep &&
      (code == grpc::StatusCode::UNIMPLEMENTED ||
       code == grpc::StatusCode::INTERNAL)) {
    return;  // gRPC's deserialization failure, before any handler
  }
  switch (code) {
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      Finding(where + " answered code " + std::to_string(code) + ": " +
              status.error_message());
    default:
      break;
  }
  if (status.error_message().empty()) {
    Finding(where + " answered code " + std::to_string(code) +
            " without a message");
  }
  if (!parsed && op == kSubmitSweep &&
      code != grpc::StatusCode::INVALID_ARGUMENT) {
    Finding(where + " answered code " + std::to_string(code) +
            " instead of INVALID_ARGUMENT: " + status.error_message());
  }
}

// Learns ids from a successful reply and checks the lease and result rules.
void Learn(Op op, const std::string& request_bytes, const std::string& reply,
           Seen* seen) {
  switch (op) {
    case kSubmitSweep: {
      v1::SubmitSweepResponse r;
      if (r.ParseFromString(reply) && !r.sweep_id().empty())
        seen->sweeps.push_back(r.sweep_id());
      break;
    }
    case kRegisterWorker: {
      v1::RegisterWorkerResponse r;
      if (r.ParseFromString(reply) && !r.worker_id().empty())
        seen->workers.push_back(r.worker_id());
      break;
    }
    case kLeaseTasks: {
      v1::LeaseTasksResponse r;
      if (!r.ParseFromString(reply)) Finding("LeaseTasks reply does not parse");
      for (const v1::TaskAssignment& a : r.tasks()) {
        if (a.fencing_token() <= seen->max_token) {
          Finding("LeaseTasks granted fencing token " +
                  std::to_string(a.fencing_token()) + " after " +
                  std::to_string(seen->max_token));
        }
        seen->max_token = a.fencing_token();
        seen->leases.push_back(a);
      }
      break;
    }
    case kReportResult: {
      v1::ReportResultResponse r;
      v1::ReportResultRequest req;
      if (!r.ParseFromString(reply) || !req.ParseFromString(request_bytes))
        Finding("ReportResult request or reply does not parse");
      if (r.committed() && req.has_result() &&
          !seen->committed.insert(req.task_key()).second) {
        Finding("ReportResult committed task " + req.task_key() + " twice");
      }
      break;
    }
    default:
      break;
  }
}

// One fuzz input's coordinator, in a temp directory of its own.
class Harness {
 public:
  Harness() : clock_(1'700'000'000'000) {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base ? base : "/tmp") +
                       "/sweepd-rpc-fuzz-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) Finding("mkdtemp failed");
    dir_ = tmpl;
    fs::create_directories(dir_ + "/models");
    fs::create_directories(dir_ + "/data");
    CoordinatorOptions options;
    options.ledger_path = dir_ + "/ledger.db";
    options.listen = "127.0.0.1:0";
    options.model_root = dir_ + "/models";
    options.data_root = dir_ + "/data";
    options.clock = &clock_;
    options.service.executor_threads = 2;
    options.service.planner.fingerprint_cache = "off";
    options.ledger.reader_connections = 2;
    auto c = Coordinator::Create(options);
    if (!c.ok()) Finding("Coordinator::Create: " + c.status().ToString());
    coordinator_ = std::move(*c);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = coordinator_->server()->InProcessChannel(args);
    stub_ = std::make_unique<grpc::GenericStub>(channel_);
    watch_stub_ = v1::Coordinator::NewStub(channel_);
  }

  ~Harness() {
    stub_.reset();
    watch_stub_.reset();
    channel_.reset();
    const absl::Status closed = coordinator_->Shutdown(absl::Seconds(5));
    if (!closed.ok()) Finding("Shutdown: " + closed.ToString());
    coordinator_.reset();
    CheckLedger();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void Run(Op op, uint8_t fix, const std::string& payload) {
    if (op == kAdvanceClock) {
      uint32_t ms = 0;
      for (size_t i = 0; i < 4 && i < payload.size(); ++i)
        ms |= uint32_t{static_cast<uint8_t>(payload[i])} << (8 * i);
      clock_.AdvanceMs(ms % 3'600'000);
      return;
    }
    if (op == kTick) {
      const absl::Status health = coordinator_->Tick();
      if (!health.ok()) Finding("Tick: " + health.ToString());
      return;
    }
    std::unique_ptr<google::protobuf::Message> request = NewRequest(op);
    std::string bytes = payload;
    const bool parsed = request->ParseFromString(payload);
    if (parsed) {
      Fix(op, fix, seen_, request.get());
      bytes = request->SerializeAsString();
    }
    if (op == kWatchSweep) return Watch(parsed, bytes);

    grpc::ByteBuffer request_buffer = ToBuffer(bytes);
    grpc::ByteBuffer reply;
    grpc::Status status;
    absl::Notification done;
    auto ctx = NewContext();
    stub_->UnaryCall(ctx.get(), MethodOf(op), grpc::StubOptions(),
                     &request_buffer, &reply, [&](grpc::Status s) {
                       status = std::move(s);
                       done.Notify();
                     });
    done.WaitForNotification();
    CheckStatus(op, parsed, status);
    if (status.ok()) Learn(op, bytes, FromBuffer(reply), &seen_);
  }

 private:
  // WatchSweep: the first event (or the error), then the client cancels.
  void Watch(bool parsed, const std::string& bytes) {
    v1::WatchSweepRequest req;
    if (!parsed || !req.ParseFromString(bytes)) {
      // The streaming stub cannot send raw bytes; unparsable requests are
      // covered by the unary methods.
      return;
    }
    auto ctx = NewContext();
    std::unique_ptr<grpc::ClientReader<v1::SweepEvent>> reader =
        watch_stub_->WatchSweep(ctx.get(), req);
    v1::SweepEvent event;
    if (reader->Read(&event)) {
      if (event.status().sweep_id() != req.sweep_id())
        Finding("WatchSweep sent another sweep's status");
      ctx->TryCancel();
      while (reader->Read(&event)) {
      }
      const grpc::Status s = reader->Finish();
      if (s.error_code() != grpc::StatusCode::CANCELLED &&
          s.error_code() != grpc::StatusCode::OK) {
        CheckStatus(kWatchSweep, true, s);
      }
      return;
    }
    CheckStatus(kWatchSweep, true, reader->Finish());
  }

  void CheckLedger() {
    sqlite3* db = nullptr;
    const std::string path = dir_ + "/ledger.db";
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
        SQLITE_OK) {
      Finding("cannot open the ledger after Shutdown");
    }
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr);
    std::string result;
    while (sqlite3_step(st) == SQLITE_ROW) {
      result += reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    if (result != "ok") Finding("integrity_check: " + result);
    for (const std::string& key : seen_.committed) {
      sqlite3_prepare_v2(db,
                         "SELECT count(*) FROM tasks WHERE task_key = ? AND "
                         "state = ?",
                         -1, &st, nullptr);
      sqlite3_bind_text(st, 1, key.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int(st, 2, v1::TASK_STATE_DONE);
      if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) < 1) {
        Finding("task " + key + " was acknowledged committed but is not DONE");
      }
      sqlite3_finalize(st);
    }
    sqlite3_close(db);
  }

  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  std::unique_ptr<v1::Coordinator::Stub> watch_stub_;
  Seen seen_;
};

// ---- seed corpus

void Record(std::string* out, Op op, uint8_t fix,
            const google::protobuf::Message& m) {
  const std::string bytes = m.SerializeAsString();
  const size_t n = std::min<size_t>(bytes.size(), 0xffff);
  out->push_back(static_cast<char>(op));
  out->push_back(static_cast<char>(fix));
  out->push_back(static_cast<char>(n & 0xff));
  out->push_back(static_cast<char>(n >> 8));
  out->append(bytes, 0, n);
}

void RecordRaw(std::string* out, Op op, const std::string& bytes) {
  out->push_back(static_cast<char>(op));
  out->push_back(0);
  out->push_back(static_cast<char>(bytes.size() & 0xff));
  out->push_back(static_cast<char>(bytes.size() >> 8));
  out->append(bytes);
}

// A worker's life over `spec`: register, submit, lease, heartbeat, report one
// success and one failure, release, read everything, cancel.
std::string WorkerLife(const v1::SweepSpec& spec, bool expire) {
  std::string s;
  v1::RegisterWorkerRequest reg;
  reg.set_name("fuzz-worker");
  reg.mutable_capabilities()->set_device_kind("cpu");
  Record(&s, kRegisterWorker, 0, reg);
  v1::SubmitSweepRequest submit;
  *submit.mutable_spec() = spec;
  Record(&s, kSubmitSweep, 0, submit);
  v1::LeaseTasksRequest lease;
  lease.set_max_tasks(4);
  Record(&s, kLeaseTasks, kFixWorker, lease);
  Record(&s, kHeartbeat, kFixWorker | kFixLease, v1::HeartbeatRequest());
  if (expire) {
    RecordRaw(&s, kAdvanceClock, std::string("\x40\x0d\x03\x00", 4));  // 200 s
    Record(&s, kTick, 0, v1::ListWorkersRequest());
    Record(&s, kLeaseTasks, kFixWorker, lease);
  }
  v1::ReportResultRequest ok;
  v1::Metric* metric = ok.mutable_result()->add_metrics();
  metric->set_name("loss");
  metric->set_value(1.5);
  ok.mutable_result()->set_wall_seconds(0.1);
  Record(&s, kReportResult, kFixWorker | kFixLease, ok);
  Record(&s, kReportResult, kFixWorker | kFixLease, ok);  // a duplicate
  v1::ReportResultRequest failed;
  failed.mutable_failure()->set_message("synthetic failure");
  failed.mutable_failure()->set_retryable(true);
  Record(&s, kReportResult, kFixWorker | kFixLease | (1 << kFixIndexShift),
         failed);
  v1::ReleaseTasksRequest release;
  release.set_reason("draining");
  Record(&s, kReleaseTasks, kFixWorker | kFixLease | (2 << kFixIndexShift),
         release);
  Record(&s, kGetSweep, kFixSweep, v1::GetSweepRequest());
  v1::ListSweepsRequest list;
  list.set_include_spec(true);
  list.set_page_size(1);
  Record(&s, kListSweeps, 0, list);
  v1::ListResultsRequest results;
  results.set_page_size(2);
  Record(&s, kListResults, kFixSweep, results);
  Record(&s, kWatchSweep, kFixSweep, v1::WatchSweepRequest());
  Record(&s, kListWorkers, 0, v1::ListWorkersRequest());
  Record(&s, kCancelSweep, kFixSweep, v1::CancelSweepRequest());
  Record(&s, kLeaseTasks, kFixWorker, lease);
  return s;
}

void WriteSeeds(const std::string& dir) {
  fs::create_directories(dir);
  std::map<std::string, std::string> seeds;
  v1::SweepSpec synthetic;
  synthetic.set_name("fuzz");
  synthetic.mutable_synthetic()->set_tasks(6);
  synthetic.mutable_policy()->set_max_attempts(2);
  synthetic.mutable_policy()->set_lease_seconds(60);
  seeds["synthetic"] = WorkerLife(synthetic, false);
  seeds["synthetic_expired"] = WorkerLife(synthetic, true);
  for (const char* folder :
       {"configs/sweeps", "tests/fuzz/corpus/spec_loader_fuzzer"}) {
    if (!fs::is_directory(folder)) continue;
    for (const auto& entry : fs::directory_iterator(folder)) {
      const std::string path = entry.path().string();
      const SpecFormat format = entry.path().extension() == ".json"
                                    ? SpecFormat::kJson
                                    : SpecFormat::kYaml;
      std::ifstream in(path);
      std::stringstream text;
      text << in.rdbuf();
      absl::StatusOr<v1::SweepSpec> spec =
          ParseSweepSpec(text.str(), format, path);
      if (!spec.ok()) continue;
      seeds[entry.path().stem().string()] = WorkerLife(*spec, false);
    }
  }
  std::string garbage;
  RecordRaw(&garbage, kSubmitSweep,
            std::string("\x0a\x05\x0a\x03\xff\xfe\x41", 7));
  RecordRaw(&garbage, kLeaseTasks, std::string("\xff\xff\xff", 3));
  seeds["unparsable"] = garbage;
  for (const auto& [name, bytes] : seeds) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  }
  std::printf("rpc_fuzzer: wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
}

}  // namespace
}  // namespace sweepd

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sweepd::SetMinLogLevel(sweepd::LogLevel::kError);
  sweepd::InitGrpcServerPlugins();
  if (const char* dir = std::getenv("SWEEPD_RPC_FUZZER_WRITE_SEEDS")) {
    sweepd::WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using sweepd::Op;
  sweepd::Harness harness;
  size_t pos = 0;
  int calls = 0;
  while (pos + 4 <= size && calls < 64) {
    const Op op = static_cast<Op>(data[pos] % sweepd::kOpCount);
    const uint8_t fix = data[pos + 1];
    size_t n = data[pos + 2] | (size_t{data[pos + 3]} << 8);
    pos += 4;
    n = std::min(n, size - pos);
    harness.Run(op, fix,
                std::string(reinterpret_cast<const char*>(data + pos), n));
    pos += n;
    ++calls;
  }
  return 0;
}
