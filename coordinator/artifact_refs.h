// Artifact references inside ledger records: every sweepd.v1.ArtifactRef
// (specs: steering vectors, replace_layer weights, heal Grams, materialize
// heals, ...) and sweepd.v1.Artifact (task results) found anywhere in a
// message, by protobuf reflection, so that a spec field added later that
// holds an ArtifactRef protects its object from `sweepctl artifacts gc`
// without being listed here.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COORDINATOR_ARTIFACT_REFS_H_
#define SWEEPD_COORDINATOR_ARTIFACT_REFS_H_

#include <set>
#include <string>

#include "google/protobuf/message.h"

namespace sweepd {

// Adds the `path` of every ArtifactRef and Artifact message inside `message`
// (itself included; repeated fields and map values too) to `paths`. Empty
// paths are skipped.
void CollectArtifactPaths(const google::protobuf::Message& message,
                          std::set<std::string>* paths);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_ARTIFACT_REFS_H_
