#include "coordinator/job_validation.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "coordinator/calibration_validation.h"
#include "coordinator/intervention_validation.h"

namespace sweepd::internal {

namespace v1 = ::sweepd::v1;

absl::Status ValidateJob(v1::SweepSpec* spec, const ModelShape& m) {
  switch (spec->job_case()) {
    case v1::SweepSpec::kEval: {
      RETURN_IF_ERROR(ValidateWindowing(
          spec->mutable_eval()->mutable_windowing(), "eval.windowing"));
      return ValidateInterventionSet(
          spec->mutable_eval()->mutable_base_interventions(), m,
          "eval.base_interventions");
    }
    case v1::SweepSpec::kProbe:
      return ValidateWindowing(spec->mutable_probe()->mutable_windowing(),
                               "probe.windowing");
    case v1::SweepSpec::kHeadImportance:
    case v1::SweepSpec::kCapture:
    case v1::SweepSpec::kHeal:
    case v1::SweepSpec::kMaterialize:
    case v1::SweepSpec::kRetrain:
      return internal::ValidateCalibrationJob(spec, m);
    case v1::SweepSpec::kGenerate: {
      auto* job = spec->mutable_generate();
      if (job->prompts_size() == 0 && spec->datasets_size() == 0) {
        return Invalid("generate.prompts",
                       "at least one prompt (or a JSONL dataset of prompts)");
      }
      if (job->references_size() != 0 &&
          job->references_size() != job->prompts_size()) {
        return Invalid("generate.references",
                       absl::StrCat(job->references_size(), " references for ",
                                    job->prompts_size(), " prompts"));
      }
      if (!(job->min_p() >= 0.0 && job->min_p() < 1.0)) {
        return Invalid("generate.min_p",
                       absl::StrCat(job->min_p(), " must be in [0, 1)"));
      }
      for (int i = 0; i < job->ban_strings_size(); ++i) {
        if (job->ban_strings(i).empty()) {
          return Invalid(absl::StrCat("generate.ban_strings[", i, "]"),
                         "must not be empty");
        }
      }
      for (int i = 0; i < job->stop_size(); ++i) {
        if (job->stop(i).empty()) {
          return Invalid(absl::StrCat("generate.stop[", i, "]"),
                         "must not be empty");
        }
      }
      if (job->max_batch() < 0) {
        return Invalid("generate.max_batch", "must be >= 0 (0 = 64)");
      }
      {
        v1::VerifierSpec* v = job->mutable_verifier_spec();
        if (!job->verifier().empty()) {
          if (!v->kind().empty() && v->kind() != job->verifier()) {
            return Invalid(
                "generate.verifier",
                absl::StrCat("\"", job->verifier(),
                             "\" conflicts with verifier_spec.kind \"",
                             v->kind(), "\""));
          }
          v->set_kind(job->verifier());
          job->clear_verifier();
        }
        static const char* const kKinds[] = {
            "", "exact", "contains", "regex", "numeric", "nll", "command"};
        if (std::find(std::begin(kKinds), std::end(kKinds), v->kind()) ==
            std::end(kKinds)) {
          return Invalid(
              "generate.verifier_spec.kind",
              absl::StrCat("\"", v->kind(),
                           "\" is not one of exact, contains, regex, "
                           "numeric, nll, command"));
        }
        if (v->kind() == "regex" && v->pattern().empty()) {
          return Invalid("generate.verifier_spec.pattern",
                         "required by the regex verifier");
        }
        if (v->kind() == "command" && v->command_size() == 0) {
          return Invalid("generate.verifier_spec.command",
                         "required by the command verifier (argv)");
        }
        if (!(v->timeout_seconds() >= 0) || v->batch_size() < 0) {
          return Invalid("generate.verifier_spec",
                         "timeout_seconds and batch_size must be >= 0");
        }
      }
      if (job->samples() == 0) job->set_samples(1);
      RETURN_IF_ERROR(
          CheckRange(job->samples(), 1, 100'000, "generate.samples"));
      if (job->max_new_tokens() == 0) job->set_max_new_tokens(128);
      RETURN_IF_ERROR(CheckRange(job->max_new_tokens(), 1, kMaxContextLength,
                                 "generate.max_new_tokens"));
      if (!(job->temperature() >= 0.0) || !std::isfinite(job->temperature())) {
        return Invalid(
            "generate.temperature",
            absl::StrCat(job->temperature(), " must be finite and >= 0"));
      }
      if (job->top_k() < 0) return Invalid("generate.top_k", "must be >= 0");
      if (job->top_p() == 0.0) job->set_top_p(1.0);
      if (!(job->top_p() > 0.0 && job->top_p() <= 1.0)) {
        return Invalid("generate.top_p",
                       absl::StrCat(job->top_p(), " must be in (0, 1]"));
      }
      for (const auto& [token, bias] : job->logit_bias()) {
        if (token < 0) {
          return Invalid(absl::StrCat("generate.logit_bias[", token, "]"),
                         "token ids must be >= 0");
        }
      }
      for (int i = 0; i < job->banned_tokens_size(); ++i) {
        if (job->banned_tokens(i) < 0) {
          return Invalid(absl::StrCat("generate.banned_tokens[", i, "]"),
                         "token ids must be >= 0");
        }
      }
      return ValidateBos(job->mutable_bos(), "generate.bos");
    }
    case v1::SweepSpec::kCanary: {
      auto* job = spec->mutable_canary();
      if (job->cases_size() == 0)
        return Invalid("canary.cases", "at least one case");
      for (int i = 0; i < job->cases_size(); ++i) {
        const std::string cf = absl::StrCat("canary.cases[", i, "]");
        if (job->cases(i).prompt().empty())
          return Invalid(cf + ".prompt", "required");
        if (job->cases(i).expect_size() == 0) {
          return Invalid(cf + ".expect", "at least one expected substring");
        }
      }
      if (job->max_new_tokens() == 0) job->set_max_new_tokens(32);
      RETURN_IF_ERROR(CheckRange(job->max_new_tokens(), 1, kMaxContextLength,
                                 "canary.max_new_tokens"));
      return ValidateBos(job->mutable_bos(), "canary.bos");
    }
    case v1::SweepSpec::kSynthetic: {
      const auto& job = spec->synthetic();
      if (job.tasks() < 1) {
        return Invalid("synthetic.tasks",
                       absl::StrCat(job.tasks(), " must be >= 1"));
      }
      RETURN_IF_ERROR(
          CheckRange(job.min_ms(), 0, 3'600'000, "synthetic.min_ms"));
      RETURN_IF_ERROR(
          CheckRange(job.max_ms(), 0, 3'600'000, "synthetic.max_ms"));
      if (job.min_ms() > job.max_ms()) {
        return Invalid("synthetic.min_ms",
                       absl::StrCat(job.min_ms(), " > max_ms ", job.max_ms()));
      }
      RETURN_IF_ERROR(
          CheckFraction(job.failure_rate(), "synthetic.failure_rate"));
      return CheckFraction(job.permanent_failure_rate(),
                           "synthetic.permanent_failure_rate");
    }
    case v1::SweepSpec::JOB_NOT_SET:
      break;
  }
  return Invalid("job", "exactly one job kind must be set");
}

absl::Status ValidatePolicy(const SweepPolicyDefaults& defaults,
                            v1::ExecutionPolicy* p) {
  ResolvePolicyDefaults(defaults, p);
  RETURN_IF_ERROR(CheckRange(p->max_attempts(), 1, 100, "policy.max_attempts"));
  RETURN_IF_ERROR(
      CheckRange(p->lease_seconds(), 1, 86'400, "policy.lease_seconds"));
  RETURN_IF_ERROR(CheckRange(p->retry_backoff_ms(), 1, 3'600'000,
                             "policy.retry_backoff_ms"));
  RETURN_IF_ERROR(
      CheckRange(p->tensor_parallel(), 0, 1024, "policy.tensor_parallel"));
  return absl::OkStatus();
}

}  // namespace sweepd::internal
