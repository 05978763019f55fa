// Layer selectors: the text that names decoder layers in a sweep spec ("all",
// "3", "0,5,11", "10-22", "0:60:2", and comma-separated mixes of these). One
// parser, used by the planner (to expand and canonicalise selectors) and by the
// layer profile (to read the layers of finished tasks' interventions).
//
// A stateless free function: thread-safe, no I/O.
#ifndef SWEEPD_COORDINATOR_LAYER_SELECTOR_H_
#define SWEEPD_COORDINATOR_LAYER_SELECTOR_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sweepd {

// Parses a layer selector ("all", "3", "0,5,11", "10-22", "0:60:2", mixes) for
// a model with `num_layers` layers into a sorted, de-duplicated list. `field`
// names the spec field in errors (INVALID_ARGUMENT "<field>: ...").
absl::StatusOr<std::vector<int>> ParseLayerSelector(const std::string& selector,
                                                    int num_layers,
                                                    const std::string& field);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_LAYER_SELECTOR_H_
