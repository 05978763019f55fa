#include "client/ledger_command.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/ctl_args.h"
#include "coordinator/snapshot.h"

namespace sweepd {
namespace {

// The ledger path (--ledger, else $SWEEPD_LEDGER) and the one positional
// argument; prints a usage error and returns false when they are missing.
bool ParseLedgerArgs(CtlContext& ctx, const std::vector<std::string>& args,
                     const char* what, std::string* ledger, std::string* path) {
  CLI::App app;
  AddCtlValueFlag(app, "--ledger", ledger);
  std::vector<std::string> positional;
  absl::Status parsed = ParseCtlArgs(app, args, &positional);
  if (parsed.ok()) {
    parsed = CheckPositionalCount(positional, 1, 1,
                                  absl::StrCat("missing argument ", what));
  }
  if (parsed.ok() && ledger->empty()) {
    if (const char* env = std::getenv("SWEEPD_LEDGER")) *ledger = env;
    if (ledger->empty()) {
      parsed = absl::InvalidArgumentError(
          "--ledger PATH is required (or $SWEEPD_LEDGER)");
    }
  }
  if (!parsed.ok()) {
    *ctx.env.err << "sweepctl " << ctx.command << ": " << parsed.message()
                 << "\n";
    return false;
  }
  *path = positional[0];
  return true;
}

int Fail(CtlContext& ctx, const absl::Status& status) {
  *ctx.env.err << "sweepctl " << ctx.command << ": "
               << absl::StatusCodeToString(status.code()) << ": "
               << status.message() << "\n";
  return kCtlExitError;
}

int RunBackup(CtlContext& ctx, const std::vector<std::string>& args) {
  std::string ledger, out;
  if (!ParseLedgerArgs(ctx, args, "OUT", &ledger, &out)) return kCtlExitUsage;
  absl::Status s = BackupLedger(ledger, out);
  if (!s.ok()) return Fail(ctx, s);
  *ctx.env.out << "backed up " << ledger << " to " << out << "\n";
  return kCtlExitOk;
}

int RunRestore(CtlContext& ctx, const std::vector<std::string>& args) {
  std::string ledger, backup;
  if (!ParseLedgerArgs(ctx, args, "BACKUP", &ledger, &backup)) {
    return kCtlExitUsage;
  }
  absl::StatusOr<RestoredLedger> restored =
      RestoreLedger(backup, ledger, ctx.env.clock->NowMs());
  if (!restored.ok()) return Fail(ctx, restored.status());
  *ctx.env.out << "restored " << ledger << " from " << backup
               << " (restore epoch " << restored->info.restore_epoch
               << "; fencing tokens continue above "
               << restored->info.fencing_counter << ")\n";
  if (!restored->moved_aside.empty()) {
    *ctx.env.out << "the replaced ledger was kept as " << restored->moved_aside
                 << "\n";
  }
  return kCtlExitOk;
}

}  // namespace

CtlCommand BackupCtlCommand() {
  return {"backup", "--ledger LEDGER OUT",
          "Online backup of a ledger file (sweepd may be running).",
          "Copies LEDGER to OUT with SQLite's online backup API: a consistent\n"
          "copy taken while sweepd keeps writing, checked with\n"
          "integrity_check, fsynced and renamed into place. Run it on the\n"
          "coordinator's box. OUT must not exist.",
          RunBackup};
}

CtlCommand RestoreCtlCommand() {
  return {"restore", "--ledger LEDGER BACKUP",
          "Install a backup or snapshot as the ledger (sweepd stopped).",
          "Checks BACKUP with integrity_check, copies it over LEDGER (an\n"
          "existing ledger is kept as LEDGER.pre-restore-<ms>) and raises its\n"
          "fencing counter past anything the replaced ledger could have\n"
          "issued, so leases granted before the restore can never commit.\n"
          "Refused while a sweepd holds the ledger. Start sweepd on LEDGER\n"
          "afterwards; every sweep resumes from the backup's state.",
          RunRestore};
}

}  // namespace sweepd
