// Spec loader: reads a sweep specification file (YAML or JSON) into a
// sweepd.v1.SweepSpec.
//
// The document is first converted to JSON (YAML plain scalars are typed:
// integers, floats, true/false and null; quoted scalars stay strings), then
// checked field by field against the SweepSpec descriptor before the proto3
// JSON mapping converts it, so that a misspelled or unknown field fails with
// its name, its path and a close-match suggestion:
//   unknown field 'selct' at grid.axes[0].layers (did you mean 'select'?)
//   [sweep.yaml:7:9]
// Field names may be given as the proto name (snake_case) or its json_name
// (lowerCamelCase). Conveniences applied during the check: a bare scalar where
// a sweepd.v1.Value is expected is wrapped (`values: [1, 0.5, "x", true]`), a
// bare selector where a LayerSet is expected is wrapped (`skip: "3-5"`), and an
// integer given for a string field is used as its decimal text
// (`select: 3`).
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_CLIENT_SPEC_LOADER_H_
#define SWEEPD_CLIENT_SPEC_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd {

enum class SpecFormat {
  kAuto,  // JSON if the first non-blank character is '{', else YAML
  kYaml,
  kJson,
};

// Parses `text`; `source` names the document in error messages (a file name or
// "<stdin>"). INVALID_ARGUMENT for syntax errors (with line and column),
// unknown fields and type mismatches (with the field path).
absl::StatusOr<sweepd::v1::SweepSpec> ParseSweepSpec(
    const std::string& text, SpecFormat format,
    const std::string& source = "<spec>");

// Reads `path`; the format comes from the extension (.yaml, .yml, .json), else
// kAuto. NOT_FOUND naming the path when it cannot be opened.
absl::StatusOr<sweepd::v1::SweepSpec> LoadSweepSpecFile(
    const std::string& path);

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_SPEC_LOADER_H_
