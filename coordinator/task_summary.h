// Task summaries: one-line texts of a task's interventions and parameters, as
// `sweepctl results` prints them and sweepd's dashboard shows and filters them
// ("skip:3+mask_heads:4[0,1]", "lr=0.1,seed_name=x"). Stateless free functions;
// thread-safe.
#ifndef SWEEPD_COORDINATOR_TASK_SUMMARY_H_
#define SWEEPD_COORDINATOR_TASK_SUMMARY_H_

#include <string>

#include "sweepd/v1/spec.pb.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

// "skip:3+mask_heads:4[0,1]"; "baseline" when empty. reinit prints its seed:
// "reinit:5@seed=7".
std::string InterventionSummary(const sweepd::v1::InterventionSet& set);
// Sorted "name=value" pairs joined by ','; "" when none.
std::string ParamsSummary(const sweepd::v1::TaskSpec& spec);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_TASK_SUMMARY_H_
