// Gram accumulation on the device (ForwardRequest::grams) and the attn_out
// capture point, at TP 1, 2 and 4, against float64 sums of the captured
// activations of the same forwards.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/engine.h"
#include "worker/engine/model_generator.h"

namespace sweepd::engine {
namespace {

using ::testing::HasSubstr;

std::string SourceDir() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return d != nullptr ? d : ".";
}

ForwardRequest MakeRequest(int64_t batch, int64_t seq, uint32_t seed) {
  std::mt19937 rng(seed);
  ForwardRequest r;
  r.batch = batch;
  r.seq = seq;
  r.tokens.resize(batch * seq);
  for (auto& t : r.tokens) t = static_cast<int32_t>(rng() % 512);
  return r;
}

std::unique_ptr<Engine> MakeEngine(const std::string& dir, int tp,
                                   DType dtype = DType::kFloat32) {
  EngineOptions o;
  o.model_dir = dir;
  o.tp_size = tp;
  o.dtype = dtype;
  o.cpu_threads_per_rank = 1;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

// Float64 reference sums of one Gram from captured activations.
struct RefGram {
  std::vector<double> xtx, xty;
  double yy = 0;
  int64_t count = 0;
};

void AddRef(const HostTensor& x, const HostTensor* y,
            const std::vector<uint8_t>& rows, RefGram* g) {
  const int64_t T = static_cast<int64_t>(rows.size());
  const int64_t d = x.numel() / T;
  const int64_t e = y != nullptr ? y->numel() / T : 0;
  g->xtx.resize(d * d, 0.0);
  g->xty.resize(d * e, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    if (!rows[t]) continue;
    ++g->count;
    const float* xr = x.data.data() + t * d;
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t j = 0; j < d; ++j) {
        g->xtx[i * d + j] += static_cast<double>(xr[i]) * xr[j];
      }
    }
    if (y == nullptr) continue;
    const float* yr = y->data.data() + t * e;
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t j = 0; j < e; ++j) {
        g->xty[i * e + j] += static_cast<double>(xr[i]) * yr[j];
      }
    }
    for (int64_t j = 0; j < e; ++j) g->yy += static_cast<double>(yr[j]) * yr[j];
  }
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

class GramTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/gram_test_" +
                           std::to_string(getpid()));
    ASSERT_TRUE(RemoveAll(*dir_).ok());
    ASSERT_TRUE(MakeDirs(*dir_).ok());
    ASSERT_TRUE(
        MakeRandomModel(SourceDir() + "/configs/models/gemma4-tiny.json",
                        /*seed=*/11, *dir_)
            .ok());
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string* dir_;
};
std::string* GramTest::dir_ = nullptr;

struct GramCase {
  std::string point, target;
};

void CheckGramsAgainstCaptures(Engine* e, DType dtype) {
  // attn_heads of a full layer (head_dim 32) and of a sliding one, each with a
  // target; a replicated point without one.
  const std::vector<GramCase> cases = {{"attn_heads[2]", "attn_out[2]"},
                                       {"attn_heads[0]", "resid_out[0]"},
                                       {"resid_in[1]", ""},
                                       {"hidden_states[6]", "mlp_in[4]"}};
  std::vector<std::shared_ptr<GramAccumulator>> grams;
  std::vector<RefGram> refs(cases.size());
  for (const GramCase& c : cases) {
    auto g = e->NewGram(c.point, c.target);
    ASSERT_TRUE(g.ok()) << g.status();
    grams.push_back(*g);
  }
  for (uint32_t seed : {3u, 4u}) {
    ForwardRequest req = MakeRequest(2, 9, seed);
    // Selected rows: drop a few positions (a padding-like mask).
    req.gram_rows.assign(18, 1);
    req.gram_rows[0] = req.gram_rows[7] = req.gram_rows[16] = 0;
    req.grams = grams;
    for (const GramCase& c : cases) {
      req.captures.push_back(c.point);
      if (!c.target.empty()) req.captures.push_back(c.target);
    }
    auto r = e->Forward(req);
    ASSERT_TRUE(r.ok()) << r.status();
    for (size_t i = 0; i < cases.size(); ++i) {
      const HostTensor& x = r->captures[cases[i].point];
      const HostTensor* y =
          cases[i].target.empty() ? nullptr : &r->captures[cases[i].target];
      AddRef(x, y, req.gram_rows, &refs[i]);
    }
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].point);
    auto sums = e->ReadGram(*grams[i]);
    ASSERT_TRUE(sums.ok()) << sums.status();
    EXPECT_EQ(sums->count, 30);
    EXPECT_EQ(sums->count, refs[i].count);
    EXPECT_EQ(sums->point, cases[i].point);
    EXPECT_EQ(sums->d * sums->d, static_cast<int64_t>(refs[i].xtx.size()));
    // Captured activations are the device values (fp32, or bf16 widened), so
    // only the float64 summation order differs.
    EXPECT_LE(MaxRel(sums->xtx, refs[i].xtx), 1e-12);
    if (!cases[i].target.empty()) {
      EXPECT_EQ(sums->d * sums->e, static_cast<int64_t>(refs[i].xty.size()));
      EXPECT_LE(MaxRel(sums->xty, refs[i].xty), 1e-12);
      EXPECT_NEAR(sums->yy, refs[i].yy, 1e-12 * refs[i].yy);
    } else {
      EXPECT_TRUE(sums->xty.empty());
    }
  }
  (void)dtype;
}

TEST_F(GramTest, GramsEqualFloat64SumsOfCapturesAtEveryTp) {
  for (int tp : {1, 2, 4}) {
    SCOPED_TRACE(tp);
    auto e = MakeEngine(*dir_, tp);
    CheckGramsAgainstCaptures(e.get(), DType::kFloat32);
  }
}

TEST_F(GramTest, Bf16GramsAccumulateInFloat64) {
  auto e = MakeEngine(*dir_, 2, DType::kBFloat16);
  CheckGramsAgainstCaptures(e.get(), DType::kBFloat16);
}

// More selected rows than one float64 chunk (2048) in one forward, at TP 2
// with a target: the chunked sums equal the reference.
TEST_F(GramTest, ForwardsOfMoreRowsThanAChunk) {
  auto e = MakeEngine(*dir_, 2);
  auto g = e->NewGram("attn_heads[2]", "attn_out[2]");
  ASSERT_TRUE(g.ok()) << g.status();
  ForwardRequest req = MakeRequest(3, 700, 21);
  req.gram_rows.assign(3 * 700, 1);
  req.gram_rows[5] = 0;
  req.grams = {*g};
  req.captures = {"attn_heads[2]", "attn_out[2]"};
  auto r = e->Forward(req);
  ASSERT_TRUE(r.ok()) << r.status();
  RefGram ref;
  AddRef(r->captures["attn_heads[2]"], &r->captures["attn_out[2]"],
         req.gram_rows, &ref);
  auto sums = e->ReadGram(**g);
  ASSERT_TRUE(sums.ok()) << sums.status();
  EXPECT_EQ(sums->count, 2099);
  EXPECT_LE(MaxRel(sums->xtx, ref.xtx), 1e-12);
  EXPECT_LE(MaxRel(sums->xty, ref.xty), 1e-12);
  EXPECT_NEAR(sums->yy, ref.yy, 1e-12 * ref.yy);
}

TEST_F(GramTest, GramsAgreeAcrossTp) {
  std::vector<GramSums> sums;
  for (int tp : {1, 2, 4}) {
    auto e = MakeEngine(*dir_, tp);
    auto g = e->NewGram("attn_heads[5]", "");
    ASSERT_TRUE(g.ok());
    ForwardRequest req = MakeRequest(1, 12, 9);
    req.grams = {*g};
    ASSERT_TRUE(e->Forward(req).ok());
    auto s = e->ReadGram(**g);
    ASSERT_TRUE(s.ok()) << s.status();
    sums.push_back(std::move(*s));
  }
  // The forward itself differs across TP at fp32 rounding (1e-5 relative).
  EXPECT_LE(MaxRel(sums[1].xtx, sums[0].xtx), 1e-4);
  EXPECT_LE(MaxRel(sums[2].xtx, sums[0].xtx), 1e-4);
}

TEST_F(GramTest, AttnOutIsOProjOfTheHeads) {
  auto ckpt = Checkpoint::Open(*dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  for (int L : {0, 2}) {
    const std::string name =
        "model.layers." + std::to_string(L) + ".self_attn.o_proj.weight";
    auto w = (*ckpt)->Get(name);
    ASSERT_TRUE(w.ok()) << w.status();
    auto wf = TensorToFloat(**w);
    ASSERT_TRUE(wf.ok());
    const int64_t hidden = (*w)->shape[0], D = (*w)->shape[1];
    for (int tp : {1, 2, 4}) {
      SCOPED_TRACE(tp);
      auto e = MakeEngine(*dir_, tp);
      ForwardRequest req = MakeRequest(1, 7, 5);
      const std::string l = "[" + std::to_string(L) + "]";
      req.captures = {"attn_heads" + l, "attn_out" + l};
      auto r = e->Forward(req);
      ASSERT_TRUE(r.ok()) << r.status();
      const HostTensor& x = r->captures["attn_heads" + l];
      const HostTensor& a = r->captures["attn_out" + l];
      EXPECT_EQ(a.shape, (std::vector<int64_t>{1, 7, hidden}));
      std::vector<double> want, got;
      for (int64_t t = 0; t < 7; ++t) {
        for (int64_t o = 0; o < hidden; ++o) {
          double acc = 0;
          for (int64_t k = 0; k < D; ++k) {
            acc += static_cast<double>(x.data[t * D + k]) * (*wf)[o * D + k];
          }
          want.push_back(acc);
          got.push_back(a.data[t * hidden + o]);
        }
      }
      EXPECT_LE(MaxRel(got, want), 1e-5);
    }
  }
}

TEST_F(GramTest, GramRequestsAreValidated) {
  auto e = MakeEngine(*dir_, 2);
  auto other = MakeEngine(*dir_, 1);
  EXPECT_THAT(e->NewGram("attn_out[9]", "").status().message(),
              HasSubstr("layer outside"));
  EXPECT_THAT(e->NewGram("resid_in[1]", "bogus[1]").status().message(),
              HasSubstr("kind must be"));
  auto foreign = other->NewGram("resid_in[1]", "");
  ASSERT_TRUE(foreign.ok());
  ForwardRequest req = MakeRequest(1, 6, 2);
  req.grams = {*foreign};
  auto r = e->Forward(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("grams[0]"));
  EXPECT_EQ(e->ReadGram(**foreign).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto g = e->NewGram("attn_out[3]", "");
  ASSERT_TRUE(g.ok());
  req.grams = {*g, *g};
  EXPECT_THAT(e->Forward(req).status().message(), HasSubstr("listed twice"));
  req.grams = {*g};
  req.gram_rows = {1, 0};
  EXPECT_THAT(e->Forward(req).status().message(), HasSubstr("gram_rows"));
  req.gram_rows.clear();
  req.interventions = {Intervention::Skip(3)};
  EXPECT_THAT(e->Forward(req).status().message(), HasSubstr("skipped layer"));
  // Nothing was fed: zeros, count 0.
  auto s = e->ReadGram(**g);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->count, 0);
  EXPECT_EQ(s->xtx, std::vector<double>(64 * 64, 0.0));
}

TEST_F(GramTest, GramsWorkFromAPrefixState) {
  auto e = MakeEngine(*dir_, 2);
  ForwardRequest base = MakeRequest(1, 10, 8);
  base.keep_prefix_state = true;
  auto full = e->Forward(base);
  ASSERT_TRUE(full.ok());
  auto g_full = e->NewGram("attn_heads[4]", "attn_out[4]");
  auto g_pref = e->NewGram("attn_heads[4]", "attn_out[4]");
  ASSERT_TRUE(g_full.ok() && g_pref.ok());
  ForwardRequest a = MakeRequest(1, 10, 8);
  a.interventions = {Intervention::MaskHeads(4, {1})};
  a.grams = {*g_full};
  ASSERT_TRUE(e->Forward(a).ok());
  ForwardRequest b = a;
  b.grams = {*g_pref};
  b.start_from = full->prefix_state;
  b.start_layer = 4;
  ASSERT_TRUE(e->Forward(b).ok());
  auto sa = e->ReadGram(**g_full);
  auto sb = e->ReadGram(**g_pref);
  ASSERT_TRUE(sa.ok() && sb.ok());
  EXPECT_LE(MaxRel(sb->xtx, sa->xtx), 1e-6);
  EXPECT_LE(MaxRel(sb->xty, sa->xty), 1e-6);
  // The masked head's rows and columns are exactly zero.
  const int64_t d = sa->d, hd = 16;
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = hd; j < 2 * hd; ++j) {
      ASSERT_EQ(sa->xtx[i * d + j], 0.0);
      ASSERT_EQ(sa->xtx[j * d + i], 0.0);
    }
  }
  ForwardRequest c = a;
  c.grams = {*g_pref};
  c.start_from = full->prefix_state;
  c.start_layer = 4;
  c.grams = {*e->NewGram("resid_in[2]", "")};
  EXPECT_THAT(e->Forward(c).status().message(),
              HasSubstr("before start_layer"));
}

}  // namespace
}  // namespace sweepd::engine
