// TaskMirror: the LeaseScheduler's in-memory mirror of the ledger's active
// state — sweeps (counts, pending kinds, deferred stages), every non-terminal
// task with its spec, prefix-share groups, the worker registry — and the
// indices that leasing reads (ready groups in policy order, ready groups per
// model fingerprint, waiting and leased tasks by time, pins). Every transition
// goes through the same few methods (Place/Unplace/Apply/AddPlanned), which
// keep those indices consistent with the tasks' states. It also holds the
// policy that picks tasks for a worker (Pick, as documented in scheduler.h) and
// the summaries GetSweep/ListSweeps/ListWorkers show. Internal to the
// scheduler (scheduler.cc, scheduler_leases.cc, scheduler_results.cc); not for
// use outside coordinator/.
//
// Ownership: owns every SweepInfo, MemTask, Group and WorkerEntry; the raw
// pointers it hands out stay valid until the task turns terminal (MemTask) or
// the mirror is destroyed (the others). Borrows the Clock. Not thread-safe:
// the owning LeaseSchedulerImpl guards it with its mutex.
#ifndef SWEEPD_COORDINATOR_SCHEDULER_MIRROR_H_
#define SWEEPD_COORDINATOR_SCHEDULER_MIRROR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/clock.h"
#include "coordinator/ledger.h"
#include "coordinator/planner.h"
#include "coordinator/scheduler.h"
#include "sweepd/v1/coordinator.pb.h"
#include "sweepd/v1/worker.pb.h"

namespace sweepd::scheduler_internal {

struct SweepInfo {
  std::string id;
  std::string name;
  int priority = 0;
  int tensor_parallel = 0;
  std::string model_fingerprint;
  v1::JobKind kind = v1::JOB_KIND_UNSPECIFIED;
  bool cancelled = false;
  // Derived stages not planned yet (docs/STAGES.md); the sweep runs until
  // they are.
  std::vector<int> deferred_stages;
  // A derivation of the next deferred stage is in flight.
  bool deriving = false;
  v1::TaskCounts counts;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  uint64_t version = 0;
  // Lease length of its tasks (policy.lease_seconds or the ledger default).
  int64_t lease_ms = 0;
  // PENDING tasks per job kind (a stage may have its own kind).
  std::map<v1::JobKind, int64_t> pending_by_kind;
};

struct Group;

struct MemTask {
  SweepInfo* sweep = nullptr;
  Group* group = nullptr;
  std::string task_key;
  int64_t idx = 0;
  v1::TaskState state = v1::TASK_STATE_PENDING;
  bool reserved = false;  // picked for a lease that has not committed yet
  bool expiring = false;  // an expiry write is in flight
  int attempts = 0;
  int64_t fencing_token = 0;
  std::string worker;
  int64_t expires_ms = 0;
  int64_t next_eligible_ms = 0;
  // What a lease hands the worker (kept so leases never read SQLite).
  v1::TaskSpec spec;
};

struct Group {
  SweepInfo* sweep = nullptr;
  std::string group_key;
  // Job kind of its tasks (one group never mixes kinds).
  v1::JobKind kind = v1::JOB_KIND_UNSPECIFIED;
  int64_t seq = 0;
  // Leasable now: PENDING, not reserved, eligible time reached. Ordered by task
  // index.
  std::set<std::pair<int64_t, MemTask*>> ready;
  std::string pinned_worker;
};

struct WorkerEntry {
  std::string id;
  std::string name;
  v1::WorkerCapabilities caps;
  int64_t registered_ms = 0;
  int64_t last_seen_ms = 0;
  bool draining = false;
  int64_t tasks_done = 0;
  absl::flat_hash_set<Group*> pinned_groups;
};

// The ledger row state a mirrored task stands for.
TaskRowState RowOf(const MemTask& t);
// Copies a committed row state into `t`.
void CopyRow(const TaskRowState& row, MemTask* t);
// A task's job kind: its spec's, else (older specs) its sweep's.
v1::JobKind KindOf(const SweepInfo& s, v1::JobKind task_kind);
// Adds `delta` tasks of `kind` in `state` to the sweep's counts.
void CountTask(SweepInfo* s, v1::JobKind kind, v1::TaskState state,
               int64_t delta);

class TaskMirror {
 public:
  TaskMirror(Clock* clock, const SchedulerOptions& options);

  TaskMirror(const TaskMirror&) = delete;
  TaskMirror& operator=(const TaskMirror&) = delete;

  // ---- Sweeps ----

  SweepInfo* AddSweep(const std::string& id, const v1::SweepSpec& spec,
                      int64_t created, int64_t lease_ms);
  // Null when unknown.
  SweepInfo* FindSweep(const std::string& sweep_id);
  // Bumps the sweep's version and updated time.
  void Touch(SweepInfo* s);
  // Sweeps whose next derived stage can be planned, marked as deriving.
  std::vector<StageWork> TakeSweepsReadyForStage();

  // ---- Tasks ----

  // Adds a task (and its group when new), placed in no index yet.
  MemTask* AddTask(SweepInfo* s, const std::string& task_key, int64_t idx,
                   const std::string& group_key, v1::JobKind kind);
  // Null when unknown or terminal.
  MemTask* Find(const std::string& sweep_id, const std::string& task_key);
  // Adds newly inserted tasks (with their committed initial states) and makes
  // the non-terminal ones leasable.
  void AddPlanned(SweepInfo* s, const std::vector<PlannedTask>& tasks,
                  const std::vector<v1::TaskState>& states);
  // Mirrors a committed row state.
  void Apply(const TaskRowState& row);
  // Puts `t` into the index its state calls for / takes it out of all.
  void Place(MemTask* t);
  void Unplace(MemTask* t);
  // Makes waiting tasks whose eligible time has come leasable.
  void PromoteWaiting(int64_t now);
  // retry_after_ms for a lease call that found nothing.
  int64_t RetryAfter(int64_t now) const;
  // Leases past their expiry with no expiry write in flight; marks them
  // expiring.
  std::vector<ExpiredLease> MarkExpiring(int64_t now);

  // ---- Workers ----

  // Null when unknown.
  WorkerEntry* FindWorker(const std::string& worker_id);
  // Registers `e` under its id; pins are left as they are.
  WorkerEntry* AddWorker(std::unique_ptr<WorkerEntry> e);
  // Records in `w` the groups pinned to its id.
  void AdoptPins(WorkerEntry* w);
  // An unknown id (its row was lost) gets an entry so its leases, matched by
  // token, are still served.
  WorkerEntry* FindOrAddWorker(const std::string& id, int64_t now);
  std::string NewWorkerId(int64_t now);
  // Recently seen and not draining.
  bool Alive(const std::string& worker_id, int64_t now) const;
  void Pin(Group* g, const std::string& worker_id);
  void UnpinAll(WorkerEntry* w);

  // ---- Policy ----

  // Reserves up to `n` tasks for `w` following the policy in scheduler.h.
  std::vector<MemTask*> Pick(WorkerEntry* w, int n, int64_t now);

  // ---- Queries ----

  SweepSummary Summarize(const SweepInfo& s, int64_t now) const;
  // Every sweep, in (created_ms, sweep_id) order.
  std::vector<SweepSummary> SummarizeAll(int64_t now) const;
  // Every worker, in worker_id order.
  std::vector<v1::WorkerInfo> WorkerInfos() const;

  size_t sweep_count() const { return sweeps_.size(); }
  size_t task_count() const { return tasks_.size(); }
  size_t worker_count() const { return workers_.size(); }

 private:
  using GroupOrder = std::tuple<int, int64_t, Group*>;
  static GroupOrder OrderOf(Group* g);
  // Whether a worker with `caps` runs `kind` at the TP size a sweep requires
  // (0 = any).
  static bool CanRun(const v1::WorkerCapabilities& caps, v1::JobKind kind,
                     int tensor_parallel);
  static bool Compatible(const WorkerEntry& w, const Group& g);

  // A group's entries in the indices of groups with leasable tasks.
  void MarkReady(Group* g);
  void MarkNotReady(Group* g);
  void ExplainWaiting(const SweepInfo& s, int64_t now, SweepSummary* out) const;

  Clock* const clock_;
  const SchedulerOptions options_;

  absl::flat_hash_map<std::string, std::unique_ptr<SweepInfo>> sweeps_;
  absl::flat_hash_map<std::string, std::unique_ptr<MemTask>> tasks_;
  absl::flat_hash_map<std::string, std::unique_ptr<Group>> groups_;
  absl::flat_hash_map<std::string, std::unique_ptr<WorkerEntry>> workers_;
  // Groups with leasable tasks, in policy order; and the same per model
  // fingerprint of their sweep (so affinity never scans other models' groups).
  std::set<GroupOrder> ready_groups_;
  absl::flat_hash_map<std::string, std::set<GroupOrder>> ready_by_model_;
  std::set<std::pair<int64_t, MemTask*>> waiting_;
  std::set<std::pair<int64_t, MemTask*>> leased_;
  int64_t next_group_seq_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace sweepd::scheduler_internal

#endif  // SWEEPD_COORDINATOR_SCHEDULER_MIRROR_H_
