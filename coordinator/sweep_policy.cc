#include "coordinator/sweep_policy.h"

namespace sweepd {

void ResolvePolicyDefaults(const SweepPolicyDefaults& defaults,
                           v1::ExecutionPolicy* policy) {
  if (policy->max_attempts() == 0)
    policy->set_max_attempts(defaults.max_attempts);
  if (policy->lease_seconds() == 0)
    policy->set_lease_seconds(defaults.lease_seconds);
  if (policy->retry_backoff_ms() == 0)
    policy->set_retry_backoff_ms(defaults.retry_backoff_ms);
}

EffectivePolicy EffectivePolicyOf(const v1::ExecutionPolicy& policy,
                                  const SweepPolicyDefaults& defaults) {
  v1::ExecutionPolicy resolved = policy;
  ResolvePolicyDefaults(defaults, &resolved);
  EffectivePolicy out;
  out.max_attempts = resolved.max_attempts();
  out.retry_backoff_ms = resolved.retry_backoff_ms();
  out.lease_ms = int64_t{resolved.lease_seconds()} * 1000;
  return out;
}

}  // namespace sweepd
