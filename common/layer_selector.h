// Layer selectors: the one grammar for naming decoder layers in sweep specs,
// used by the planner (which resolves every selector of a task to an explicit
// list before the task leaves the coordinator), the reports and the worker's
// task conversion.
//
// Grammar: a comma-separated list of items, each
//   "all"                 every layer;
//   "N"                   one layer;
//   "A-B"                 A..B inclusive (A <= B);
//   "A:B" / "A:B:S"       Python-style start:stop[:step], stop exclusive, step
//                         >= 1; an empty start is 0, an empty stop is the
//                         number of layers.
// Whitespace around items is ignored. The result is sorted and de-duplicated.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COMMON_LAYER_SELECTOR_H_
#define SWEEPD_COMMON_LAYER_SELECTOR_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sweepd {

// Passed as `num_layers` when the model's layer count is not known (the
// worker's task conversion): explicit items parse, "all" and open-ended
// ranges ("5:") are INVALID_ARGUMENT, and no upper bound is checked.
inline constexpr int kLayerCountUnknown = -1;

// Parses `selector` for a model with `num_layers` layers (or
// kLayerCountUnknown). INVALID_ARGUMENT "<field>: ..." for syntax errors,
// empty selections and layers out of range.
absl::StatusOr<std::vector<int>> ParseLayerSelector(const std::string& selector,
                                                    int num_layers,
                                                    const std::string& field);

// The canonical explicit form of a sorted, de-duplicated list: runs of
// consecutive layers as "A-B", e.g. {0,1,2,3,5,7,8} -> "0-3,5,7-8". Parsing it
// back gives the same list.
std::string FormatLayerList(const std::vector<int>& layers);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_LAYER_SELECTOR_H_
