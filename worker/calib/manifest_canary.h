// The canary verdicts in a materialized checkpoint's manifest
// (sweepd_manifest.json, written by the checkpoint editor,
// checkpoint_editor.h): a manual verdict replaces the `canary` object
// (UpdateManifestCanary); each canary task merges its own entry and the
// aggregate is recomputed (RecordManifestCanary). docs/CALIBRATION.md,
// "Canary".
//
// Concurrency: every read-modify-write of a manifest holds an exclusive
// flock(2) on the model directory and replaces the manifest atomically (temp
// file, fsync, rename), so concurrent tasks (threads or processes) on one
// checkpoint all land and a reader always sees a whole manifest. Stateless
// free functions; thread-safe. They do file I/O: keep them off gRPC reactor
// threads.
#ifndef SWEEPD_WORKER_CALIB_MANIFEST_CANARY_H_
#define SWEEPD_WORKER_CALIB_MANIFEST_CANARY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sweepd::calib {

// The canary field of a materialized checkpoint's manifest: "pending" when
// written; a later canary stage sets "passed" or "failed" with a short free
// text `detail` ("3/3 prompts", "prompt 2: expected 'Paris'"). Rewrites the
// manifest atomically (temp file, fsync, rename) under the manifest lock (see
// RecordManifestCanary) and replaces the whole `canary` object (per-task
// entries included: a manual verdict); the fingerprint does not change (the
// manifest is not covered by it). INVALID_ARGUMENT for another status,
// NOT_FOUND without a manifest.
absl::Status UpdateManifestCanary(const std::string& model_dir,
                                  const std::string& status,
                                  const std::string& detail);

// One canary task's verdict on a materialized checkpoint.
struct CanaryTaskReport {
  // The task key: one entry per task (shard); a re-run of the task (retry
  // after preemption) replaces its own entry.
  std::string task;
  int cases = 0;
  int passed = 0;
  std::vector<std::string> failed_cases;  // case ids, in task order
};

// Merges one canary task's verdict into the manifest's `canary` object:
//   canary.tasks[<task>] = {status, cases, passed, failed_cases}
// and recomputes the aggregate over every recorded task: status "failed" when
// any task failed, else "passed"; detail "<passed>/<cases> cases passed in <n>
// task(s)" plus "; failed: <case ids>" (at most 8 ids, then "and N more").
// Read-modify-write is serialised by an exclusive flock(2) on the model
// directory (one per open description, so it orders threads of one process
// and processes of one host, and hosts on a file system that implements
// flock), and the manifest is replaced atomically (temp file, fsync,
// rename): concurrent tasks on one checkpoint all land, none overwrites
// another's entry, and a reader always sees a whole manifest.
// INVALID_ARGUMENT for an empty task key or passed > cases, NOT_FOUND without
// a manifest.
absl::Status RecordManifestCanary(const std::string& model_dir,
                                  const CanaryTaskReport& report);

}  // namespace sweepd::calib

#endif  // SWEEPD_WORKER_CALIB_MANIFEST_CANARY_H_
