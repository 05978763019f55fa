#include "coordinator/sweep_policy.h"

#include "coordinator/planner.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

TEST(SweepPolicyTest, SpecValueThenConfiguredDefaultThenBuiltIn) {
  SweepPolicyDefaults configured;
  configured.lease_seconds = 17;
  v1::ExecutionPolicy p;
  p.set_max_attempts(7);
  ResolvePolicyDefaults(configured, &p);
  EXPECT_EQ(p.max_attempts(), 7);         // the spec's
  EXPECT_EQ(p.lease_seconds(), 17);       // the configured default
  EXPECT_EQ(p.retry_backoff_ms(), 1000);  // the built-in default
}

TEST(SweepPolicyTest, EffectivePolicyIsInLedgerUnits) {
  v1::ExecutionPolicy p;
  p.set_lease_seconds(9);
  EffectivePolicy e = EffectivePolicyOf(p, SweepPolicyDefaults());
  EXPECT_EQ(e.lease_ms, 9'000);
  EXPECT_EQ(e.max_attempts, 3);
  EXPECT_EQ(e.retry_backoff_ms, 1000);
}

v1::SweepSpec Synthetic() {
  v1::SweepSpec spec;
  spec.set_name("policy");
  spec.mutable_synthetic()->set_tasks(2);
  return spec;
}

TEST(SweepPolicyTest, PlannerUsesTheConfiguredLeaseWhenTheSpecHasNone) {
  PlannerOptions options;
  options.policy_defaults.lease_seconds = 17;
  absl::StatusOr<Plan> plan = PlanSweep(Synthetic(), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->resolved_spec.policy().lease_seconds(), 17);
}

TEST(SweepPolicyTest, PlannerKeepsTheSpecLeaseOverTheConfigured) {
  PlannerOptions options;
  options.policy_defaults.lease_seconds = 17;
  v1::SweepSpec spec = Synthetic();
  spec.mutable_policy()->set_lease_seconds(5);
  absl::StatusOr<Plan> plan = PlanSweep(spec, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->resolved_spec.policy().lease_seconds(), 5);
}

}  // namespace
}  // namespace sweepd
