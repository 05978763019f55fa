// CPU reference of kernels/paged_decode_attention.h against the ATen flat
// plan of RankKvCache::Attend written out as plain loops: every entry of a
// row's page list gives keys at positions first_pos + j, masked unless
// 0 <= p <= q_pos and (window) q_pos - p < window; K = V layers derive K as
// RotateHalf-RoPE of v · k_norm; scores rounded to dtype; softmax; P · V.
// Also the split choice and the argument checks.
#include "kernels/paged_decode_attention.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

using ::testing::HasSubstr;

struct Case {
  Dtype dtype = Dtype::kFloat32;
  int rows = 2, heads = 4, kv = 2, hd = 16, page_size = 4, pages_per_row = 3;
  int64_t window = 0;
  bool k_eq_v = false;
  std::vector<int64_t> q_pos, first_pos;
};

// Values are stored in `dtype` (bf16 as raw bits in the low half of a
// float-sized slot is awkward; keep a typed buffer per dtype instead).
struct Buffer {
  Dtype dtype;
  std::vector<float> f;
  std::vector<uint16_t> h;
  Buffer(Dtype d, size_t n) : dtype(d) {
    if (d == Dtype::kBFloat16) {
      h.resize(n);
    } else {
      f.resize(n);
    }
  }
  void Set(size_t i, float v) { StoreAs(dtype, data(), i, v); }
  float Get(size_t i) const { return LoadAs(dtype, cdata(), i); }
  void* data() {
    return dtype == Dtype::kBFloat16 ? static_cast<void*>(h.data())
                                     : static_cast<void*>(f.data());
  }
  const void* cdata() const {
    return dtype == Dtype::kBFloat16 ? static_cast<const void*>(h.data())
                                     : static_cast<const void*>(f.data());
  }
};

void Check(const Case& c, double tol) {
  SCOPED_TRACE(::testing::Message()
               << (c.dtype == Dtype::kBFloat16 ? "bf16" : "fp32") << " rows "
               << c.rows << " heads " << c.heads << " kv " << c.kv << " hd "
               << c.hd << " window " << c.window << " k=v " << c.k_eq_v);
  const Dtype t = c.dtype;
  const int P = c.page_size, hd = c.hd, G = c.heads / c.kv;
  const int64_t pool_pages = int64_t{c.rows} * c.pages_per_row + 2;
  const int64_t pool_rows = pool_pages * P;
  std::mt19937 rng(static_cast<uint32_t>(hd * 31 + c.rows));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Buffer q(t, size_t(c.rows) * c.heads * hd),
      kpool(t, size_t(c.kv) * pool_rows * hd),
      vpool(t, size_t(c.kv) * pool_rows * hd), knorm(t, hd),
      out(t, size_t(c.rows) * c.heads * hd);
  for (size_t i = 0; i < q.f.size() + q.h.size(); ++i) q.Set(i, dist(rng));
  for (size_t i = 0; i < kpool.f.size() + kpool.h.size(); ++i) {
    kpool.Set(i, dist(rng));
    vpool.Set(i, dist(rng));
  }
  for (int i = 0; i < hd; ++i) knorm.Set(i, 1.0f + 0.25f * dist(rng));
  std::vector<float> inv_freq(hd / 2);
  for (int i = 0; i < hd / 2; ++i) {
    inv_freq[i] = i < hd / 4 ? std::pow(10000.0f, -2.0f * i / hd) : 0.0f;
  }
  // Row r uses pages in reverse order (non-contiguous in the pool).
  std::vector<int64_t> pages(size_t(c.rows) * c.pages_per_row);
  for (int r = 0; r < c.rows; ++r) {
    for (int j = 0; j < c.pages_per_row; ++j) {
      pages[r * c.pages_per_row + j] =
          pool_pages - 1 - (int64_t{r} * c.pages_per_row + j);
    }
  }
  PagedDecodeAttentionArgs a;
  a.dtype = t;
  a.rows = c.rows;
  a.heads = c.heads;
  a.kv_heads = c.kv;
  a.head_dim = hd;
  a.q = q.cdata();
  a.q_row_stride = int64_t{c.heads} * hd;
  a.k_pool = c.k_eq_v ? nullptr : kpool.cdata();
  a.v_pool = vpool.cdata();
  a.pool_rows = pool_rows;
  a.page_size = P;
  a.pages = pages.data();
  a.page_stride = c.pages_per_row;
  a.max_pages = c.pages_per_row;
  a.first_pos = c.first_pos.data();
  a.q_pos = c.q_pos.data();
  a.window = c.window;
  a.k_norm = knorm.cdata();
  a.inv_freq = inv_freq.data();
  a.out = out.data();
  ASSERT_TRUE(PagedDecodeAttentionCpu(a).ok());

  // The ATen flat plan, written out.
  auto R = [&](float v) { return RoundTo(t, v); };
  for (int r = 0; r < c.rows; ++r) {
    const int64_t qp = c.q_pos[r];
    const int nk = c.pages_per_row * P;
    for (int h = 0; h < c.heads; ++h) {
      const int kvh = h / G;
      std::vector<double> s(nk, -std::numeric_limits<double>::infinity());
      std::vector<std::vector<float>> v(nk, std::vector<float>(hd));
      for (int j = 0; j < nk; ++j) {
        const int64_t kp = c.first_pos[r] + j;
        const int64_t row = pages[r * c.pages_per_row + j / P] * P + j % P;
        const size_t base = (size_t(kvh) * pool_rows + row) * hd;
        std::vector<float> k(hd);
        for (int i = 0; i < hd; ++i) {
          v[j][i] = vpool.Get(base + i);
          k[i] = kpool.Get(base + i);
        }
        if (c.k_eq_v) {
          std::vector<float> kn(hd);
          for (int i = 0; i < hd; ++i) kn[i] = R(v[j][i] * knorm.Get(i));
          for (int i = 0; i < hd; ++i) {
            const int f = i % (hd / 2);
            const float ang = static_cast<float>(kp) * inv_freq[f];
            const float rot = i < hd / 2 ? -kn[i + hd / 2] : kn[i - hd / 2];
            k[i] = R(R(kn[i] * R(std::cos(ang))) + R(rot * R(std::sin(ang))));
          }
        }
        const bool visible = qp >= 0 && kp >= 0 && kp <= qp &&
                             (c.window == 0 || qp - kp < c.window);
        if (!visible) continue;
        double d = 0;
        for (int i = 0; i < hd; ++i) {
          d += double(q.Get((size_t(r) * c.heads + h) * hd + i)) * k[i];
        }
        s[j] = R(static_cast<float>(d));
      }
      double m = -std::numeric_limits<double>::infinity();
      for (double x : s) m = std::max(m, x);
      double sum = 0;
      std::vector<double> o(hd, 0);
      for (int j = 0; j < nk; ++j) {
        if (std::isinf(s[j])) continue;
        const double e = std::exp(s[j] - m);
        sum += e;
        for (int i = 0; i < hd; ++i) o[i] += e * v[j][i];
      }
      for (int i = 0; i < hd; ++i) {
        const double want = sum > 0 ? o[i] / sum : 0.0;
        EXPECT_NEAR(out.Get((size_t(r) * c.heads + h) * hd + i), want, tol)
            << "row " << r << " head " << h << " col " << i;
      }
    }
  }
}

TEST(PagedDecodeAttentionCpuTest, SeparateKvMatchesTheFlatPlan) {
  Case c;
  c.q_pos = {9, 4};
  c.first_pos = {0, 0};
  Check(c, 1e-5);
  c.dtype = Dtype::kBFloat16;
  Check(c, 1e-2);
}

TEST(PagedDecodeAttentionCpuTest, WindowAndFirstPositionPastZero) {
  Case c;
  c.rows = 3;
  c.window = 5;
  // Row 0: its page list starts at position 8 (a sliding ring); row 1 sees
  // exactly the window; row 2 is a padding row (no keys: zeros).
  c.q_pos = {17, 6, -1};
  c.first_pos = {8, 0, 0};
  Check(c, 1e-5);
  c.window = 1;  // only the query's own key
  Check(c, 1e-5);
}

TEST(PagedDecodeAttentionCpuTest, KEqualsVDerivesNormAndRope) {
  for (Dtype t : {Dtype::kFloat32, Dtype::kBFloat16}) {
    Case c;
    c.dtype = t;
    c.k_eq_v = true;
    c.heads = 8;
    c.kv = 1;
    c.hd = 32;
    c.q_pos = {11, 3};
    c.first_pos = {0, 0};
    Check(c, t == Dtype::kFloat32 ? 1e-5 : 1e-2);
  }
}

TEST(PagedDecodeAttentionCpuTest, SplitsFillTheDevice) {
  // One row, 4 KV heads, 192 keys on 132 SMs: 6 splits of 32 keys.
  EXPECT_EQ(PagedDecodeAttentionSplits(1, 4, 192, 132), 6);
  // Enough blocks already: no split.
  EXPECT_EQ(PagedDecodeAttentionSplits(32, 16, 192, 132), 1);
  // Few keys: no split.
  EXPECT_EQ(PagedDecodeAttentionSplits(1, 4, 16, 132), 1);
  EXPECT_EQ(PagedDecodeAttentionSplits(1, 1, 1 << 20, 132), 64);
  PagedDecodeAttentionArgs a;
  a.rows = 2;
  a.heads = 4;
  a.head_dim = 8;
  a.splits = 3;
  EXPECT_EQ(PagedDecodeAttentionWorkspaceBytes(a), 2 * 4 * 3 * 10 * 4);
  a.splits = 1;
  EXPECT_EQ(PagedDecodeAttentionWorkspaceBytes(a), 0);
}

TEST(PagedDecodeAttentionCpuTest, NamesBadArguments) {
  EXPECT_FALSE(PagedDecodeAttentionSupported(4, 2, 12));
  EXPECT_FALSE(PagedDecodeAttentionSupported(3, 2, 16));
  EXPECT_FALSE(PagedDecodeAttentionSupported(4, 2, 1024));
  EXPECT_TRUE(PagedDecodeAttentionSupported(32, 4, 512));
  EXPECT_TRUE(PagedDecodeAttentionSupported(16, 1, 512));
  EXPECT_FALSE(PagedDecodeAttentionSupported(32, 1, 512));
  PagedDecodeAttentionArgs a;
  a.rows = 1;
  a.heads = 4;
  a.kv_heads = 2;
  a.head_dim = 12;
  absl::Status st = PagedDecodeAttentionCpu(a);
  EXPECT_THAT(st.message(), HasSubstr("head_dim 12"));
  a.head_dim = 16;
  st = PagedDecodeAttentionCpu(a);
  EXPECT_THAT(st.message(), HasSubstr("must be set"));
}

}  // namespace
}  // namespace sweepd::kernels
