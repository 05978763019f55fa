// Per-row head masks (ForwardRequest::row_head_masks) and starting a batch of
// repeated rows from one prefix state: row r of one batched forward equals a
// separate forward of its window with that row's head masked (TP 1 and 2).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>

#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/engine.h"
#include "worker/engine/model_generator.h"

namespace sweepd::engine {
namespace {

using ::testing::HasSubstr;

std::string TinyConfigPath() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return std::string(d != nullptr ? d : ".") +
         "/configs/models/gemma4-tiny.json";
}

double RelDiff(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den == 0 ? num : num / den;
}

ForwardRequest Windows(int64_t batch, int64_t seq) {
  std::mt19937 rng(17);
  ForwardRequest r;
  r.batch = batch;
  r.seq = seq;
  r.tokens.resize(batch * seq);
  for (auto& t : r.tokens) t = static_cast<int32_t>(rng() % 512);
  return r;
}

class RowHeadMasksTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/row_head_masks_" +
                           std::to_string(getpid()));
    ASSERT_TRUE(RemoveAll(*dir_).ok());
    ASSERT_TRUE(MakeDirs(*dir_).ok());
    ASSERT_TRUE(MakeRandomModel(TinyConfigPath(), /*seed=*/23, *dir_).ok());
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::unique_ptr<Engine> Make(int tp) {
    EngineOptions o;
    o.model_dir = *dir_;
    o.tp_size = tp;
    o.cpu_threads_per_rank = 1;
    auto e = Engine::Create(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  static std::string* dir_;
};
std::string* RowHeadMasksTest::dir_ = nullptr;

TEST_F(RowHeadMasksTest, EachRowEqualsItsSingleHeadForward) {
  constexpr int64_t kWindows = 2, kSeq = 12, kHeads = 4;
  for (int tp : {1, 2}) {
    SCOPED_TRACE(tp);
    auto e = Make(tp);
    ASSERT_NE(e, nullptr);
    ForwardRequest base = Windows(kWindows, kSeq);
    base.keep_prefix_state = true;
    auto b = e->Forward(base);
    ASSERT_TRUE(b.ok()) << b.status();
    for (int L : {0, 2, 5}) {  // sliding, full (K = V) and the last layer
      SCOPED_TRACE(L);
      // Row j * kWindows + i: window i with head j of layer L masked.
      ForwardRequest batched;
      batched.batch = kHeads * kWindows;
      batched.seq = kSeq;
      for (int j = 0; j < kHeads; ++j) {
        batched.tokens.insert(batched.tokens.end(), base.tokens.begin(),
                              base.tokens.end());
        for (int i = 0; i < kWindows; ++i) {
          batched.row_head_masks.push_back(RowHeadMask{L, {j}});
        }
      }
      ForwardRequest full_batched = batched;
      batched.start_from = b->prefix_state;
      batched.start_layer = L;
      auto r = e->Forward(batched);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->layer_forwards, 6 - L);
      auto rf = e->Forward(full_batched);
      ASSERT_TRUE(rf.ok()) << rf.status();
      EXPECT_EQ(rf->layer_forwards, 6);
      for (int j = 0; j < kHeads; ++j) {
        ForwardRequest single = Windows(kWindows, kSeq);
        single.interventions = {Intervention::MaskHeads(L, {j})};
        auto s = e->Forward(single);
        ASSERT_TRUE(s.ok()) << s.status();
        const size_t n = kWindows * kSeq;
        EXPECT_LE(RelDiff(r->nll.data() + j * n, s->nll.data(), n), 1e-5)
            << "head " << j;
        EXPECT_LE(RelDiff(rf->nll.data() + j * n, s->nll.data(), n), 1e-5)
            << "head " << j;
        // The mask changes the numbers (the test is not vacuous).
        EXPECT_GT(RelDiff(s->nll.data(), b->nll.data(), n), 1e-7);
      }
    }
  }
}

TEST_F(RowHeadMasksTest, RowsWithoutHeadsAreTheBaseline) {
  auto e = Make(2);
  ForwardRequest base = Windows(1, 10);
  auto b = e->Forward(base);
  ASSERT_TRUE(b.ok());
  ForwardRequest two;
  two.batch = 2;
  two.seq = 10;
  two.tokens = base.tokens;
  two.tokens.insert(two.tokens.end(), base.tokens.begin(), base.tokens.end());
  two.row_head_masks = {RowHeadMask{3, {}}, RowHeadMask{3, {0, 3}}};
  auto r = e->Forward(two);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(RelDiff(r->nll.data(), b->nll.data(), 10), 1e-5);
  ForwardRequest masked = base;
  masked.interventions = {Intervention::MaskHeads(3, {0, 3})};
  auto m = e->Forward(masked);
  ASSERT_TRUE(m.ok());
  EXPECT_LE(RelDiff(r->nll.data() + 10, m->nll.data(), 10), 1e-5);
}

TEST_F(RowHeadMasksTest, ErrorsNameTheProblem) {
  auto e = Make(1);
  ForwardRequest base = Windows(2, 8);
  base.keep_prefix_state = true;
  auto b = e->Forward(base);
  ASSERT_TRUE(b.ok());
  ForwardRequest r = base;
  r.keep_prefix_state = false;
  r.row_head_masks = {RowHeadMask{1, {0}}};
  EXPECT_THAT(e->Forward(r).status().message(),
              HasSubstr("row_head_masks has 1 entries, batch = 2"));
  r.row_head_masks = {RowHeadMask{1, {0}}, RowHeadMask{1, {4}}};
  EXPECT_THAT(e->Forward(r).status().message(),
              HasSubstr("row_head_masks[1].heads: head 4"));
  r.row_head_masks = {RowHeadMask{6, {0}}, RowHeadMask{1, {1}}};
  EXPECT_THAT(e->Forward(r).status().message(),
              HasSubstr("row_head_masks[0].layer 6"));
  // A row mask at layer 1 is a touched layer: no start past it.
  r.row_head_masks = {RowHeadMask{1, {0}}, RowHeadMask{2, {1}}};
  r.start_from = b->prefix_state;
  r.start_layer = 2;
  EXPECT_THAT(e->Forward(r).status().message(),
              HasSubstr("first intervention at layer 1"));
  // Rows that are not the state's rows repeated.
  ForwardRequest odd = Windows(3, 8);
  odd.start_from = b->prefix_state;
  odd.start_layer = 1;
  EXPECT_THAT(e->Forward(odd).status().message(),
              HasSubstr("not the state's rows repeated"));
}

}  // namespace
}  // namespace sweepd::engine
