// TaskMirror (scheduler_mirror.h): the indices and the transitions that keep
// them consistent, the pick policy and the summaries.
#include "coordinator/scheduler_mirror.h"

#include <algorithm>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "coordinator/task_states.h"

namespace sweepd::scheduler_internal {
namespace {

using v1::TaskState;

std::string TaskMapKey(absl::string_view sweep_id, absl::string_view task_key) {
  return absl::StrCat(sweep_id, "\n", task_key);
}

v1::SweepState StateOf(const SweepInfo& s) {
  return SweepStateFromCounts(s.counts, s.cancelled,
                              !s.deferred_stages.empty());
}

// "eval" for JOB_KIND_EVAL.
std::string JobKindLabel(v1::JobKind kind) {
  return absl::AsciiStrToLower(
      absl::StripPrefix(v1::JobKind_Name(kind), "JOB_KIND_"));
}

}  // namespace

TaskRowState RowOf(const MemTask& t) {
  TaskRowState r;
  r.sweep_id = t.sweep->id;
  r.task_key = t.task_key;
  r.state = t.state;
  r.attempts = t.attempts;
  r.fencing_token = t.fencing_token;
  r.lease_worker = t.worker;
  r.lease_expires_ms = t.expires_ms;
  r.next_eligible_ms = t.next_eligible_ms;
  return r;
}

void CopyRow(const TaskRowState& row, MemTask* t) {
  t->state = row.state;
  t->attempts = row.attempts;
  t->fencing_token = row.fencing_token;
  t->worker = row.lease_worker;
  t->expires_ms = row.lease_expires_ms;
  t->next_eligible_ms = row.next_eligible_ms;
}

v1::JobKind KindOf(const SweepInfo& s, v1::JobKind task_kind) {
  return task_kind != v1::JOB_KIND_UNSPECIFIED ? task_kind : s.kind;
}

void CountTask(SweepInfo* s, v1::JobKind kind, TaskState state, int64_t delta) {
  AdjustTaskCount(&s->counts, state, delta);
  if (state == v1::TASK_STATE_PENDING) {
    int64_t& n = s->pending_by_kind[kind];
    n += delta;
    if (n == 0) s->pending_by_kind.erase(kind);
  }
}

TaskMirror::TaskMirror(Clock* clock, const SchedulerOptions& options)
    : clock_(clock), options_(options) {}

// ---- Sweeps ----

SweepInfo* TaskMirror::AddSweep(const std::string& id,
                                const v1::SweepSpec& spec, int64_t created,
                                int64_t lease_ms) {
  auto s = std::make_unique<SweepInfo>();
  s->id = id;
  s->name = spec.name();
  s->priority = spec.policy().priority();
  s->tensor_parallel = spec.policy().tensor_parallel();
  s->model_fingerprint = spec.model().fingerprint();
  s->kind = JobKindOf(spec.job_case());
  s->created_ms = created;
  s->updated_ms = created;
  s->lease_ms = lease_ms;
  SweepInfo* raw = s.get();
  sweeps_[id] = std::move(s);
  return raw;
}

SweepInfo* TaskMirror::FindSweep(const std::string& sweep_id) {
  auto it = sweeps_.find(sweep_id);
  return it == sweeps_.end() ? nullptr : it->second.get();
}

void TaskMirror::Touch(SweepInfo* s) {
  s->version++;
  s->updated_ms = clock_->NowMs();
}

std::vector<StageWork> TaskMirror::TakeSweepsReadyForStage() {
  std::vector<StageWork> out;
  for (auto& [id, s] : sweeps_) {
    if (s->cancelled || s->deriving || s->deferred_stages.empty()) continue;
    if (s->counts.pending() + s->counts.leased() > 0) continue;
    s->deriving = true;
    out.push_back({id, s->deferred_stages.front(), s->counts.total()});
  }
  return out;
}

// ---- Tasks ----

MemTask* TaskMirror::AddTask(SweepInfo* s, const std::string& task_key,
                             int64_t idx, const std::string& group_key,
                             v1::JobKind kind) {
  const std::string gk = TaskMapKey(s->id, group_key);
  auto& g = groups_[gk];
  if (g == nullptr) {
    g = std::make_unique<Group>();
    g->sweep = s;
    g->group_key = group_key;
    g->kind = KindOf(*s, kind);
    g->seq = next_group_seq_++;
  }
  auto t = std::make_unique<MemTask>();
  t->sweep = s;
  t->group = g.get();
  t->task_key = task_key;
  t->idx = idx;
  MemTask* raw = t.get();
  tasks_[TaskMapKey(s->id, task_key)] = std::move(t);
  return raw;
}

MemTask* TaskMirror::Find(const std::string& sweep_id,
                          const std::string& task_key) {
  auto it = tasks_.find(TaskMapKey(sweep_id, task_key));
  return it == tasks_.end() ? nullptr : it->second.get();
}

void TaskMirror::AddPlanned(SweepInfo* s, const std::vector<PlannedTask>& tasks,
                            const std::vector<TaskState>& states) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    const TaskState st = states[i];
    const PlannedTask& pt = tasks[i];
    CountTask(s, KindOf(*s, pt.spec.kind()), st, 1);
    s->counts.set_total(s->counts.total() + 1);
    if (IsTerminalTaskState(st)) continue;
    MemTask* t =
        AddTask(s, pt.task_key, pt.spec.index(), pt.group_key, pt.spec.kind());
    t->next_eligible_ms = 0;
    t->spec = pt.spec;
    Place(t);
  }
  Touch(s);
}

void TaskMirror::Apply(const TaskRowState& row) {
  auto it = tasks_.find(TaskMapKey(row.sweep_id, row.task_key));
  if (it == tasks_.end()) return;  // already terminal in the mirror
  MemTask* t = it->second.get();
  Unplace(t);
  SweepInfo* s = t->sweep;
  if (t->state != row.state) {
    CountTask(s, t->group->kind, t->state, -1);
    CountTask(s, t->group->kind, row.state, +1);
  }
  Touch(s);
  if (IsTerminalTaskState(row.state)) {
    tasks_.erase(it);
    return;
  }
  CopyRow(row, t);
  Place(t);
}

TaskMirror::GroupOrder TaskMirror::OrderOf(Group* g) {
  return GroupOrder(-g->sweep->priority, g->seq, g);
}

void TaskMirror::Place(MemTask* t) {
  if (t->reserved) return;
  if (t->state == v1::TASK_STATE_LEASED) {
    leased_.insert({t->expires_ms, t});
  } else if (t->state == v1::TASK_STATE_PENDING) {
    if (t->next_eligible_ms > clock_->NowMs()) {
      waiting_.insert({t->next_eligible_ms, t});
    } else {
      if (t->group->ready.empty()) MarkReady(t->group);
      t->group->ready.insert({t->idx, t});
    }
  }
}

void TaskMirror::Unplace(MemTask* t) {
  leased_.erase({t->expires_ms, t});
  waiting_.erase({t->next_eligible_ms, t});
  if (t->group->ready.erase({t->idx, t}) > 0 && t->group->ready.empty()) {
    MarkNotReady(t->group);
  }
}

void TaskMirror::MarkReady(Group* g) {
  ready_groups_.insert(OrderOf(g));
  const std::string& model = g->sweep->model_fingerprint;
  if (!model.empty()) ready_by_model_[model].insert(OrderOf(g));
}

void TaskMirror::MarkNotReady(Group* g) {
  ready_groups_.erase(OrderOf(g));
  const std::string& model = g->sweep->model_fingerprint;
  if (model.empty()) return;
  auto it = ready_by_model_.find(model);
  if (it == ready_by_model_.end()) return;
  // An emptied set stays: Pick may be iterating it.
  it->second.erase(OrderOf(g));
}

void TaskMirror::PromoteWaiting(int64_t now) {
  while (!waiting_.empty() && waiting_.begin()->first <= now) {
    MemTask* t = waiting_.begin()->second;
    waiting_.erase(waiting_.begin());
    Place(t);
  }
}

int64_t TaskMirror::RetryAfter(int64_t now) const {
  int64_t after = options_.idle_retry_after_ms;
  if (!waiting_.empty())
    after =
        std::min(after, std::max<int64_t>(1, waiting_.begin()->first - now));
  return after;
}

std::vector<ExpiredLease> TaskMirror::MarkExpiring(int64_t now) {
  std::vector<ExpiredLease> expired;
  for (auto it = leased_.begin(); it != leased_.end() && it->first <= now;
       ++it) {
    MemTask* t = it->second;
    if (t->expiring) continue;
    t->expiring = true;
    expired.push_back(
        ExpiredLease{t->sweep->id, t->task_key, t->fencing_token});
  }
  return expired;
}

// ---- Workers ----

WorkerEntry* TaskMirror::FindWorker(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : it->second.get();
}

WorkerEntry* TaskMirror::AddWorker(std::unique_ptr<WorkerEntry> e) {
  WorkerEntry* raw = e.get();
  const std::string id = e->id;
  workers_[id] = std::move(e);
  return raw;
}

void TaskMirror::AdoptPins(WorkerEntry* w) {
  for (auto& [key, g] : groups_) {
    if (g->pinned_worker == w->id) w->pinned_groups.insert(g.get());
  }
}

WorkerEntry* TaskMirror::FindOrAddWorker(const std::string& id, int64_t now) {
  auto& e = workers_[id];
  if (e == nullptr) {
    // Unknown id (its row was lost): keep serving its leases, which are
    // matched by token.
    e = std::make_unique<WorkerEntry>();
    e->id = id;
    e->registered_ms = now;
    e->last_seen_ms = now;
    AdoptPins(e.get());
  }
  return e.get();
}

std::string TaskMirror::NewWorkerId(int64_t now) {
  std::string id;
  do {
    id = absl::StrFormat("w-%x-%08x", now, static_cast<uint32_t>(rng_()));
  } while (workers_.contains(id));
  return id;
}

bool TaskMirror::Alive(const std::string& worker_id, int64_t now) const {
  auto it = workers_.find(worker_id);
  return it != workers_.end() && !it->second->draining &&
         it->second->last_seen_ms + options_.worker_timeout_ms > now;
}

bool TaskMirror::CanRun(const v1::WorkerCapabilities& caps, v1::JobKind kind,
                        int tensor_parallel) {
  if (tensor_parallel != 0 && tensor_parallel != caps.tensor_parallel())
    return false;
  return caps.job_kinds_size() == 0 ||
         std::find(caps.job_kinds().begin(), caps.job_kinds().end(), kind) !=
             caps.job_kinds().end();
}

bool TaskMirror::Compatible(const WorkerEntry& w, const Group& g) {
  return !g.sweep->cancelled &&
         CanRun(w.caps, g.kind, g.sweep->tensor_parallel);
}

void TaskMirror::Pin(Group* g, const std::string& worker_id) {
  if (g->pinned_worker == worker_id) return;
  if (!g->pinned_worker.empty()) {
    auto it = workers_.find(g->pinned_worker);
    if (it != workers_.end()) it->second->pinned_groups.erase(g);
  }
  g->pinned_worker = worker_id;
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second->pinned_groups.insert(g);
}

void TaskMirror::UnpinAll(WorkerEntry* w) {
  for (Group* g : w->pinned_groups) g->pinned_worker.clear();
  w->pinned_groups.clear();
}

// ---- Policy ----

// Cost: the worker's pinned groups plus the groups visited until `n` tasks
// are found (model matches come from ready_by_model_), never a scan of every
// ready group.
std::vector<MemTask*> TaskMirror::Pick(WorkerEntry* w, int n, int64_t now) {
  std::vector<MemTask*> picked;
  auto full = [&] { return static_cast<int>(picked.size()) >= n; };
  auto take = [&](Group* g, bool pin) {
    while (!full() && !g->ready.empty()) {
      MemTask* t = g->ready.begin()->second;
      Unplace(t);
      t->reserved = true;
      picked.push_back(t);
    }
    if (pin) Pin(g, w->id);
  };
  // 1. Groups already pinned to this worker that have leasable tasks
  // (copied: take() may re-pin).
  std::vector<Group*> mine;
  for (Group* g : w->pinned_groups) {
    if (!g->ready.empty() && Compatible(*w, *g)) mine.push_back(g);
  }
  std::sort(mine.begin(), mine.end(),
            [](Group* a, Group* b) { return OrderOf(a) < OrderOf(b); });
  for (Group* g : mine) {
    if (full()) break;
    take(g, true);
  }
  // 2. By priority; within a priority, the worker's model first; skip others'
  // pins. Iterators step past a group before take() may erase its entry.
  std::vector<Group*> pinned_elsewhere;
  const std::string& model = w->caps.model_fingerprint();
  const std::set<GroupOrder>* model_groups = nullptr;
  if (!model.empty()) {
    auto mit = ready_by_model_.find(model);
    if (mit != ready_by_model_.end()) model_groups = &mit->second;
  }
  auto consider = [&](Group* g) {
    if (g->ready.empty() || !Compatible(*w, *g)) return;
    if (!g->pinned_worker.empty() && g->pinned_worker != w->id &&
        Alive(g->pinned_worker, now)) {
      pinned_elsewhere.push_back(g);
      return;
    }
    take(g, true);
  };
  auto it = ready_groups_.begin();
  while (it != ready_groups_.end() && !full()) {
    const int level = std::get<0>(*it);
    const GroupOrder level_begin(level, std::numeric_limits<int64_t>::min(),
                                 nullptr);
    const GroupOrder next_level(level + 1, std::numeric_limits<int64_t>::min(),
                                nullptr);
    // Pass 0: groups of the worker's model at this level.
    if (model_groups != nullptr) {
      for (auto m = model_groups->lower_bound(level_begin);
           m != model_groups->end() && std::get<0>(*m) == level && !full();) {
        Group* g = std::get<2>(*m++);
        consider(g);
      }
    }
    // Pass 1: the other groups at this level.
    for (auto l = ready_groups_.lower_bound(level_begin);
         l != ready_groups_.end() && std::get<0>(*l) == level && !full();) {
      Group* g = std::get<2>(*l++);
      if (!model.empty() && g->sweep->model_fingerprint == model) continue;
      consider(g);
    }
    it = ready_groups_.lower_bound(next_level);
  }
  // 3. Nothing else: help with groups pinned to other live workers (pins stay
  // theirs).
  if (picked.empty()) {
    for (Group* g : pinned_elsewhere) {
      if (full()) break;
      if (!g->ready.empty()) take(g, false);
    }
  }
  return picked;
}

// ---- Queries ----

SweepSummary TaskMirror::Summarize(const SweepInfo& s, int64_t now) const {
  SweepSummary out;
  out.sweep_id = s.id;
  out.name = s.name;
  out.state = StateOf(s);
  out.counts = s.counts;
  out.created_ms = s.created_ms;
  out.updated_ms = s.updated_ms;
  out.version = s.version;
  if (!s.cancelled) ExplainWaiting(s, now, &out);
  return out;
}

std::vector<SweepSummary> TaskMirror::SummarizeAll(int64_t now) const {
  std::vector<SweepSummary> out;
  for (const auto& [id, s] : sweeps_) out.push_back(Summarize(*s, now));
  std::sort(out.begin(), out.end(),
            [](const SweepSummary& a, const SweepSummary& b) {
              return std::tie(a.created_ms, a.sweep_id) <
                     std::tie(b.created_ms, b.sweep_id);
            });
  return out;
}

// Which kinds of the sweep's pending tasks wait, and whether a live worker
// runs each; when some kind has none, why (blocked_reason) and what the live
// workers offer. Cost: kinds x workers.
void TaskMirror::ExplainWaiting(const SweepInfo& s, int64_t now,
                                SweepSummary* out) const {
  if (s.pending_by_kind.empty()) return;
  std::vector<const WorkerEntry*> live;
  for (const auto& [id, w] : workers_) {
    if (Alive(id, now)) live.push_back(w.get());
  }
  std::sort(
      live.begin(), live.end(),
      [](const WorkerEntry* a, const WorkerEntry* b) { return a->id < b->id; });
  std::vector<std::string> stuck;
  for (const auto& entry : s.pending_by_kind) {
    const v1::JobKind kind = entry.first;
    const int64_t pending = entry.second;
    v1::WaitingWork work;
    work.set_kind(kind);
    work.set_pending(pending);
    work.set_tensor_parallel(s.tensor_parallel);
    const bool capable =
        std::any_of(live.begin(), live.end(), [&](const WorkerEntry* w) {
          return CanRun(w->caps, kind, s.tensor_parallel);
        });
    work.set_no_capable_worker(!capable);
    if (!capable) {
      stuck.push_back(absl::StrCat(
          pending, " pending ", JobKindLabel(kind),
          s.tensor_parallel != 0
              ? absl::StrCat(" (tensor_parallel ", s.tensor_parallel, ")")
              : ""));
    }
    out->waiting.push_back(std::move(work));
  }
  if (stuck.empty()) return;
  std::vector<std::string> offers;
  for (const WorkerEntry* w : live) {
    v1::WorkerOffer offer;
    offer.set_worker_id(w->id);
    offer.set_name(w->name);
    *offer.mutable_job_kinds() = w->caps.job_kinds();
    offer.set_tensor_parallel(w->caps.tensor_parallel());
    std::vector<std::string> kinds;
    for (int k : w->caps.job_kinds()) {
      kinds.push_back(JobKindLabel(static_cast<v1::JobKind>(k)));
    }
    offers.push_back(absl::StrCat(
        w->name.empty() ? w->id : w->name, " runs ",
        kinds.empty() ? std::string("every kind") : absl::StrJoin(kinds, ","),
        " with tensor_parallel ", w->caps.tensor_parallel()));
    out->live_workers.push_back(std::move(offer));
  }
  out->blocked_reason = absl::StrCat(
      "no live worker can run ", absl::StrJoin(stuck, "; "), " task(s); ",
      offers.empty()
          ? std::string("no live worker is registered")
          : absl::StrCat("live workers: ", absl::StrJoin(offers, "; ")));
}

std::vector<v1::WorkerInfo> TaskMirror::WorkerInfos() const {
  absl::flat_hash_map<std::string, int> active;
  for (const auto& [exp, t] : leased_) active[t->worker]++;
  std::vector<v1::WorkerInfo> out;
  for (const auto& [id, w] : workers_) {
    v1::WorkerInfo info;
    info.set_worker_id(id);
    info.set_name(w->name);
    info.set_device_kind(w->caps.device_kind());
    info.set_gpu_count(w->caps.gpu_count());
    info.set_tensor_parallel(w->caps.tensor_parallel());
    info.set_model_fingerprint(w->caps.model_fingerprint());
    info.set_last_seen_unix_ms(w->last_seen_ms);
    info.set_active_leases(active.contains(id) ? active[id] : 0);
    info.set_draining(w->draining);
    info.set_tasks_done(w->tasks_done);
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(),
            [](const v1::WorkerInfo& a, const v1::WorkerInfo& b) {
              return a.worker_id() < b.worker_id();
            });
  return out;
}

}  // namespace sweepd::scheduler_internal
