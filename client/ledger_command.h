// `sweepctl backup` and `sweepctl restore`: copies of a ledger file on the
// coordinator's box, through SQLite (coordinator/snapshot.h). They read and
// write the ledger file directly, not through the Coordinator service, so
// they run where the ledger is (--ledger PATH, default $SWEEPD_LEDGER).
//
//   sweepctl backup --ledger LEDGER OUT    online backup (sqlite3_backup) of
//                                          a ledger a sweepd may be using
//   sweepctl restore --ledger LEDGER BACKUP
//                                          offline: installs BACKUP as the
//                                          ledger (sweepd must be stopped; the
//                                          old ledger is kept aside) and
//                                          raises its fencing counter
//
// Register them with RegisterCtlCommand before RunSweepctl. Stateless.
#ifndef SWEEPD_CLIENT_LEDGER_COMMAND_H_
#define SWEEPD_CLIENT_LEDGER_COMMAND_H_

#include "client/ctl_commands.h"

namespace sweepd {

CtlCommand BackupCtlCommand();
CtlCommand RestoreCtlCommand();

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_LEDGER_COMMAND_H_
