// The RPC handlers' shared helpers (service_validation.h).
#include "coordinator/service_validation.h"

#include "absl/strings/str_cat.h"
#include "common/utf8.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"
#include "proto/grpc_status.h"

namespace sweepd::service_internal {
namespace {

// Where in `bytes` (a serialized `desc` message) a string field holds invalid
// UTF-8, as "field.path (byte 0xNN at offset O)"; "" when none does (or the
// bytes are not a message at all).
std::string FindInvalidUtf8Field(const google::protobuf::Descriptor* desc,
                                 const std::string& bytes,
                                 const std::string& prefix, int depth = 0) {
  google::protobuf::UnknownFieldSet fields;
  if (depth > 32 || !fields.ParseFromString(bytes)) return "";
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& f = fields.field(i);
    if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      continue;
    }
    const google::protobuf::FieldDescriptor* fd =
        desc->FindFieldByNumber(f.number());
    if (fd == nullptr) continue;
    const std::string path = prefix + fd->name();
    if (fd->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      const absl::Status valid = CheckUtf8(f.length_delimited(), path);
      if (!valid.ok()) return std::string(valid.message());
    } else if (fd->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      std::string inner = FindInvalidUtf8Field(
          fd->message_type(), f.length_delimited(), path + ".", depth + 1);
      if (!inner.empty()) return inner;
    }
  }
  return "";
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) { return ToGrpcStatus(s); }

grpc::ServerUnaryReactor* FinishDraining(grpc::ServerUnaryReactor* r) {
  r->Finish(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "sweepd is shutting down"));
  return r;
}

grpc::Status Invalid(absl::string_view field, absl::string_view what) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat(field, ": ", what));
}

void FillStatus(const SweepSummary& sum, const v1::SweepSpec* spec,
                v1::SweepStatus* out) {
  out->set_sweep_id(sum.sweep_id);
  out->set_name(sum.name);
  out->set_state(sum.state);
  *out->mutable_counts() = sum.counts;
  if (spec != nullptr) *out->mutable_spec() = *spec;
  out->set_created_unix_ms(sum.created_ms);
  out->set_updated_unix_ms(sum.updated_ms);
  for (const v1::WaitingWork& w : sum.waiting) *out->add_waiting() = w;
  out->set_blocked_reason(sum.blocked_reason);
  for (const v1::WorkerOffer& w : sum.live_workers) {
    *out->add_live_workers() = w;
  }
}

grpc::Status ValidateLeases(
    const google::protobuf::RepeatedPtrField<v1::LeaseProgress>& in,
    std::vector<LeaseRef>* out) {
  for (int i = 0; i < in.size(); ++i) {
    const auto& l = in.Get(i);
    if (l.task_key().empty())
      return Invalid(absl::StrCat("leases[", i, "].task_key"), "empty");
    if (l.fencing_token() <= 0) {
      return Invalid(absl::StrCat("leases[", i, "].fencing_token"),
                     "must be > 0");
    }
    out->push_back(LeaseRef{l.task_key(), l.fencing_token()});
  }
  return grpc::Status::OK;
}

grpc::Status ParseRawRequest(const grpc::ByteBuffer& raw,
                             google::protobuf::Message* out) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (raw.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  if (out->ParseFromString(bytes)) return grpc::Status::OK;
  const std::string type = out->GetDescriptor()->name();
  std::string why = FindInvalidUtf8Field(out->GetDescriptor(), bytes, "");
  if (why.empty()) {
    why = absl::StrCat("the ", bytes.size(), " bytes are not a serialized ",
                       type);
  } else {
    why = absl::StrCat(why, "; strings must be UTF-8");
  }
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat(type, " does not parse: ", why));
}

}  // namespace sweepd::service_internal
