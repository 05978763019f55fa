// The determinism record of an engine-backed task (TaskResult.determinism;
// docs/ARCHITECTURE.md, "Determinism record"): what the engine's numerics
// depend on, plus this worker's code version. Plain C++; stateless.
#ifndef SWEEPD_WORKER_JOBS_DETERMINISM_H_
#define SWEEPD_WORKER_JOBS_DETERMINISM_H_

#include "worker/engine/engine.h"
#include "worker/jobs/executor.h"

namespace sweepd {

DeterminismRecord ToDeterminismRecord(const engine::NumericsInfo& n);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_DETERMINISM_H_
