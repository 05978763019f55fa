// GPU tests of kernels/head_norm_rope.h (label gpu): the per-head q/k/v
// norm + RoPE kernels against host formulas and against their CPU
// references, single- and multi-segment (q/k/v in one launch, k/v scattered
// into KV pools), and their argument checks.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/head_norm_rope.h"
#include "tests/kernels/gpu_test_util.h"

namespace sweepd::kernels {
namespace {

using gpu_test::BeyondOneBf16Step;
using gpu_test::DevBf16;
using gpu_test::DevBytes;
using gpu_test::Mismatches;
using gpu_test::RandomBf16;
using gpu_test::RandomBytes;
using gpu_test::RelTol;
using gpu_test::RoundBf16;

// HeadNormRope's bf16 vector path: head_dim 256 (one vector per lane; two
// rows per warp with an even head count) and 512 (two), strided input rows,
// positions t % seq, with and without RoPE and weight.
TEST(HeadNormRopeGpuTest, HeadNormRopeBf16MatchesHostReference) {
  // (head_dim, heads): two rows per warp (256, even heads), one (odd heads),
  // two vectors per lane (512).
  for (auto [hd, heads] :
       {std::pair<int, int64_t>{256, 4}, {256, 3}, {512, 3}}) {
    for (bool rope : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << hd << " heads "
                                        << heads << " rope " << rope);
      const int64_t tokens = 6, seq = 4, stride = heads * hd + 64;
      std::vector<float> x, w, cs, sn;
      DevBf16 dx(RandomBf16(tokens * stride, 1.5f, 11, &x));
      DevBf16 dw(RandomBf16(hd, 1.0f, 12, &w));
      DevBf16 dcos(RandomBf16(seq * hd, 1.0f, 13, &cs));
      DevBf16 dsin(RandomBf16(seq * hd, 1.0f, 14, &sn));
      DevBf16 out(tokens * heads * hd);
      HeadNormRopeArgs a;
      a.x = dx.p;
      a.x_stride = stride;
      a.tokens = tokens;
      a.seq = seq;
      a.heads = static_cast<int>(heads);
      a.head_dim = hd;
      a.weight = rope ? dw.p : nullptr;  // v_norm has no weight and no RoPE
      if (rope) {
        a.cos = dcos.p;
        a.sin = dsin.p;
      }
      a.out = out.p;
      ASSERT_EQ(HeadNormRopeCuda(a, nullptr), 0);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> got = out.Read();
      std::vector<float> want(got.size());
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t h = 0; h < heads; ++h) {
          const float* xr = &x[t * stride + h * hd];
          double ss = 0;
          for (int i = 0; i < hd; ++i) ss += double(xr[i]) * xr[i];
          const double rstd = 1.0 / std::sqrt(ss / hd + 1e-6);
          std::vector<float> n(hd);
          for (int i = 0; i < hd; ++i) {
            n[i] = RoundBf16(xr[i] * rstd * (rope ? w[i] : 1.0f));
          }
          float* o = &want[(t * heads + h) * hd];
          const int64_t pos = t % seq;
          for (int i = 0; i < hd; ++i) {
            if (!rope) {
              o[i] = n[i];
              continue;
            }
            const int half = hd / 2;
            const float rot = i < half ? -n[i + half] : n[i - half];
            o[i] = RoundBf16(RoundBf16(double(n[i]) * cs[pos * hd + i]) +
                             RoundBf16(double(rot) * sn[pos * hd + i]));
          }
        }
      }
      EXPECT_EQ(BeyondOneBf16Step(got, want), 0);
    }
  }
}

TEST(HeadNormRopeGpuTest, HeadNormRopeMatchesCpuReference) {
  for (Dtype dtype : {Dtype::kFloat32, Dtype::kBFloat16}) {
    for (int hd : {256, 512, 40}) {
      SCOPED_TRACE(::testing::Message()
                   << static_cast<int>(dtype) << " " << hd);
      const int64_t tokens = 6, seq = 3, heads = 2, stride = heads * hd + 8;
      const auto x = RandomBytes(dtype, tokens * stride, 1.5f, 5);
      const auto w = RandomBytes(dtype, hd, 1.0f, 6);
      const auto cs = RandomBytes(dtype, seq * hd, 1.0f, 7);
      const auto sn = RandomBytes(dtype, seq * hd, 1.0f, 8);
      std::vector<uint8_t> out(tokens * heads * hd * DtypeSize(dtype));
      DevBytes dx(x), dw(w), dc(cs), ds(sn), dout(out);
      HeadNormRopeArgs a;
      a.dtype = dtype;
      a.x_stride = stride;
      a.tokens = tokens;
      a.seq = seq;
      a.heads = heads;
      a.head_dim = hd;
      a.x = dx.p;
      a.weight = dw.p;
      a.cos = dc.p;
      a.sin = ds.p;
      a.out = dout.p;
      ASSERT_EQ(HeadNormRopeCuda(a, nullptr), 0);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      a.x = x.data();
      a.weight = w.data();
      a.cos = cs.data();
      a.sin = sn.data();
      a.out = out.data();
      ASSERT_TRUE(HeadNormRopeCpu(a).ok());
      EXPECT_EQ(Mismatches(dtype, dout.Read(), out, 2 * RelTol(dtype), 1e-5),
                0);
    }
  }
}

// HeadNormRopeMultiCuda: a layer's q/k/v in one launch — contiguous outputs,
// or k/v scattered into KV pools [kv, pool_rows, hd] at device rows (the
// decode write; other pool rows untouched) — against HeadNormRopeMultiCpu and
// against single-segment launches. The cases reach every launch path: bf16
// vectors with two rows per warp (even head counts) and one (an odd count in
// any segment), two vectors per lane (512), the element-wise kernel (fp32;
// head_dim 40); K = V layers read k's columns twice.
TEST(HeadNormRopeGpuTest, HeadNormRopeMultiMatchesCpuAndSingleLaunches) {
  struct Case {
    int hd, heads, kv;
    bool k_eq_v, pool;
  };
  const Case cases[] = {{256, 8, 4, false, false}, {256, 8, 4, false, true},
                        {256, 8, 3, true, true},   {512, 4, 1, false, true},
                        {40, 4, 2, true, false},   {40, 3, 1, false, true}};
  for (Dtype dtype : {Dtype::kFloat32, Dtype::kBFloat16}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(::testing::Message()
                   << "dtype " << static_cast<int>(dtype) << " hd " << c.hd
                   << " heads " << c.heads << " kv " << c.kv << " k_eq_v "
                   << c.k_eq_v << " pool " << c.pool);
      const int64_t tokens = 6, seq = 4, pool_rows = 16, hd = c.hd;
      const int64_t esize = DtypeSize(dtype);
      const int64_t width = (c.heads + (c.k_eq_v ? 1 : 2) * c.kv) * hd;
      const int64_t stride = width + 8;
      const int64_t k_col = c.heads * hd;
      const int64_t v_col = c.k_eq_v ? k_col : k_col + c.kv * hd;
      const std::vector<int64_t> rows = {9, 2, 15, 0, 7, 4};
      std::vector<uint8_t> rows_bytes(rows.size() * sizeof(int64_t));
      std::memcpy(rows_bytes.data(), rows.data(), rows_bytes.size());
      const auto x = RandomBytes(dtype, tokens * stride, 1.5f, 21);
      const auto qw = RandomBytes(dtype, hd, 1.0f, 22);
      const auto kw = RandomBytes(dtype, hd, 1.0f, 23);
      const auto cs = RandomBytes(dtype, seq * hd, 1.0f, 24);
      const auto sn = RandomBytes(dtype, seq * hd, 1.0f, 25);
      const int64_t kv_elems =
          c.pool ? c.kv * pool_rows * hd : tokens * c.kv * hd;
      // Pools start as noise that must survive outside the written rows.
      auto q = RandomBytes(dtype, tokens * c.heads * hd, 1.0f, 26);
      auto k = RandomBytes(dtype, kv_elems, 1.0f, 27);
      auto v = RandomBytes(dtype, kv_elems, 1.0f, 28);
      DevBytes dx(x), dqw(qw), dkw(kw), dc(cs), ds(sn), drows(rows_bytes),
          dq(q), dk(k), dv(v);
      HeadNormRopeMultiArgs m;
      m.dtype = dtype;
      m.x_stride = stride;
      m.tokens = tokens;
      m.seq = seq;
      m.head_dim = c.hd;
      m.segments = 3;
      m.seg[0].col = 0;
      m.seg[0].heads = c.heads;
      m.seg[0].rope = true;
      m.seg[1].col = k_col;
      m.seg[1].heads = c.kv;
      m.seg[1].rope = true;
      m.seg[2].col = v_col;
      m.seg[2].heads = c.kv;
      for (int i = 1; i < 3 && c.pool; ++i) {
        m.seg[i].head_stride = pool_rows * hd;
        m.seg[i].row_stride = hd;
      }
      auto point = [&](bool dev) {
        m.x = dev ? dx.p : static_cast<const void*>(x.data());
        m.cos = dev ? dc.p : static_cast<const void*>(cs.data());
        m.sin = dev ? ds.p : static_cast<const void*>(sn.data());
        m.seg[0].weight = dev ? dqw.p : static_cast<const void*>(qw.data());
        m.seg[1].weight = dev ? dkw.p : static_cast<const void*>(kw.data());
        m.seg[0].out = dev ? dq.p : static_cast<void*>(q.data());
        m.seg[1].out = dev ? dk.p : static_cast<void*>(k.data());
        m.seg[2].out = dev ? dv.p : static_cast<void*>(v.data());
        const int64_t* r =
            dev ? static_cast<const int64_t*>(drows.p) : rows.data();
        m.seg[1].rows = m.seg[2].rows = c.pool ? r : nullptr;
      };
      point(true);
      ASSERT_EQ(HeadNormRopeMultiCuda(m, nullptr), 0);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      point(false);
      ASSERT_TRUE(HeadNormRopeMultiCpu(m).ok());
      const auto gq = dq.Read(), gk = dk.Read(), gv = dv.Read();
      const double rel = 2 * RelTol(dtype);
      EXPECT_EQ(Mismatches(dtype, gq, q, rel, 1e-5), 0);
      EXPECT_EQ(Mismatches(dtype, gk, k, rel, 1e-5), 0);
      EXPECT_EQ(Mismatches(dtype, gv, v, rel, 1e-5), 0);

      // Single-segment launches of the same heads, contiguous; the multi
      // outputs gathered to the same layout.
      auto single = [&](int64_t col, int heads, const DevBytes* w, bool rope) {
        std::vector<uint8_t> out(tokens * heads * hd * esize);
        DevBytes dout(out);
        HeadNormRopeArgs a;
        a.dtype = dtype;
        a.x = static_cast<const uint8_t*>(dx.p) + col * esize;
        a.x_stride = stride;
        a.tokens = tokens;
        a.seq = seq;
        a.heads = heads;
        a.head_dim = c.hd;
        a.weight = w != nullptr ? w->p : nullptr;
        if (rope) {
          a.cos = dc.p;
          a.sin = ds.p;
        }
        a.out = dout.p;
        EXPECT_EQ(HeadNormRopeCuda(a, nullptr), 0);
        EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        return dout.Read();
      };
      auto gathered = [&](const std::vector<uint8_t>& pool) {
        if (!c.pool) return pool;
        std::vector<uint8_t> out(tokens * c.kv * hd * esize);
        const int64_t row_bytes = hd * esize;
        for (int64_t t = 0; t < tokens; ++t) {
          for (int h = 0; h < c.kv; ++h) {
            std::memcpy(&out[(t * c.kv + h) * row_bytes],
                        &pool[(h * pool_rows + rows[t]) * row_bytes],
                        row_bytes);
          }
        }
        return out;
      };
      EXPECT_EQ(
          Mismatches(dtype, gq, single(0, c.heads, &dqw, true), rel, 1e-5), 0);
      EXPECT_EQ(Mismatches(dtype, gathered(gk), single(k_col, c.kv, &dkw, true),
                           rel, 1e-5),
                0);
      EXPECT_EQ(Mismatches(dtype, gathered(gv),
                           single(v_col, c.kv, nullptr, false), rel, 1e-5),
                0);
    }
  }
}

TEST(HeadNormRopeGpuTest, HeadNormRopeMultiRejectsBadArguments) {
  DevBytes x(std::vector<uint8_t>(2 * 16 * 4)), out(x.Read());
  HeadNormRopeMultiArgs m;
  m.dtype = Dtype::kFloat32;
  m.x = x.p;
  m.x_stride = 16;
  m.tokens = 2;
  m.head_dim = 8;
  m.segments = 1;
  m.seg[0].heads = 2;
  m.seg[0].out = out.p;
  EXPECT_EQ(HeadNormRopeMultiCuda(m, nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const int invalid = static_cast<int>(cudaErrorInvalidValue);
  m.segments = 0;
  EXPECT_EQ(HeadNormRopeMultiCuda(m, nullptr), invalid);
  m.segments = 4;
  EXPECT_EQ(HeadNormRopeMultiCuda(m, nullptr), invalid);
  m.segments = 2;  // seg[1] has no heads and no out
  EXPECT_EQ(HeadNormRopeMultiCuda(m, nullptr), invalid);
  m.segments = 1;
  m.seg[0].rope = true;  // without cos/sin
  EXPECT_EQ(HeadNormRopeMultiCuda(m, nullptr), invalid);
  m.seg[0].rope = false;
  m.seg[0].row_stride = -8;
  EXPECT_EQ(HeadNormRopeMultiCuda(m, nullptr), invalid);
}

}  // namespace
}  // namespace sweepd::kernels
