// Disk full and I/O errors, injected through an SQLite VFS shim registered as
// the default VFS of this test process: every file write fails with the
// chosen error while the switch is on. The coordinator must stay up, serve
// reads, refuse leases, submits and results with UNAVAILABLE saying the disk
// is full (never acknowledging a result it did not commit), and recover by
// itself when writes succeed again, with nothing acknowledged lost.
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "coordinator/coordinator.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "sweepd/v1/worker.grpc.pb.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::StartTestCoordinator;
using ::testing::HasSubstr;

// ---- The shim: forwards everything to the default VFS; xWrite and
// xTruncate fail with g_fail_rc while it is not SQLITE_OK.

std::atomic<int> g_fail_rc{SQLITE_OK};
std::atomic<int> g_failed_writes{0};
sqlite3_vfs* g_base = nullptr;

struct ShimFile {
  sqlite3_file base;   // pMethods = the shim's methods
  sqlite3_file* real;  // the default VFS's file, allocated right after
};

sqlite3_file* Real(sqlite3_file* f) {
  return reinterpret_cast<ShimFile*>(f)->real;
}

int ShimClose(sqlite3_file* f) { return Real(f)->pMethods->xClose(Real(f)); }
int ShimRead(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return Real(f)->pMethods->xRead(Real(f), buf, n, off);
}
int ShimWrite(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  if (const int rc = g_fail_rc.load(); rc != SQLITE_OK) {
    ++g_failed_writes;
    return rc;
  }
  return Real(f)->pMethods->xWrite(Real(f), buf, n, off);
}
int ShimTruncate(sqlite3_file* f, sqlite3_int64 size) {
  if (const int rc = g_fail_rc.load(); rc != SQLITE_OK) return rc;
  return Real(f)->pMethods->xTruncate(Real(f), size);
}
int ShimSync(sqlite3_file* f, int flags) {
  return Real(f)->pMethods->xSync(Real(f), flags);
}
int ShimFileSize(sqlite3_file* f, sqlite3_int64* size) {
  return Real(f)->pMethods->xFileSize(Real(f), size);
}
int ShimLock(sqlite3_file* f, int l) {
  return Real(f)->pMethods->xLock(Real(f), l);
}
int ShimUnlock(sqlite3_file* f, int l) {
  return Real(f)->pMethods->xUnlock(Real(f), l);
}
int ShimCheckReservedLock(sqlite3_file* f, int* out) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), out);
}
int ShimFileControl(sqlite3_file* f, int op, void* arg) {
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}
int ShimSectorSize(sqlite3_file* f) {
  return Real(f)->pMethods->xSectorSize(Real(f));
}
int ShimDeviceCharacteristics(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}
int ShimShmMap(sqlite3_file* f, int region, int size, int extend,
               void volatile** out) {
  return Real(f)->pMethods->xShmMap(Real(f), region, size, extend, out);
}
int ShimShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
}
void ShimShmBarrier(sqlite3_file* f) {
  Real(f)->pMethods->xShmBarrier(Real(f));
}
int ShimShmUnmap(sqlite3_file* f, int del) {
  return Real(f)->pMethods->xShmUnmap(Real(f), del);
}
int ShimFetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
  return Real(f)->pMethods->xFetch(Real(f), off, n, out);
}
int ShimUnfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return Real(f)->pMethods->xUnfetch(Real(f), off, p);
}

const sqlite3_io_methods kShimMethods = {3,
                                         ShimClose,
                                         ShimRead,
                                         ShimWrite,
                                         ShimTruncate,
                                         ShimSync,
                                         ShimFileSize,
                                         ShimLock,
                                         ShimUnlock,
                                         ShimCheckReservedLock,
                                         ShimFileControl,
                                         ShimSectorSize,
                                         ShimDeviceCharacteristics,
                                         ShimShmMap,
                                         ShimShmLock,
                                         ShimShmBarrier,
                                         ShimShmUnmap,
                                         ShimFetch,
                                         ShimUnfetch};

int ShimOpen(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags,
             int* out_flags) {
  auto* shim = reinterpret_cast<ShimFile*>(f);
  shim->real = reinterpret_cast<sqlite3_file*>(shim + 1);
  shim->base.pMethods = nullptr;
  const int rc = g_base->xOpen(g_base, name, shim->real, flags, out_flags);
  if (rc == SQLITE_OK && shim->real->pMethods != nullptr) {
    shim->base.pMethods = &kShimMethods;
  }
  return rc;
}
int ShimDelete(sqlite3_vfs*, const char* name, int sync) {
  return g_base->xDelete(g_base, name, sync);
}
int ShimAccess(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_base->xAccess(g_base, name, flags, out);
}
int ShimFullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_base->xFullPathname(g_base, name, n, out);
}
void* ShimDlOpen(sqlite3_vfs*, const char* name) {
  return g_base->xDlOpen(g_base, name);
}
void ShimDlError(sqlite3_vfs*, int n, char* out) {
  g_base->xDlError(g_base, n, out);
}
void (*ShimDlSym(sqlite3_vfs*, void* h, const char* sym))(void) {
  return g_base->xDlSym(g_base, h, sym);
}
void ShimDlClose(sqlite3_vfs*, void* h) { g_base->xDlClose(g_base, h); }
int ShimRandomness(sqlite3_vfs*, int n, char* out) {
  return g_base->xRandomness(g_base, n, out);
}
int ShimSleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int ShimCurrentTime(sqlite3_vfs*, double* out) {
  return g_base->xCurrentTime(g_base, out);
}
int ShimGetLastError(sqlite3_vfs*, int n, char* out) {
  return g_base->xGetLastError(g_base, n, out);
}
int ShimCurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_base->xCurrentTimeInt64(g_base, out);
}

// Registers the shim as the default VFS (once per process).
void InstallShim() {
  static sqlite3_vfs shim;
  static const bool installed = [] {
    g_base = sqlite3_vfs_find(nullptr);
    std::memset(&shim, 0, sizeof(shim));
    shim.iVersion = 2;
    shim.szOsFile = static_cast<int>(sizeof(ShimFile)) + g_base->szOsFile;
    shim.mxPathname = g_base->mxPathname;
    shim.zName = "disk-full-shim";
    shim.xOpen = ShimOpen;
    shim.xDelete = ShimDelete;
    shim.xAccess = ShimAccess;
    shim.xFullPathname = ShimFullPathname;
    shim.xDlOpen = ShimDlOpen;
    shim.xDlError = ShimDlError;
    shim.xDlSym = ShimDlSym;
    shim.xDlClose = ShimDlClose;
    shim.xRandomness = ShimRandomness;
    shim.xSleep = ShimSleep;
    shim.xCurrentTime = ShimCurrentTime;
    shim.xGetLastError = ShimGetLastError;
    shim.xCurrentTimeInt64 = ShimCurrentTimeInt64;
    return sqlite3_vfs_register(&shim, /*makeDflt=*/1) == SQLITE_OK;
  }();
  ASSERT_TRUE(installed);
}

// ---- The coordinator over the shim

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
  return ctx;
}

class DiskFullTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    InstallShim();
    g_fail_rc = SQLITE_OK;
    CoordinatorOptions options;
    path_ = ::sweepd::testing::TempPath("disk-full") + ".db";
    options.ledger_path = path_;
    options.ledger.write_probe_interval_ms = 20;
    auto c = StartTestCoordinator(options);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(c).value();
    auto channel = grpc::CreateChannel(coordinator_->address(),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::Coordinator::NewStub(channel);
    gateway_ = v1::WorkerGateway::NewStub(channel);
  }
  void TearDown() override {
    g_fail_rc = SQLITE_OK;
    if (coordinator_) {
      ASSERT_TRUE(coordinator_->Shutdown(absl::Seconds(2)).ok());
      EXPECT_TRUE(CheckLedgerIntegrity(path_).ok());
    }
  }

  grpc::Status Submit(const std::string& name, int tasks,
                      v1::SubmitSweepResponse* resp) {
    v1::SubmitSweepRequest req;
    req.mutable_spec()->set_name(name);
    req.mutable_spec()->mutable_synthetic()->set_tasks(tasks);
    return stub_->SubmitSweep(Ctx().get(), req, resp);
  }
  grpc::Status Lease(const std::string& worker, v1::LeaseTasksResponse* resp) {
    v1::LeaseTasksRequest req;
    req.set_worker_id(worker);
    req.set_max_tasks(1);
    return gateway_->LeaseTasks(Ctx().get(), req, resp);
  }
  grpc::Status Report(const std::string& worker, const v1::TaskAssignment& a,
                      v1::ReportResultResponse* resp) {
    v1::ReportResultRequest req;
    req.set_worker_id(worker);
    req.set_task_key(a.task_key());
    req.set_fencing_token(a.fencing_token());
    req.mutable_result()->add_metrics()->set_name("value");
    return gateway_->ReportResult(Ctx().get(), req, resp);
  }
  v1::TaskCounts Counts(const std::string& sweep_id) {
    v1::GetSweepRequest req;
    req.set_sweep_id(sweep_id);
    v1::SweepStatus status;
    grpc::Status s = stub_->GetSweep(Ctx().get(), req, &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return status.counts();
  }

  std::string path_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::unique_ptr<v1::WorkerGateway::Stub> gateway_;
};

TEST_P(DiskFullTest, RefusesWritesServesReadsAndRecoversWithoutARestart) {
  const int rc = GetParam();
  const char* what = rc == SQLITE_FULL ? "disk full" : "I/O error";
  v1::SubmitSweepResponse sweep;
  ASSERT_TRUE(Submit("before", 3, &sweep).ok());
  v1::RegisterWorkerRequest reg;
  reg.set_name("w");
  v1::RegisterWorkerResponse worker;
  ASSERT_TRUE(gateway_->RegisterWorker(Ctx().get(), reg, &worker).ok());
  v1::LeaseTasksResponse lease;
  ASSERT_TRUE(Lease(worker.worker_id(), &lease).ok());
  ASSERT_EQ(lease.tasks_size(), 1);
  ASSERT_TRUE(coordinator_->ledger()->Flush().ok());

  g_fail_rc = rc;
  // The result cannot be stored: not acknowledged, UNAVAILABLE, says why.
  v1::ReportResultResponse report;
  grpc::Status s = Report(worker.worker_id(), lease.tasks(0), &report);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(what));
  EXPECT_GT(g_failed_writes.load(), 0);
  // Leases and submits are refused up front, with the same words.
  v1::LeaseTasksResponse refused;
  s = Lease(worker.worker_id(), &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(what));
  EXPECT_EQ(refused.tasks_size(), 0);
  v1::SubmitSweepResponse during;
  s = Submit("during", 2, &during);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(what));
  // Reads are served; the process stays up (Tick reports no failure).
  EXPECT_EQ(Counts(sweep.sweep_id()).done(), 0);
  EXPECT_EQ(Counts(sweep.sweep_id()).leased(), 1);
  EXPECT_TRUE(coordinator_->Tick().ok());
  EXPECT_TRUE(coordinator_->ledger()->health().ok());
  EXPECT_FALSE(coordinator_->ledger()->writable().ok());

  // Space returns: the writer's probe notices without any caller writing.
  g_fail_rc = SQLITE_OK;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!coordinator_->ledger()->writable().ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));  // the probe runs every 20 ms
  }
  ASSERT_TRUE(coordinator_->ledger()->writable().ok());
  // The worker's resent result commits; work flows again.
  s = Report(worker.worker_id(), lease.tasks(0), &report);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(report.committed());
  v1::LeaseTasksResponse next;
  ASSERT_TRUE(Lease(worker.worker_id(), &next).ok());
  EXPECT_EQ(next.tasks_size(), 1);
  EXPECT_TRUE(Submit("after", 2, &during).ok());
  const v1::TaskCounts counts = Counts(sweep.sweep_id());
  EXPECT_EQ(counts.done(), 1);
  EXPECT_EQ(counts.leased(), 1);
  EXPECT_EQ(counts.pending(), 1);
}

INSTANTIATE_TEST_SUITE_P(FullAndIoError, DiskFullTest,
                         ::testing::Values(SQLITE_FULL, SQLITE_IOERR_WRITE));

}  // namespace
}  // namespace sweepd
