// The ledger's schema: the ordered migrations that build and upgrade the
// database (schema_version table), and the column lists and row readers that
// every query of sweeps and tasks shares, so a new column is added in one
// place. Private to the ledger. Functions taking a Conn use it from one
// thread (see ledger_sqlite.h); the rest are pure.
#ifndef SWEEPD_COORDINATOR_LEDGER_SCHEMA_H_
#define SWEEPD_COORDINATOR_LEDGER_SCHEMA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/ledger.h"
#include "coordinator/ledger_sqlite.h"
#include "sweepd/v1/coordinator.pb.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd::ledger_internal {

// Ordered migrations: entry i upgrades version i to i+1. Never edit a shipped
// entry; append.
const std::vector<std::string>& Migrations();

// The schema version of the database behind `c` (0 when it has none yet).
absl::StatusOr<int> ReadSchemaVersion(Conn& c);

// Applies the missing migrations in one transaction; FAILED_PRECONDITION when
// the database is newer than this binary.
absl::Status Migrate(Conn& c, int64_t now_ms);

// Task scheduling columns, in the order ReadRowState reads them.
inline constexpr char kTaskCols[] =
    "state, attempts, fencing_token, lease_worker, lease_expires_ms, "
    "next_eligible_ms";

// The columns ReadSweepRow reads, in its order: every SELECT of sweep rows
// uses this list, so a new column is added in one place.
inline constexpr char kSweepColumns[] =
    "sweep_id, name, spec, state, total_tasks, created_ms, updated_ms, "
    "deferred_stages, submitter";

// Adds `n` tasks in `state` to `c` (total included).
void AddCount(v1::TaskCounts* c, int state, int64_t n);

// A sweep row selected with kSweepColumns.
absl::StatusOr<SweepRow> ReadSweepRow(Stmt& s);

// "0,3" -> {0, 3}: the deferred_stages column.
std::vector<int> ParseStageList(const std::string& text);

// A task record selected as task_key, sweep_id, state, spec, group_key,
// attempts, lease_worker, result, error, updated_ms.
absl::StatusOr<v1::TaskRecord> ReadTaskRecord(Stmt& s);

// Reads kTaskCols starting at column `first`.
void ReadRowState(Stmt& s, int first, TaskRowState* r);

}  // namespace sweepd::ledger_internal

#endif  // SWEEPD_COORDINATOR_LEDGER_SCHEMA_H_
