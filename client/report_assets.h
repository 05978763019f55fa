// Files compiled into the binary for the HTML report: the vendored Vega,
// Vega-Lite and vega-embed builds of third_party/vega/. The table is generated
// at build time by cmake/EmbedFiles.cmake (see client/CMakeLists.txt) and
// lives in static storage for the whole program: the views never dangle.
// Thread-safe (read-only).
#ifndef SWEEPD_CLIENT_REPORT_ASSETS_H_
#define SWEEPD_CLIENT_REPORT_ASSETS_H_

#include <string_view>

#include "absl/types/span.h"

namespace sweepd {

// One embedded file: its base name ("vega.min.js") and its exact bytes.
struct EmbeddedFile {
  std::string_view name;
  std::string_view contents;
};

// Every embedded report asset, in the order cmake lists them.
absl::Span<const EmbeddedFile> ReportAssets();

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_REPORT_ASSETS_H_
