// coordinator_bench: loopback benchmark of a real sweepd (spawned on a temp
// ledger, which runs SQLite with synchronous=FULL) with synthetic zero-work
// tasks.
//
//   phase 1 "lease": W simulated workers (threads, each registered, each on
//     its own channel) call LeaseTasks with max_tasks=1 until the sweep has
//     no pending task, back to back or with --lease-interval-ms of think time;
//     every call's latency is recorded.
//   phase 2 "report": R concurrent reporters send ReportResult for every held
//     lease; committed results per second = commits / the phase's wall time.
//
// Prints a table with the targets of issue 2 (>= 5,000 results/s; LeaseTasks
// p99 <= 5 ms), sweepd's CPU time per call of each phase, the load average
// (the machine may be shared) and sweepd's ledger counters (transactions,
// operations per transaction, writer-thread time per phase), which sweepd
// logs on exit. Not a ctest: timings depend on the machine. docs/PERFORMANCE.md
// has the measurements.
//
// usage: coordinator_bench [--sweepd PATH] [--tasks N] [--workers W]
//                          [--reporters R] [--lease-interval-ms MS] [--dir DIR]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "sweepd/v1/worker.grpc.pb.h"
#include "tests/testing/process.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::string sweepd;
  std::string dir;
  int tasks = 20'000;
  int workers = 64;
  int reporters = 64;
  // Think time of a simulated worker between its LeaseTasks calls (0: back to
  // back, the closed-loop load).
  int lease_interval_ms = 0;
};

void Die(const std::string& message) {
  std::fprintf(stderr, "coordinator_bench: %s\n", message.c_str());
  std::exit(1);
}

constexpr char kUsage[] =
    "usage: coordinator_bench [--sweepd PATH] [--tasks N] [--workers W] "
    "[--reporters R] [--lease-interval-ms MS] [--dir DIR]\n"
    "  --sweepd     the sweepd binary (default: "
    "$SWEEPD_BUILD_DIR/coordinator/sweepd,\n"
    "               else ../../coordinator/sweepd next to this binary)\n"
    "  --tasks      synthetic zero-work tasks (default 20000)\n"
    "  --workers    concurrent simulated workers leasing (default 64)\n"
    "  --reporters  concurrent reporters (default 64)\n"
    "  --lease-interval-ms  think time of each worker between "
    "LeaseTasks\n"
    "               calls (default 0: back to back)\n"
    "  --dir        directory for the ledger and logs (default: a new "
    "temp dir)\n";

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  CLI::App app{"coordinator_bench"};
  app.set_help_flag();
  bool help = false;
  app.add_flag("--help,-h", help);
  app.add_option("--sweepd", f.sweepd);
  app.add_option("--dir", f.dir);
  app.add_option("--tasks", f.tasks)
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--workers", f.workers)
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--reporters", f.reporters)
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--lease-interval-ms", f.lease_interval_ms)
      ->check(CLI::Range(0, std::numeric_limits<int>::max()));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    Die(absl::StrCat(e.what(), " (see --help)"));
  }
  if (help) {
    std::fputs(kUsage, stdout);
    std::exit(0);
  }
  if (f.sweepd.empty()) {
    auto built = testing::BuildBinary("coordinator/sweepd");
    if (built.ok()) {
      f.sweepd = *built;
    } else {
      char self[4096] = {0};
      ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
      std::string exe(self, n > 0 ? n : 0);
      std::string dir = exe.substr(0, exe.rfind('/'));  // <build>/tests/bench
      f.sweepd = dir + "/../../coordinator/sweepd";
    }
  }
  return f;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(idx, v.size() - 1)];
}

// CPU seconds (user + system) used so far by process `pid`; -1 if unreadable.
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name; utime and stime are fields
  // 14 and 15 of the whole line (11 and 12 after the ')').
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::vector<std::string> fields =
      absl::StrSplit(text.substr(close + 2), ' ', absl::SkipEmpty());
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return -1;
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

template <typename Fn>
grpc::Status CallWithDeadline(Fn&& fn, int64_t ms = 30'000) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(ms));
  return fn(&ctx);
}

int Main(int argc, char** argv) {
  Flags flags = ParseFlags(argc, argv);
  if (flags.dir.empty()) {
    auto dir = testing::MakeTempDir("coordinator-bench");
    if (!dir.ok()) Die(dir.status().ToString());
    flags.dir = *dir;
  }
  const std::string port_file = flags.dir + "/sweepd.port";
  testing::SpawnOptions spawn;
  spawn.argv = {flags.sweepd,
                "--listen",
                "127.0.0.1:0",
                "--ledger",
                flags.dir + "/ledger.db",
                "--port-file",
                port_file};
  spawn.log_path = flags.dir + "/sweepd.log";
  auto sweepd = testing::Process::Spawn(spawn);
  if (!sweepd.ok()) Die(sweepd.status().ToString());
  auto port = testing::WaitForPortFile(port_file, **sweepd, absl::Seconds(30));
  if (!port.ok()) Die(port.status().ToString());
  const std::string address = absl::StrCat("127.0.0.1:", *port);
  std::printf(
      "sweepd on %s, ledger %s/ledger.db, %d tasks, %d workers, %d reporters, "
      "lease interval %d ms\n"
      "load average at start: %s (%ld CPUs online)\n",
      address.c_str(), flags.dir.c_str(), flags.tasks, flags.workers,
      flags.reporters, flags.lease_interval_ms, LoadAverage().c_str(),
      sysconf(_SC_NPROCESSORS_ONLN));
  const pid_t sweepd_pid = (*sweepd)->pid();

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // One channel (one HTTP/2 connection) per simulated worker, as real workers
  // have.
  auto make_channel = [&](int i) {
    grpc::ChannelArguments a = args;
    a.SetInt("sweepd.bench.channel",
             i);  // distinct args: no subchannel sharing
    return grpc::CreateCustomChannel(address,
                                     grpc::InsecureChannelCredentials(), a);
  };
  auto coordinator = v1::Coordinator::NewStub(make_channel(-1));

  v1::SubmitSweepRequest submit;
  submit.mutable_spec()->set_name("coordinator-bench");
  submit.mutable_spec()->mutable_synthetic()->set_tasks(flags.tasks);
  submit.mutable_spec()->mutable_policy()->set_lease_seconds(3600);
  v1::SubmitSweepResponse submitted;
  auto t_submit = Clock::now();
  grpc::Status s = CallWithDeadline(
      [&](grpc::ClientContext* c) {
        return coordinator->SubmitSweep(c, submit, &submitted);
      },
      300'000);
  if (!s.ok()) Die(absl::StrCat("SubmitSweep: ", s.error_message()));
  double submit_s =
      std::chrono::duration<double>(Clock::now() - t_submit).count();

  // Phase 1: leasing.
  std::vector<std::vector<v1::TaskAssignment>> held(flags.workers);
  std::vector<std::vector<double>> lease_ms(flags.workers);
  std::vector<std::string> worker_ids(flags.workers);
  std::vector<std::unique_ptr<v1::WorkerGateway::Stub>> stubs;
  for (int i = 0; i < flags.workers; ++i) {
    stubs.push_back(v1::WorkerGateway::NewStub(make_channel(i)));
  }
  std::atomic<int> errors{0};
  const double cpu_before_lease = ProcessCpuSeconds(sweepd_pid);
  const double self_before_lease = ProcessCpuSeconds(getpid());
  auto t_lease = Clock::now();
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < flags.workers; ++i) {
      threads.emplace_back([&, i] {
        v1::RegisterWorkerRequest reg;
        reg.set_name(absl::StrCat("bench-", i));
        reg.mutable_capabilities()->set_device_kind("cpu");
        reg.mutable_capabilities()->add_job_kinds(v1::JOB_KIND_SYNTHETIC);
        v1::RegisterWorkerResponse reg_resp;
        grpc::Status st = CallWithDeadline([&](grpc::ClientContext* c) {
          return stubs[i]->RegisterWorker(c, reg, &reg_resp);
        });
        if (!st.ok()) {
          ++errors;
          return;
        }
        worker_ids[i] = reg_resp.worker_id();
        v1::LeaseTasksRequest req;
        req.set_worker_id(worker_ids[i]);
        req.set_max_tasks(1);
        while (true) {
          v1::LeaseTasksResponse resp;
          auto t0 = Clock::now();
          st = CallWithDeadline([&](grpc::ClientContext* c) {
            return stubs[i]->LeaseTasks(c, req, &resp);
          });
          lease_ms[i].push_back(
              std::chrono::duration<double, std::milli>(Clock::now() - t0)
                  .count());
          if (!st.ok()) {
            ++errors;
            return;
          }
          if (resp.tasks_size() == 0) return;
          for (const auto& t : resp.tasks()) held[i].push_back(t);
          if (flags.lease_interval_ms > 0) {
            std::this_thread::sleep_for(
                std::chrono::milliseconds(flags.lease_interval_ms));
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  double lease_s =
      std::chrono::duration<double>(Clock::now() - t_lease).count();
  const double cpu_after_lease = ProcessCpuSeconds(sweepd_pid);
  const double self_after_lease = ProcessCpuSeconds(getpid());
  std::vector<double> all_lease_ms;
  std::vector<v1::ReportResultRequest> reports;
  for (int i = 0; i < flags.workers; ++i) {
    all_lease_ms.insert(all_lease_ms.end(), lease_ms[i].begin(),
                        lease_ms[i].end());
    for (const auto& a : held[i]) {
      v1::ReportResultRequest r;
      r.set_worker_id(worker_ids[i]);
      r.set_task_key(a.task_key());
      r.set_fencing_token(a.fencing_token());
      v1::Metric* m = r.mutable_result()->add_metrics();
      m->set_name("value");
      m->set_value(0.5);
      reports.push_back(std::move(r));
    }
  }

  // Phase 2: reporting, R concurrent reporters over the held leases.
  std::atomic<size_t> next{0};
  std::atomic<int64_t> committed{0};
  std::vector<std::vector<double>> report_ms(flags.reporters);
  auto t_report = Clock::now();
  {
    std::vector<std::thread> threads;
    for (int r = 0; r < flags.reporters; ++r) {
      threads.emplace_back([&, r] {
        auto& stub = stubs[r % stubs.size()];
        while (true) {
          size_t k = next.fetch_add(1);
          if (k >= reports.size()) return;
          v1::ReportResultResponse resp;
          auto t0 = Clock::now();
          grpc::Status st = CallWithDeadline([&](grpc::ClientContext* c) {
            return stub->ReportResult(c, reports[k], &resp);
          });
          report_ms[r].push_back(
              std::chrono::duration<double, std::milli>(Clock::now() - t0)
                  .count());
          if (!st.ok()) {
            ++errors;
          } else if (resp.committed()) {
            ++committed;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  double report_s =
      std::chrono::duration<double>(Clock::now() - t_report).count();
  const double cpu_after_report = ProcessCpuSeconds(sweepd_pid);
  std::vector<double> all_report_ms;
  for (auto& v : report_ms)
    all_report_ms.insert(all_report_ms.end(), v.begin(), v.end());

  v1::GetSweepRequest get;
  get.set_sweep_id(submitted.sweep_id());
  v1::SweepStatus status;
  s = CallWithDeadline([&](grpc::ClientContext* c) {
    return coordinator->GetSweep(c, get, &status);
  });

  const double results_per_s = committed.load() / report_s;
  const double lease_p50 = Percentile(all_lease_ms, 0.50);
  const double lease_p99 = Percentile(all_lease_ms, 0.99);
  std::printf("\n%-44s %14s %12s %s\n", "metric", "value", "target", "");
  std::printf("%-44s %14.1f %12s\n", "SubmitSweep (plan + insert), s", submit_s,
              "");
  std::printf("%-44s %14zu %12s\n", "LeaseTasks calls", all_lease_ms.size(),
              "");
  std::printf("%-44s %14.1f %12s\n", "LeaseTasks calls/s",
              all_lease_ms.size() / lease_s, "");
  std::printf("%-44s %14.3f %12s\n", "LeaseTasks p50 ms", lease_p50, "");
  std::printf("%-44s %14.3f %12s %s\n", "LeaseTasks p99 ms", lease_p99, "<= 5",
              lease_p99 <= 5.0 ? "met" : "MISSED");
  std::printf("%-44s %14lld %12s\n", "results committed",
              static_cast<long long>(committed), "");
  std::printf("%-44s %14.0f %12s %s\n",
              "results committed/s (synchronous=FULL)", results_per_s,
              ">= 5000", results_per_s >= 5000 ? "met" : "MISSED");
  std::printf("%-44s %14.3f %12s\n", "ReportResult p50 ms",
              Percentile(all_report_ms, 0.5), "");
  std::printf("%-44s %14.3f %12s\n", "ReportResult p99 ms",
              Percentile(all_report_ms, 0.99), "");
  std::printf("%-44s %14.1f %12s\n", "sweepd CPU us per LeaseTasks call",
              1e6 * (cpu_after_lease - cpu_before_lease) /
                  std::max<size_t>(1, all_lease_ms.size()),
              "");
  std::printf("%-44s %14.1f %12s\n", "bench client CPU us per LeaseTasks call",
              1e6 * (self_after_lease - self_before_lease) /
                  std::max<size_t>(1, all_lease_ms.size()),
              "");
  std::printf("%-44s %14.1f %12s\n", "sweepd CPU us per ReportResult call",
              1e6 * (cpu_after_report - cpu_after_lease) /
                  std::max<size_t>(1, reports.size()),
              "");
  std::printf("%-44s %14d %12s\n", "RPC errors", errors.load(), "0");
  if (s.ok()) {
    std::printf("%-44s %14s\n", "sweep counts after the run",
                status.counts().ShortDebugString().c_str());
  }
  (void)(*sweepd)->Signal(SIGTERM);
  if (!(*sweepd)->Wait(absl::Seconds(15)).ok()) (*sweepd)->Kill();
  std::printf("load average at end: %s\n", LoadAverage().c_str());
  {
    // sweepd logs its ledger counters (batching, writer-thread times) on exit.
    std::ifstream log(spawn.log_path);
    std::string line;
    while (std::getline(log, line)) {
      if (line.find("ledger stats:") != std::string::npos) {
        std::printf("sweepd %s\n",
                    line.substr(line.find("ledger stats:")).c_str());
      }
    }
  }
  bool ok = errors.load() == 0 && committed.load() == flags.tasks;
  if (!ok) {
    std::fprintf(
        stderr,
        "coordinator_bench: expected %d commits without errors; see %s\n",
        flags.tasks, spawn.log_path.c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) { return sweepd::Main(argc, argv); }
