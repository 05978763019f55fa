// Sweep execution policy defaults and the one resolver that fills them. A
// policy field (lease_seconds, max_attempts, retry_backoff_ms) comes from the
// submitted spec when set (non-zero), else from the coordinator's configured
// default (sweepd's --lease-seconds), else from the built-in default below.
// The planner resolves a spec's policy with it before the sweep is stored, and
// the ledger reads stored policies through it, so no other place picks a
// default. Plain values and pure functions; thread-safe.
#ifndef SWEEPD_COORDINATOR_SWEEP_POLICY_H_
#define SWEEPD_COORDINATOR_SWEEP_POLICY_H_

#include <cstdint>

#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// What a policy field left at 0 becomes. The member initialisers are the
// built-in defaults; sweepd overrides them from its flags.
struct SweepPolicyDefaults {
  int max_attempts = 3;
  int lease_seconds = 60;
  int retry_backoff_ms = 1000;
};

// Fills the fields of `policy` left at 0 from `defaults` (a value in the spec
// wins). Ranges are checked by the caller (the planner names the field).
void ResolvePolicyDefaults(const SweepPolicyDefaults& defaults,
                           v1::ExecutionPolicy* policy);

// A policy with every default applied, in the units the ledger uses.
struct EffectivePolicy {
  int max_attempts = 0;
  int64_t retry_backoff_ms = 0;
  int64_t lease_ms = 0;
};
EffectivePolicy EffectivePolicyOf(const v1::ExecutionPolicy& policy,
                                  const SweepPolicyDefaults& defaults);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_SWEEP_POLICY_H_
