// Shared check of the fault and durability tests: every task of a synthetic
// sweep has exactly one DONE record carrying its synthetic value, seen through
// the API. Header-only (gtest assertions); used by tests in this directory.
#ifndef SWEEPD_TESTS_FAULT_EXACTLY_ONCE_H_
#define SWEEPD_TESTS_FAULT_EXACTLY_ONCE_H_

#include <set>
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/sweep_cluster.h"
#include "worker/jobs/synthetic_executor.h"

namespace sweepd::testing {

inline void ExpectExactlyOnce(SweepCluster& cluster,
                              const std::string& sweep_id, int n) {
  auto tasks = cluster.ListAllTasks(sweep_id, {}, /*page_size=*/1000);
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  ASSERT_EQ(tasks->size(), static_cast<size_t>(n));
  std::set<std::string> keys;
  for (const sweepd::v1::TaskRecord& t : *tasks) {
    keys.insert(t.task_key());
    ASSERT_EQ(t.state(), sweepd::v1::TASK_STATE_DONE) << t.task_key();
    bool has_value = false;
    for (const auto& m : t.result().metrics()) {
      if (m.name() != "value") continue;
      has_value = true;
      EXPECT_DOUBLE_EQ(m.value(), SyntheticValue(t.task_key()));
    }
    EXPECT_TRUE(has_value) << t.task_key();
  }
  EXPECT_EQ(keys.size(), static_cast<size_t>(n));
}

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_FAULT_EXACTLY_ONCE_H_
