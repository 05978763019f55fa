// CPU reference of kernels/head_norm_rope.h against the formula written out.
#include "kernels/head_norm_rope.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

using ::testing::HasSubstr;

// n elements of `dtype` (raw bytes), deterministic values around +-1.5.
std::vector<uint8_t> Filled(Dtype dtype, int64_t n, double phase) {
  std::vector<uint8_t> v(n * DtypeSize(dtype));
  for (int64_t i = 0; i < n; ++i) {
    StoreAs(dtype, v.data(), i, 1.5f * std::sin(0.37 * i + phase));
  }
  return v;
}

// One layer's q/k/v columns of x [tokens, x_stride] as HeadNormRope calls.
struct QkvCase {
  Dtype dtype;
  int64_t tokens = 5, seq = 3;
  int heads = 4, kv = 2, hd = 8;
  bool k_eq_v = false;  // v reads k's columns (no v columns in x)
  int64_t x_stride() const { return (heads + (k_eq_v ? 1 : 2) * kv) * hd + 8; }
  int64_t v_col() const { return (heads + (k_eq_v ? 0 : kv)) * hd; }
};

struct QkvData {
  std::vector<uint8_t> x, qw, kw, cos, sin;
};

QkvData MakeData(const QkvCase& c) {
  return {Filled(c.dtype, c.tokens * c.x_stride(), 0.1),
          Filled(c.dtype, c.hd, 0.7), Filled(c.dtype, c.hd, 1.3),
          Filled(c.dtype, c.seq * c.hd, 2.1),
          Filled(c.dtype, c.seq * c.hd, 2.9)};
}

// A single-segment call's contiguous output [tokens, heads, hd].
std::vector<uint8_t> Single(const QkvCase& c, const QkvData& d, int64_t col,
                            int heads, const std::vector<uint8_t>* w,
                            bool rope) {
  const int64_t esize = DtypeSize(c.dtype);
  std::vector<uint8_t> out(c.tokens * heads * c.hd * esize);
  HeadNormRopeArgs a;
  a.dtype = c.dtype;
  a.x = d.x.data() + col * esize;
  a.x_stride = c.x_stride();
  a.tokens = c.tokens;
  a.seq = c.seq;
  a.heads = heads;
  a.head_dim = c.hd;
  a.weight = w != nullptr ? w->data() : nullptr;
  if (rope) {
    a.cos = d.cos.data();
    a.sin = d.sin.data();
  }
  a.out = out.data();
  EXPECT_TRUE(HeadNormRopeCpu(a).ok());
  return out;
}

HeadNormRopeMultiArgs MultiArgs(const QkvCase& c, const QkvData& d) {
  HeadNormRopeMultiArgs m;
  m.dtype = c.dtype;
  m.x = d.x.data();
  m.x_stride = c.x_stride();
  m.tokens = c.tokens;
  m.seq = c.seq;
  m.head_dim = c.hd;
  m.cos = d.cos.data();
  m.sin = d.sin.data();
  return m;
}

// Calls f(case, data) for both dtypes, with and without K = V.
template <typename F>
void ForEachQkvCase(F&& f) {
  for (Dtype dtype : {Dtype::kFloat32, Dtype::kBFloat16}) {
    for (bool k_eq_v : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dtype " << static_cast<int>(dtype)
                                        << " k_eq_v " << k_eq_v);
      QkvCase c{dtype};
      c.k_eq_v = k_eq_v;
      f(c, MakeData(c));
    }
  }
}

// q (q_norm, RoPE), k (k_norm, RoPE) and v (no weight, no RoPE) in one call,
// contiguous outputs, equal bit for bit to three single-segment calls.
TEST(HeadNormRopeMultiCpuTest, QkvInOneCallEqualsThreeSingleCalls) {
  ForEachQkvCase([](const QkvCase& c, const QkvData& d) {
    const int64_t q_col = 0, k_col = c.heads * c.hd;
    const auto q = Single(c, d, q_col, c.heads, &d.qw, true);
    const auto k = Single(c, d, k_col, c.kv, &d.kw, true);
    const auto v = Single(c, d, c.v_col(), c.kv, nullptr, false);
    std::vector<uint8_t> mq(q.size(), 0xee), mk(k.size(), 0xee),
        mv(v.size(), 0xee);
    HeadNormRopeMultiArgs m = MultiArgs(c, d);
    m.segments = 3;
    m.seg[0] = {q_col, c.heads, d.qw.data(), true, mq.data()};
    m.seg[1] = {k_col, c.kv, d.kw.data(), true, mk.data()};
    m.seg[2] = {c.v_col(), c.kv, nullptr, false, mv.data()};
    ASSERT_TRUE(HeadNormRopeMultiCpu(m).ok());
    EXPECT_EQ(mq, q);
    EXPECT_EQ(mk, k);
    EXPECT_EQ(mv, v);
  });
}

// k and v scattered into KV pools [kv, pool_rows, hd] at per-token rows (the
// decode write): each token's heads land at its row, every other pool row is
// untouched. K = V layers: both segments read k's columns.
TEST(HeadNormRopeMultiCpuTest, ScattersIntoPoolRows) {
  ForEachQkvCase([](const QkvCase& c, const QkvData& d) {
    const int64_t esize = DtypeSize(c.dtype), pool_rows = 11;
    const int64_t k_col = c.heads * c.hd;
    const std::vector<int64_t> rows = {7, 0, 10, 3, 4};
    ASSERT_EQ(static_cast<int64_t>(rows.size()), c.tokens);
    const auto k = Single(c, d, k_col, c.kv, &d.kw, true);
    const auto v = Single(c, d, c.v_col(), c.kv, nullptr, false);
    const size_t pool_bytes = c.kv * pool_rows * c.hd * esize;
    std::vector<uint8_t> kp(pool_bytes, 0xee), vp(pool_bytes, 0xee);
    HeadNormRopeMultiArgs m = MultiArgs(c, d);
    m.segments = 2;
    m.seg[0] = {k_col, c.kv,       d.kw.data(),
                true,  kp.data(),  pool_rows * c.hd,
                c.hd,  rows.data()};
    m.seg[1] = {c.v_col(),        c.kv, nullptr,    false, vp.data(),
                pool_rows * c.hd, c.hd, rows.data()};
    ASSERT_TRUE(HeadNormRopeMultiCpu(m).ok());
    // The pools as the engine's index_copy_ writes them.
    std::vector<uint8_t> want_k(pool_bytes, 0xee), want_v(pool_bytes, 0xee);
    const int64_t row_bytes = c.hd * esize;
    for (int64_t t = 0; t < c.tokens; ++t) {
      for (int h = 0; h < c.kv; ++h) {
        const int64_t src = (t * c.kv + h) * row_bytes;
        const int64_t dst = (h * pool_rows + rows[t]) * row_bytes;
        std::memcpy(&want_k[dst], &k[src], row_bytes);
        std::memcpy(&want_v[dst], &v[src], row_bytes);
      }
    }
    EXPECT_EQ(kp, want_k);
    EXPECT_EQ(vp, want_v);
  });
}

TEST(HeadNormRopeMultiCpuTest, RejectsBadSegmentsNamingTheField) {
  QkvCase c{Dtype::kFloat32};
  const QkvData d = MakeData(c);
  std::vector<uint8_t> out(c.tokens * c.heads * c.hd * 4);
  HeadNormRopeMultiArgs m = MultiArgs(c, d);
  m.segments = 0;
  EXPECT_EQ(HeadNormRopeMultiCpu(m).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(HeadNormRopeMultiCpu(m).message(), HasSubstr("segments 0"));
  m.segments = 4;
  EXPECT_THAT(HeadNormRopeMultiCpu(m).message(), HasSubstr("segments 4"));
  m.segments = 2;
  m.seg[0] = {0, c.heads, nullptr, true, out.data()};
  m.seg[1] = {0, c.heads, nullptr, false, nullptr};
  EXPECT_THAT(HeadNormRopeMultiCpu(m).message(),
              HasSubstr("seg[1].out must be set"));
  m.seg[1].out = out.data();
  m.seg[1].heads = 0;
  EXPECT_THAT(HeadNormRopeMultiCpu(m).message(), HasSubstr("heads 0"));
  m.seg[1].heads = 1;
  m.seg[1].col = -8;
  EXPECT_THAT(HeadNormRopeMultiCpu(m).message(), HasSubstr("seg[1].col -8"));
  m.seg[1].col = 0;
  m.seg[1].row_stride = -1;
  EXPECT_THAT(HeadNormRopeMultiCpu(m).message(), HasSubstr("row_stride -1"));
  m.seg[1].row_stride = 0;
  m.cos = m.sin = nullptr;
  EXPECT_THAT(HeadNormRopeMultiCpu(m).message(),
              HasSubstr("seg[0].rope needs the call's cos and sin"));
  m.seg[0].rope = false;
  EXPECT_TRUE(HeadNormRopeMultiCpu(m).ok());
  m.head_dim = 3;
  EXPECT_THAT(HeadNormRopeMultiCpu(m).message(), HasSubstr("head_dim 3"));
}

TEST(HeadNormRopeCpuTest, Fp32NormThenRotateHalfAtPositionTModSeq) {
  const int tokens = 3, heads = 2, hd = 4, seq = 2, stride = heads * hd + 3;
  std::vector<float> x(tokens * stride), w = {1, 2, 0.5f, 1};
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.7 * i + 0.1);
  std::vector<float> cs(seq * hd), sn(seq * hd);
  for (int i = 0; i < seq * hd; ++i) {
    cs[i] = std::cos(0.3 * i);
    sn[i] = std::sin(0.3 * i);
  }
  std::vector<float> out(tokens * heads * hd);
  HeadNormRopeArgs a;
  a.dtype = Dtype::kFloat32;
  a.x = x.data();
  a.x_stride = stride;
  a.tokens = tokens;
  a.seq = seq;
  a.heads = heads;
  a.head_dim = hd;
  a.weight = w.data();
  a.cos = cs.data();
  a.sin = sn.data();
  a.out = out.data();
  ASSERT_TRUE(HeadNormRopeCpu(a).ok());
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const float* xr = &x[t * stride + h * hd];
      double ss = 0;
      for (int i = 0; i < hd; ++i) ss += xr[i] * xr[i];
      const double rstd = 1 / std::sqrt(ss / hd + 1e-6);
      double n[4];
      for (int i = 0; i < hd; ++i) n[i] = xr[i] * rstd * w[i];
      const int pos = t % seq;
      for (int i = 0; i < hd; ++i) {
        const double rot = i < 2 ? -n[i + 2] : n[i - 2];
        const double want = n[i] * cs[pos * hd + i] + rot * sn[pos * hd + i];
        EXPECT_NEAR(out[(t * heads + h) * hd + i], want, 1e-6)
            << t << " " << h << " " << i;
      }
    }
  }
}

TEST(HeadNormRopeCpuTest, WithoutRopeIsTheNormOnly) {
  std::vector<float> x = {3, 4}, out(2);
  HeadNormRopeArgs a;
  a.dtype = Dtype::kFloat32;
  a.x = x.data();
  a.x_stride = 2;
  a.tokens = 1;
  a.heads = 1;
  a.head_dim = 2;
  a.eps = 0;
  a.out = out.data();
  ASSERT_TRUE(HeadNormRopeCpu(a).ok());
  const double rms = std::sqrt(12.5);
  EXPECT_NEAR(out[0], 3 / rms, 1e-6);
  EXPECT_NEAR(out[1], 4 / rms, 1e-6);
}

TEST(HeadNormRopeCpuTest, RejectsOddHeadDimAndHalfRope) {
  std::vector<float> x(3), out(3);
  HeadNormRopeArgs a;
  a.dtype = Dtype::kFloat32;
  a.x = x.data();
  a.out = out.data();
  a.tokens = 1;
  a.heads = 1;
  a.head_dim = 3;
  a.x_stride = 3;
  EXPECT_THAT(HeadNormRopeCpu(a).message(), HasSubstr("head_dim 3"));
  a.head_dim = 2;
  a.cos = x.data();
  EXPECT_THAT(HeadNormRopeCpu(a).message(), HasSubstr("cos and sin"));
}

}  // namespace
}  // namespace sweepd::kernels
