// `sweepctl artifacts`: the artifact store through sweepd (docs/ARTIFACTS.md).
//
//   sweepctl artifacts list [--sweep ID] [--format table|csv|json]
//       the artifacts committed results reference: sweep, task, index,
//       stage, name, bytes, sha256, path (reader role)
//   sweepctl artifacts fetch PATH -o FILE
//       streams the object from sweepd's --artifact-root in chunks into FILE
//       (written to FILE.partial, verified against the SHA-256 in PATH and
//       the one sweepd sends, then renamed; a mismatch leaves no FILE); no
//       overall deadline, --timeout-s bounds the time between chunks
//       (reader role)
//   sweepctl artifacts gc [--delete] [--min-age-s N]
//       objects no result, spec or checkpoint references, and stale temp
//       files: counts and bytes of what would go (a dry run, the default;
//       --dry-run says so explicitly); with --delete they are deleted
//       (admin role)
//
// Register it with RegisterCtlCommand(ArtifactsCtlCommand()) before
// RunSweepctl. Stateless; each run borrows the CtlContext's stub and streams.
#ifndef SWEEPD_CLIENT_ARTIFACTS_COMMAND_H_
#define SWEEPD_CLIENT_ARTIFACTS_COMMAND_H_

#include "client/ctl_commands.h"

namespace sweepd {

CtlCommand ArtifactsCtlCommand();

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_ARTIFACTS_COMMAND_H_
