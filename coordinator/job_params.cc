#include "coordinator/job_params.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

absl::Status Invalid(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

struct JobParam {
  const char* name;
  enum class Type { kInt, kDouble, kString } type;
};

const std::vector<JobParam>& ParamsOf(v1::JobKind kind) {
  using T = JobParam::Type;
  static const std::vector<JobParam> kWindowed = {
      {"context_length", T::kInt}, {"stride", T::kInt}, {"bos", T::kString}};
  static const std::vector<JobParam> kSynthetic = {
      {"min_ms", T::kInt},
      {"max_ms", T::kInt},
      {"failure_rate", T::kDouble},
      {"permanent_failure_rate", T::kDouble}};
  static const std::vector<JobParam> kGenerate = {
      {"samples", T::kInt},        {"max_new_tokens", T::kInt},
      {"temperature", T::kDouble}, {"top_k", T::kInt},
      {"top_p", T::kDouble},       {"bos", T::kString},
      {"min_p", T::kDouble}};
  static const std::vector<JobParam> kCanary = {{"max_new_tokens", T::kInt},
                                                {"bos", T::kString}};
  static const std::vector<JobParam> kNone;
  switch (kind) {
    case v1::JOB_KIND_EVAL:
    case v1::JOB_KIND_PROBE:
    case v1::JOB_KIND_HEAD_IMPORTANCE:
    case v1::JOB_KIND_CAPTURE:
      return kWindowed;
    case v1::JOB_KIND_GENERATE:
      return kGenerate;
    case v1::JOB_KIND_CANARY:
      return kCanary;
    case v1::JOB_KIND_SYNTHETIC:
      return kSynthetic;
    default:
      return kNone;
  }
}

std::string JobKindText(v1::JobKind kind) {
  std::string name = v1::JobKind_Name(kind);
  constexpr absl::string_view kPrefix = "JOB_KIND_";
  if (absl::StartsWith(name, kPrefix)) name = name.substr(kPrefix.size());
  return absl::AsciiStrToLower(name);
}

absl::StatusOr<const JobParam*> FindParam(v1::JobKind kind,
                                          const std::string& name,
                                          const std::string& field) {
  std::vector<std::string> known;
  for (const JobParam& p : ParamsOf(kind)) {
    if (name == p.name) return &p;
    known.push_back(p.name);
  }
  return Invalid(field,
                 absl::StrCat("unknown parameter \"", name, "\" for ",
                              JobKindText(kind), " jobs; a param axis may set ",
                              known.empty() ? "nothing for this job kind"
                                            : absl::StrJoin(known, ", ")));
}

absl::Status CheckParamValue(const JobParam& p, const v1::Value& v,
                             const std::string& field) {
  const bool ok = (p.type == JobParam::Type::kInt &&
                   v.kind_case() == v1::Value::kIntValue) ||
                  (p.type == JobParam::Type::kDouble &&
                   (v.kind_case() == v1::Value::kDoubleValue ||
                    v.kind_case() == v1::Value::kIntValue)) ||
                  (p.type == JobParam::Type::kString &&
                   v.kind_case() == v1::Value::kStringValue);
  if (ok) return absl::OkStatus();
  static constexpr const char* kTypeNames[] = {"an integer", "a number",
                                               "a string"};
  return Invalid(field, absl::StrCat("parameter \"", p.name, "\" takes ",
                                     kTypeNames[static_cast<int>(p.type)]));
}

}  // namespace

std::string ParamValueText(const v1::Value& v) {
  switch (v.kind_case()) {
    case v1::Value::kIntValue:
      return absl::StrCat(v.int_value());
    case v1::Value::kDoubleValue:
      return absl::StrCat(v.double_value());
    case v1::Value::kStringValue:
      return absl::StrCat("\"", v.string_value(), "\"");
    case v1::Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case v1::Value::KIND_NOT_SET:
      break;
  }
  return "(unset)";
}

namespace {

double AsDouble(const v1::Value& v) {
  return v.kind_case() == v1::Value::kIntValue
             ? static_cast<double>(v.int_value())
             : v.double_value();
}

}  // namespace

absl::Status ApplyJobParam(v1::SweepSpec* spec, const std::string& name,
                           const v1::Value& v, const std::string& field) {
  auto int32_value = [&]() -> absl::StatusOr<int32_t> {
    if (v.int_value() < std::numeric_limits<int32_t>::min() ||
        v.int_value() > std::numeric_limits<int32_t>::max()) {
      return Invalid(
          field, absl::StrCat(name, " = ", v.int_value(), " is out of range"));
    }
    return static_cast<int32_t>(v.int_value());
  };
  v1::TextWindowing* w = nullptr;
  if (spec->has_eval()) w = spec->mutable_eval()->mutable_windowing();
  if (spec->has_probe()) w = spec->mutable_probe()->mutable_windowing();
  if (spec->has_head_importance()) {
    w = spec->mutable_head_importance()->mutable_windowing();
  }
  if (spec->has_capture()) w = spec->mutable_capture()->mutable_windowing();
  if (w != nullptr) {
    if (name == "context_length") {
      ASSIGN_OR_RETURN(int32_t n, int32_value());
      w->set_context_length(n);
    } else if (name == "stride") {
      ASSIGN_OR_RETURN(int32_t n, int32_value());
      w->set_stride(n);
    } else if (name == "bos") {
      w->set_bos(v.string_value());
    }
    return absl::OkStatus();
  }
  if (spec->has_generate()) {
    v1::GenerateJob* job = spec->mutable_generate();
    if (name == "samples" || name == "max_new_tokens" || name == "top_k") {
      ASSIGN_OR_RETURN(int32_t n, int32_value());
      if (name == "samples") job->set_samples(n);
      if (name == "max_new_tokens") job->set_max_new_tokens(n);
      if (name == "top_k") job->set_top_k(n);
    } else if (name == "temperature") {
      job->set_temperature(AsDouble(v));
    } else if (name == "top_p") {
      job->set_top_p(AsDouble(v));
    } else if (name == "min_p") {
      job->set_min_p(AsDouble(v));
    } else if (name == "bos") {
      job->set_bos(v.string_value());
    }
    return absl::OkStatus();
  }
  if (spec->has_canary()) {
    v1::CanaryJob* job = spec->mutable_canary();
    if (name == "max_new_tokens") {
      ASSIGN_OR_RETURN(int32_t n, int32_value());
      job->set_max_new_tokens(n);
    } else if (name == "bos") {
      job->set_bos(v.string_value());
    }
    return absl::OkStatus();
  }
  if (spec->has_synthetic()) {
    v1::SyntheticJob* job = spec->mutable_synthetic();
    if (name == "min_ms") {
      ASSIGN_OR_RETURN(int32_t n, int32_value());
      job->set_min_ms(n);
    } else if (name == "max_ms") {
      ASSIGN_OR_RETURN(int32_t n, int32_value());
      job->set_max_ms(n);
    } else if (name == "failure_rate") {
      job->set_failure_rate(AsDouble(v));
    } else if (name == "permanent_failure_rate") {
      job->set_permanent_failure_rate(AsDouble(v));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckParamAxis(v1::JobKind kind, const std::string& name,
                            const std::vector<v1::Value>& values,
                            const std::string& field) {
  ASSIGN_OR_RETURN(const JobParam* param,
                   FindParam(kind, name, field + ".name"));
  for (size_t j = 0; j < values.size(); ++j) {
    RETURN_IF_ERROR(CheckParamValue(*param, values[j],
                                    absl::StrCat(field, ".values[", j, "]")));
  }
  return absl::OkStatus();
}

}  // namespace sweepd
