// The heal's ridge solve and the Gram reduction (worker/calib) against the
// numpy reference of tests/calib/heal_fixture.json (made once by
// tests/calib/make_heal_fixture.py: augmented lstsq, never the normal
// equations). Tolerances: the normal equations square the condition number
// of X_k (here ≤ ~1e3), so float64 gives ~1e-10 relative; we allow 1e-8 on
// the weights and 1e-7 on the residuals.
#include "worker/calib/ridge.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/artifact_store.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/calib/gram_file.h"

namespace sweepd::calib {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

std::string SourceDir() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return d != nullptr ? d : ".";
}

json Fixture() {
  std::ifstream in(SourceDir() + "/tests/calib/heal_fixture.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

// The Gram of rows x [n, D] (and targets y [n, e]), summed row by row.
Gram MakeGram(const std::vector<double>& x, int64_t D,
              const std::vector<double>* y, int64_t e) {
  Gram g;
  g.d = D;
  g.e = y != nullptr ? e : 0;
  g.xtx.assign(D * D, 0.0);
  g.xty.assign(D * g.e, 0.0);
  const int64_t n = static_cast<int64_t>(x.size()) / D;
  g.count = n;
  for (int64_t t = 0; t < n; ++t) {
    const double* r = x.data() + t * D;
    for (int64_t i = 0; i < D; ++i) {
      for (int64_t j = 0; j < D; ++j) g.xtx[i * D + j] += r[i] * r[j];
    }
    if (y == nullptr) continue;
    const double* yr = y->data() + t * e;
    for (int64_t i = 0; i < D; ++i) {
      for (int64_t j = 0; j < e; ++j) g.xty[i * e + j] += r[i] * yr[j];
    }
    for (int64_t j = 0; j < e; ++j) g.yy += yr[j] * yr[j];
  }
  return g;
}

double MaxRel(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    num = std::max(num, std::abs(a[i] - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return den == 0 ? num : num / den;
}

class RidgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/ridge_test_" + std::to_string(getpid());
    ASSERT_TRUE(RemoveAll(root_).ok());
    auto store = ArtifactStore::Open(root_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  std::string root_;
  std::unique_ptr<ArtifactStore> store_;
};

// Stores each shard's Gram, reads them back and sums them in order.
Gram SumThroughStore(ArtifactStore* store, const std::vector<Gram>& shards,
                     const std::vector<int>& order,
                     std::vector<ArtifactInfo>* infos = nullptr) {
  Gram total;
  bool first = true;
  for (int i : order) {
    Gram g = shards[i];
    g.metadata = {{"point", "attn_heads[0]"},
                  {"shard", std::to_string(i)},
                  {"dataset", "fixture"},
                  {"dtype", "float64"}};
    auto info = PutGram(
        store, "gram/attn_heads[0]/fixture/shard" + std::to_string(i), g);
    EXPECT_TRUE(info.ok()) << info.status();
    if (infos != nullptr) infos->push_back(*info);
    auto path = store->Resolve(info->path, info->sha256);
    EXPECT_TRUE(path.ok()) << path.status();
    auto read = ReadGramFile(*path);
    EXPECT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->metadata.at("tokens"), std::to_string(g.count));
    if (first) {
      total = std::move(*read);
      first = false;
    } else {
      EXPECT_TRUE(AddGram(*read, &total).ok());
    }
  }
  return total;
}

TEST_F(RidgeTest, MatchesNumpyLstsqReference) {
  const json fx = Fixture();
  ASSERT_EQ(fx["problems"].size(), 3u);
  for (const json& p : fx["problems"]) {
    SCOPED_TRACE(p["name"].get<std::string>());
    const int heads = p["heads"];
    const int64_t hd = p["head_dim"], hidden = p["hidden"];
    const int64_t D = heads * hd;
    const bool target = p["target"];
    const std::vector<double> w = p["w"];
    std::vector<Gram> shards;
    for (size_t s = 0; s < p["shards"].size(); ++s) {
      const std::vector<double> x = p["shards"][s];
      std::vector<double> y;
      if (target) y = p["shard_y"][s].get<std::vector<double>>();
      shards.push_back(MakeGram(x, D, target ? &y : nullptr, hidden));
    }
    std::vector<int> order(shards.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    Gram g = SumThroughStore(store_.get(), shards, order);
    const std::vector<int> removed = p["removed"];
    RidgeOptions opts;
    opts.ridge_rel = p["ridge_rel"];
    auto sol = SolveRidge(g, w, hidden, KeptColumns(heads, hd, removed), opts);
    ASSERT_TRUE(sol.ok()) << sol.status();
    EXPECT_EQ(sol->solver, p["solver"].get<std::string>());
    EXPECT_NEAR(sol->lambda, p["lambda"].get<double>(),
                1e-12 * std::max(1.0, p["lambda"].get<double>()));
    const std::vector<double> want = p["weight"];
    EXPECT_LE(MaxRel(sol->weight, want), 1e-8);
    // Removed heads' columns are exactly zero.
    for (int h : removed) {
      for (int64_t o = 0; o < hidden; ++o) {
        for (int64_t c = h * hd; c < (h + 1) * hd; ++c) {
          ASSERT_EQ(sol->weight[o * D + c], 0.0);
        }
      }
    }
    auto rc = RelativeResidual(g, w, hidden, sol->weight);
    ASSERT_TRUE(rc.ok()) << rc.status();
    EXPECT_NEAR(*rc, p["residual_calibration"].get<double>(),
                1e-7 * p["residual_calibration"].get<double>());
    const std::vector<double> xh = p["heldout"];
    std::vector<double> yh;
    if (target) yh = p["heldout_y"].get<std::vector<double>>();
    Gram held = MakeGram(xh, D, target ? &yh : nullptr, hidden);
    auto rh = RelativeResidual(held, w, hidden, sol->weight);
    ASSERT_TRUE(rh.ok()) << rh.status();
    EXPECT_NEAR(*rh, p["residual_heldout"].get<double>(),
                1e-7 * p["residual_heldout"].get<double>());
    // The eigensolver path gives the same solution where Cholesky works.
    opts.force_eigh = true;
    auto eig = SolveRidge(g, w, hidden, KeptColumns(heads, hd, removed), opts);
    ASSERT_TRUE(eig.ok()) << eig.status();
    EXPECT_EQ(eig->solver, "eigh");
    EXPECT_LE(MaxRel(eig->weight, want), 1e-7);
  }
}

TEST_F(RidgeTest, GramReductionIsInvariantToShardOrderAndProducer) {
  const json p = Fixture()["problems"][0];
  const int64_t D = 16, hidden = p["hidden"];
  const std::vector<double> w = p["w"];
  std::vector<Gram> shards;
  for (const json& s : p["shards"]) {
    shards.push_back(MakeGram(s.get<std::vector<double>>(), D, nullptr, 0));
  }
  const std::vector<int> kept = {};
  (void)kept;
  std::vector<ArtifactInfo> a_infos, b_infos;
  Gram a = SumThroughStore(store_.get(), shards, {0, 1, 2}, &a_infos);
  // Same order again: the same objects (content addresses) and the same bytes.
  Gram a2 = SumThroughStore(store_.get(), shards, {0, 1, 2}, &b_infos);
  for (size_t i = 0; i < a_infos.size(); ++i) {
    EXPECT_EQ(a_infos[i].sha256, b_infos[i].sha256);
  }
  EXPECT_EQ(a.xtx, a2.xtx);
  EXPECT_EQ(a.count, a2.count);
  // Another order: equal within float64 rounding.
  Gram b = SumThroughStore(store_.get(), shards, {2, 0, 1});
  EXPECT_LE(MaxRel(b.xtx, a.xtx), 1e-14);
  EXPECT_EQ(b.count, a.count);
  // The shard split does not matter either: one Gram of all rows.
  std::vector<double> all;
  for (const json& s : p["shards"]) {
    const std::vector<double> x = s;
    all.insert(all.end(), x.begin(), x.end());
  }
  Gram whole = MakeGram(all, D, nullptr, 0);
  EXPECT_LE(MaxRel(whole.xtx, a.xtx), 1e-13);
  RidgeOptions opts;
  opts.ridge_rel = 0.01;
  auto kept_cols = KeptColumns(4, 4, {1});
  auto sa = SolveRidge(a, w, hidden, kept_cols, opts);
  auto sa2 = SolveRidge(a2, w, hidden, kept_cols, opts);
  auto sb = SolveRidge(b, w, hidden, kept_cols, opts);
  ASSERT_TRUE(sa.ok() && sa2.ok() && sb.ok());
  // The solve depends only on the summed bytes: identical for the same order.
  EXPECT_EQ(sa->weight, sa2->weight);
  EXPECT_LE(MaxRel(sb->weight, sa->weight), 1e-10);
}

// The device option: "cpu" is the host; a device libtorch cannot use (no CUDA
// in this build, or out of memory on a GPU) falls back to the host with the
// same answer; a malformed one is refused.
TEST_F(RidgeTest, DeviceOptionFallsBackToTheHost) {
  const json p = Fixture()["problems"][0];
  const int64_t D = 16, hidden = p["hidden"];
  const std::vector<double> w = p["w"];
  std::vector<double> all;
  for (const json& sh : p["shards"]) {
    const std::vector<double> x = sh;
    all.insert(all.end(), x.begin(), x.end());
  }
  Gram g = MakeGram(all, D, nullptr, 0);
  const auto kept = KeptColumns(4, 4, {1});
  RidgeOptions opts;
  auto host = SolveRidge(g, w, hidden, kept, opts);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->device, "cpu");
  opts.device = "cpu";
  auto cpu = SolveRidge(g, w, hidden, kept, opts);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->weight, host->weight);
  opts.device = "cuda:0";
  auto cuda = SolveRidge(g, w, hidden, kept, opts);
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  EXPECT_LE(MaxRel(cuda->weight, host->weight), 1e-10);
  auto rel = RelativeResidual(g, w, hidden, cuda->weight, "cuda:0");
  ASSERT_TRUE(rel.ok()) << rel.status();
  EXPECT_NEAR(*rel, *RelativeResidual(g, w, hidden, host->weight), 1e-10);
  opts.device = "gpu zero";
  EXPECT_EQ(SolveRidge(g, w, hidden, kept, opts).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RidgeTest, ErrorsNameTheProblem) {
  Gram g;
  g.d = 4;
  g.xtx.assign(16, 0.0);
  std::vector<double> w(3 * 4, 1.0);
  EXPECT_THAT(SolveRidge(g, w, 3, {}, RidgeOptions()).status().message(),
              HasSubstr("every head is removed"));
  EXPECT_THAT(SolveRidge(g, w, 2, {0}, RidgeOptions()).status().message(),
              HasSubstr("o_proj weight"));
  EXPECT_THAT(SolveRidge(g, w, 3, {7}, RidgeOptions()).status().message(),
              HasSubstr("kept column 7"));
  Gram other;
  other.d = 3;
  other.xtx.assign(9, 0.0);
  EXPECT_THAT(AddGram(other, &g).message(), HasSubstr("different shapes"));
  EXPECT_EQ(ReadGramFile(root_ + "/missing.safetensors").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sweepd::calib
