// Artifact references by reflection. See artifact_refs.h.
#include "coordinator/artifact_refs.h"

#include <vector>

#include "google/protobuf/descriptor.h"

namespace sweepd {
namespace {

// Messages whose string field `path` names an object of the store.
bool IsReferenceType(const google::protobuf::Descriptor* d) {
  return d->full_name() == "sweepd.v1.ArtifactRef" ||
         d->full_name() == "sweepd.v1.Artifact";
}

void Collect(const google::protobuf::Message& message,
             std::set<std::string>* paths, int depth) {
  // Specs nest a few levels; the bound only guards against a malformed
  // message (proto3 messages cannot recurse without a limit in practice).
  if (depth > 64) return;
  const google::protobuf::Descriptor* desc = message.GetDescriptor();
  const google::protobuf::Reflection* refl = message.GetReflection();
  if (IsReferenceType(desc)) {
    const google::protobuf::FieldDescriptor* path =
        desc->FindFieldByName("path");
    if (path != nullptr &&
        path->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      std::string value = refl->GetString(message, path);
      if (!value.empty()) paths->insert(std::move(value));
    }
    return;
  }
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  refl->ListFields(message, &fields);
  for (const google::protobuf::FieldDescriptor* f : fields) {
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      continue;
    }
    if (f->is_repeated()) {  // map fields are repeated entry messages
      const int n = refl->FieldSize(message, f);
      for (int i = 0; i < n; ++i) {
        Collect(refl->GetRepeatedMessage(message, f, i), paths, depth + 1);
      }
    } else {
      Collect(refl->GetMessage(message, f), paths, depth + 1);
    }
  }
}

}  // namespace

void CollectArtifactPaths(const google::protobuf::Message& message,
                          std::set<std::string>* paths) {
  Collect(message, paths, 0);
}

}  // namespace sweepd
