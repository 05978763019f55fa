// SweepCluster: a real `sweepd` plus `sweep-worker` processes on loopback, for
// integration, fault and benchmark runs. The `sweepd` binary builds its
// Coordinator (coordinator/coordinator.h) from its flags, the same way the
// in-process tests do with StartTestCoordinator. It starts and restarts the
// coordinator on one ledger (and, when asked, one fixed port so workers keep
// their address across restarts), starts workers, talks to the Coordinator
// service, and reads the ledger directly with SQLite.
//
// Ownership: the cluster owns its processes (killed on destruction) and its
// gRPC channel. Thread-safety: use from one thread.
#ifndef SWEEPD_TESTS_TESTING_SWEEP_CLUSTER_H_
#define SWEEPD_TESTS_TESTING_SWEEP_CLUSTER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "tests/testing/process.h"

namespace sweepd::testing {

struct SweepClusterOptions {
  // Holds ledger.db, the port file and one log per process. Required.
  std::string dir;
  // Pick one free port up front and always listen on it (restarts keep the
  // address); otherwise listen on port 0 and read the port file.
  bool fixed_port = false;
  // Extra sweepd flags.
  std::vector<std::string> sweepd_args;
  // When sweepd serves TLS (--tls-cert): the cluster's own calls verify it
  // against this PEM CA bundle. Empty = plaintext.
  std::string tls_ca_file;
  // Bearer token the cluster's own calls carry (needs tls_ca_file), e.g. a
  // submitter's when sweepd has --token-file. Workers get theirs through
  // StartWorker's extra flags (--token-file).
  std::string token;
};

// A synthetic sweep of `tasks` tasks (docs/SYNTHETIC.md).
sweepd::v1::SweepSpec SyntheticSweep(const std::string& name, int tasks,
                                     int min_ms, int max_ms,
                                     double failure_rate = 0.0,
                                     int max_attempts = 3,
                                     int lease_seconds = 0);

// Writes the tiny random model (configs/models/gemma4-tiny.json under
// $SWEEPD_SOURCE_DIR, seed 1) to out_dir with `worker_bin make-model`, its
// output in log_path; waits up to 120 s. Errors carry the log.
absl::Status MakeTinyModelWithWorker(const std::string& worker_bin,
                                     const std::string& out_dir,
                                     const std::string& log_path);

class SweepCluster;

// The calibration examples' cluster (head_prune, retrain): sweepd and one
// worker over the tiny model, sharing one artifact store. Under `dir`: the
// model models/gemma4-tiny (MakeTinyModelWithWorker) and the store
// artifacts/; sweepd gets --model-root, the shipped datasets (configs/data
// under $SWEEPD_SOURCE_DIR) as --data-root and --artifact-root; the worker
// `worker_name` gets the model, --model-root, --artifact-root, --threads 1
// and a 300 ms heartbeat. Errors name the step and carry the logs.
struct ArtifactCluster {
  std::unique_ptr<SweepCluster> cluster;
  std::string models;     // <dir>/models
  std::string artifacts;  // <dir>/artifacts
};
absl::StatusOr<ArtifactCluster> StartTinyArtifactCluster(
    const std::string& dir, const std::string& worker_name);

class SweepCluster {
 public:
  // Finds the binaries under $SWEEPD_BUILD_DIR; starts nothing.
  static absl::StatusOr<std::unique_ptr<SweepCluster>> Create(
      const SweepClusterOptions& options);
  ~SweepCluster();

  // Starts sweepd on the ledger and waits until it serves ListSweeps.
  absl::Status StartCoordinator();
  // From the last StartCoordinator's spawn until sweepd wrote its port file
  // (it writes it once its server listens): restart-to-serving as sweepd
  // sees it, without this cluster's own reconnect delay.
  absl::Duration last_start_to_listening() const {
    return last_start_to_listening_;
  }
  // SIGKILL and reap.
  void KillCoordinator();
  // SIGTERM, then SIGKILL after `grace`. Returns how it ended.
  absl::StatusOr<ExitInfo> StopCoordinator(
      absl::Duration grace = absl::Seconds(15));

  // Starts `sweep-worker --coordinator ADDR --name NAME <extra>`; the cluster
  // owns it.
  absl::StatusOr<Process*> StartWorker(
      const std::string& name, const std::vector<std::string>& extra_args = {});
  Process* worker(const std::string& name);

  // Coordinator calls (deadline 10 s). Submit retries UNAVAILABLE for up to 20
  // s.
  absl::StatusOr<sweepd::v1::SubmitSweepResponse> Submit(
      const sweepd::v1::SweepSpec& spec);
  absl::StatusOr<sweepd::v1::SweepStatus> GetSweep(const std::string& sweep_id);
  // Polls GetSweep (tolerating UNAVAILABLE while the coordinator restarts)
  // until the sweep leaves RUNNING. DEADLINE_EXCEEDED with the last counts
  // after `timeout`.
  absl::StatusOr<sweepd::v1::SweepStatus> WaitForSweepEnd(
      const std::string& sweep_id, absl::Duration timeout);
  // Every task record of the sweep, through all ListResults pages.
  absl::StatusOr<std::vector<sweepd::v1::TaskRecord>> ListAllTasks(
      const std::string& sweep_id,
      const std::vector<sweepd::v1::TaskState>& states = {},
      int page_size = 300);
  absl::StatusOr<std::vector<sweepd::v1::WorkerInfo>> ListWorkers();

  std::string address() const;
  const std::string& ledger_path() const { return ledger_path_; }
  // The tail of every process log, for failure messages.
  std::string DescribeLogs(size_t tail_bytes = 3000) const;

 private:
  explicit SweepCluster(const SweepClusterOptions& options)
      : options_(options) {}
  absl::Status Connect();

  SweepClusterOptions options_;
  std::string sweepd_path_;
  std::string worker_path_;
  std::string ledger_path_;
  std::string port_file_;
  int port_ = 0;
  int coordinator_starts_ = 0;
  absl::Duration last_start_to_listening_;
  std::unique_ptr<Process> coordinator_;
  std::vector<std::string> coordinator_logs_;
  std::map<std::string, std::unique_ptr<Process>> workers_;
  std::unique_ptr<sweepd::v1::Coordinator::Stub> stub_;
};

// Counts read from the ledger file with SQLite (open it while sweepd is stopped
// or idle).
struct LedgerCounts {
  int64_t tasks = 0;  // rows of the sweep in `tasks`
  int64_t distinct_keys = 0;
  int64_t done = 0;              // state DONE
  int64_t done_with_result = 0;  // state DONE and a result blob
  int64_t failed = 0;
  int64_t not_terminal = 0;  // PENDING or LEASED
  int64_t worker_tasks_done =
      0;  // sum of workers.tasks_done (one per committed result)
  std::string integrity_check;  // first row of PRAGMA integrity_check
};
absl::StatusOr<LedgerCounts> ReadLedgerCounts(const std::string& ledger_path,
                                              const std::string& sweep_id);

// The first column of the first row of `sql` with `param` bound to its one `?`.
absl::StatusOr<int64_t> QueryLedgerInt(const std::string& ledger_path,
                                       const std::string& sql,
                                       const std::string& param);

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_TESTING_SWEEP_CLUSTER_H_
