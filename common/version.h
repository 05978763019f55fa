// What version of sweepd computed something: the task-key code version (part
// of every task key; bumped whenever a change alters what a task computes) and
// the build's version (project version + git commit, written at build time by
// cmake/WriteBuildInfo.cmake), recorded in every result's determinism record.
//
// Constants and a pure function; thread-safe.
#ifndef SWEEPD_COMMON_VERSION_H_
#define SWEEPD_COMMON_VERSION_H_

namespace sweepd {

// Part of every task key (coordinator/planner.h). v2: the dtype is resolved
// into the key, param axes set the job's fields, seeds fold into reinit,
// DatasetRef.split.
inline constexpr char kTaskCodeVersion[] = "sweepd-task-v2";

// "0.1.0+<12-hex commit>[+dirty]" ("+unknown" outside a git checkout).
const char* BuildVersion();

}  // namespace sweepd

#endif  // SWEEPD_COMMON_VERSION_H_
