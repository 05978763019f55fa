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
// "reinit:5@seed=7"; steer and replace_layer as below.
std::string InterventionSummary(const sweepd::v1::InterventionSet& set);
// "steer:3[add,x2,pos=0,-1]#<id>" (no "pos=" = every position) and
// "replace_layer:4#<id>", where <id> names the vector or weights: the first 12
// hex digits of the artifact's SHA-256 ("@" + tensor name when one is given),
// or "v" + a 64-bit hash of the inline values, so that two steers differing
// only in their vector get different summaries.
std::string SteerSummary(const sweepd::v1::Steer& steer);
std::string ReplaceLayerSummary(const sweepd::v1::ReplaceLayer& replace);
// Sorted "name=value" pairs joined by ','; "" when none.
std::string ParamsSummary(const sweepd::v1::TaskSpec& spec);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_TASK_SUMMARY_H_
