// The CUDA fused LM-head logits pass against the CPU reference (label gpu;
// needs a CUDA device). Every CUDA call is checked; outputs are poisoned before
// each launch and every element is checked to have been written. Counts and
// target logits must match exactly; statistics within the fast-softcap
// tolerance documented in docs/KERNELS.md.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/lm_head_pass.h"

namespace sweepd::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

#define CUDA_OK(expr)                                                          \
  do {                                                                         \
    const cudaError_t e_ = (expr);                                             \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorName(e_) << " " \
                               << cudaGetErrorString(e_);                      \
  } while (0)

uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) {
    const cudaError_t e =
        cudaMalloc(&ptr, std::max<size_t>(count, 1) * sizeof(T));
    if (e != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc " << count * sizeof(T)
                    << " bytes: " << cudaGetErrorString(e);
      ptr = nullptr;
    }
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

struct Case {
  std::string name;
  bool bf16;
  int64_t rows, vocab, stride,
      offset_elems;      // offset_elems: misaligns the first row
  int64_t vocab_offset;  // global id of entry 0
  float softcap;
  bool int64_ids;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// Host data for one case: raw logits (bf16 bits or float) with ties and
// saturated values planted, and targets inside and outside the shard and -1.
struct HostData {
  std::vector<uint16_t> bf16;
  std::vector<float> f32;
  std::vector<int64_t> ids64;
  std::vector<int32_t> ids32;
};

HostData MakeData(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 8.0f);
  std::uniform_int_distribution<int64_t> pick(0, c.vocab - 1);
  const size_t total = c.offset_elems + c.rows * c.stride;
  HostData h;
  h.bf16.assign(total, 0x7FC0);  // NaN in padding: must never be read
  h.f32.assign(total, NAN);
  h.ids64.resize(c.rows);
  for (int64_t t = 0; t < c.rows; ++t) {
    const size_t base = c.offset_elems + t * c.stride;
    for (int64_t v = 0; v < c.vocab; ++v) {
      float x = normal(rng);
      if (c.bf16) {
        h.bf16[base + v] = ToBf16(x);
      } else {
        h.f32[base + v] = x;
      }
    }
    const int64_t kind = t % 7;
    int64_t local = pick(rng);
    if (kind == 3) local = -1;                   // no target
    if (kind == 5) local = c.vocab + pick(rng);  // in another shard (above)
    if (kind == 6 && c.vocab_offset > 0)
      local = -1 - pick(rng) % c.vocab_offset;  // below
    h.ids64[t] = local == -1 && kind == 3 ? -1 : c.vocab_offset + local;
    if (local >= 0 && local < c.vocab) {
      // Ties with the target, its bf16/f32 neighbours, and saturated values.
      for (int k = 0; k < 4; ++k) {
        const int64_t v = pick(rng);
        if (c.bf16) {
          h.bf16[base + v] = h.bf16[base + local];
        } else {
          h.f32[base + v] = h.f32[base + local];
        }
      }
      const int64_t v1 = pick(rng), v2 = pick(rng), v3 = pick(rng);
      if (c.bf16) {
        h.bf16[base + v1] =
            h.bf16[base + local] + 1;  // one ulp away (same sign direction)
        h.bf16[base + v2] = h.bf16[base + local] - 1;
        h.bf16[base + v3] = ToBf16(t % 2 ? 300.0f : 512.0f);
      } else {
        h.f32[base + v1] = std::nextafter(h.f32[base + local], kInf);
        h.f32[base + v2] = std::nextafter(h.f32[base + local], -kInf);
        h.f32[base + v3] = t % 2 ? 300.0f : 512.0f;
      }
      if (t % 11 ==
          0) {  // a saturated target tied with other saturated entries
        const uint16_t sat = ToBf16(400.0f);
        if (c.bf16) {
          h.bf16[base + local] = sat;
        } else {
          h.f32[base + local] = 400.0f;
        }
      }
    }
  }
  h.ids32.assign(h.ids64.begin(), h.ids64.end());
  return h;
}

class LmHeadPassGpu : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    ASSERT_EQ(e, cudaSuccess)
        << "no usable CUDA device: " << cudaGetErrorString(e);
    ASSERT_GT(n, 0) << "no CUDA device";
  }
};

template <typename T>
std::vector<T> Download(const DeviceBuffer<T>& d) {
  std::vector<T> h(d.n);
  EXPECT_EQ(
      cudaMemcpy(h.data(), d.ptr, d.n * sizeof(T), cudaMemcpyDeviceToHost),
      cudaSuccess);
  return h;
}

TEST_P(LmHeadPassGpu, MatchesCpuReference) {
  const Case& c = GetParam();
  const HostData h =
      MakeData(c, 1234u + static_cast<uint32_t>(c.rows * 7 + c.vocab));
  const size_t total = c.offset_elems + c.rows * c.stride;
  const size_t elem = c.bf16 ? 2 : 4;
  DeviceBuffer<uint8_t> d_logits(total * elem);
  DeviceBuffer<int64_t> d_ids64(c.rows);
  DeviceBuffer<int32_t> d_ids32(c.rows);
  ASSERT_NE(d_logits.ptr, nullptr);
  const void* host_logits =
      c.bf16 ? static_cast<const void*>(h.bf16.data()) : h.f32.data();
  CUDA_OK(cudaMemcpy(d_logits.ptr, host_logits, total * elem,
                     cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(d_ids64.ptr, h.ids64.data(), c.rows * 8,
                     cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(d_ids32.ptr, h.ids32.data(), c.rows * 4,
                     cudaMemcpyHostToDevice));

  LogitsShard host_shard{
      static_cast<const uint8_t*>(host_logits) + c.offset_elems * elem,
      c.bf16 ? LogitsType::kBFloat16 : LogitsType::kFloat32,
      c.rows,
      c.vocab,
      c.stride,
      c.vocab_offset,
      c.softcap};
  LogitsShard dev_shard = host_shard;
  dev_shard.data = d_logits.ptr + c.offset_elems * elem;
  const TargetIds host_ids =
      c.int64_ids ? TargetIds{h.ids64.data(), TargetIdType::kInt64}
                  : TargetIds{h.ids32.data(), TargetIdType::kInt32};
  const TargetIds dev_ids = c.int64_ids
                                ? TargetIds{d_ids64.ptr, TargetIdType::kInt64}
                                : TargetIds{d_ids32.ptr, TargetIdType::kInt32};

  // CPU reference.
  const size_t T = c.rows;
  std::vector<float> r_max(T), r_sum(T), r_tl(T), r_lse(T), r_tl1(T), r_max1(T),
      r_sum1(T);
  std::vector<int32_t> r_cnt(T), r_cnt2(T);
  ASSERT_TRUE(ShardStatsAndRankCpu(host_shard, host_ids,
                                   {r_max.data(), r_sum.data(), r_tl.data(),
                                    r_cnt.data(), r_lse.data()})
                  .ok());
  ASSERT_TRUE(ShardStatsCpu(host_shard, host_ids,
                            {r_max1.data(), r_sum1.data(), r_tl1.data()})
                  .ok());
  // Pass 2 with a "global" target logit: the local one where present, else a
  // random value.
  std::vector<float> global_tl(T);
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> u(-25.0f, 25.0f);
  for (size_t t = 0; t < T; ++t)
    global_tl[t] = r_tl1[t] == -kInf ? u(rng) : r_tl1[t];
  ASSERT_TRUE(
      ShardCountAboveCpu(host_shard, host_ids, global_tl.data(), r_cnt2.data())
          .ok());

  DeviceBuffer<float> d_max(T), d_sum(T), d_tl(T), d_lse(T), d_gtl(T);
  DeviceBuffer<int32_t> d_cnt(T);
  CUDA_OK(
      cudaMemcpy(d_gtl.ptr, global_tl.data(), T * 4, cudaMemcpyHostToDevice));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreate(&stream));
  auto poison = [&] {
    for (void* p :
         {static_cast<void*>(d_max.ptr), static_cast<void*>(d_sum.ptr),
          static_cast<void*>(d_tl.ptr), static_cast<void*>(d_lse.ptr),
          static_cast<void*>(d_cnt.ptr)}) {
      ASSERT_EQ(cudaMemsetAsync(p, 0xFF, T * 4, stream),
                cudaSuccess);  // NaN / -1
    }
  };
  auto sync = [&] {
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const cudaError_t e = cudaStreamSynchronize(stream);
    ASSERT_EQ(e, cudaSuccess) << cudaGetErrorString(e);
  };
  auto check_stats = [&](const std::vector<float>& mx,
                         const std::vector<float>& se, const char* what) {
    for (size_t t = 0; t < T; ++t) {
      ASSERT_FALSE(std::isnan(mx[t]))
          << what << " row_max unwritten at row " << t;
      ASSERT_FALSE(std::isnan(se[t]))
          << what << " row_sumexp unwritten at row " << t;
      // Fast softcap: |dz| <~ 1e-5 absolute (docs/KERNELS.md).
      ASSERT_NEAR(mx[t], r_max[t], 2e-5f + 1e-6f * std::abs(r_max[t]))
          << what << " row " << t;
      const double lse_k = mx[t] + std::log(static_cast<double>(se[t]));
      ASSERT_NEAR(lse_k, r_lse[t], 3e-5 + 2e-6 * std::abs(r_lse[t]))
          << what << " row " << t;
    }
  };

  // 1) Single pass (TP = 1).
  poison();
  ASSERT_TRUE(ShardStatsAndRankCuda(
                  dev_shard, dev_ids,
                  {d_max.ptr, d_sum.ptr, d_tl.ptr, d_cnt.ptr, d_lse.ptr},
                  stream)
                  .ok());
  sync();
  {
    const auto mx = Download(d_max), se = Download(d_sum), tl = Download(d_tl),
               lse = Download(d_lse);
    const auto cnt = Download(d_cnt);
    check_stats(mx, se, "StatsAndRank");
    int64_t nonzero = 0;
    for (size_t t = 0; t < T; ++t) {
      ASSERT_FALSE(std::isnan(lse[t])) << "lse unwritten at row " << t;
      ASSERT_NEAR(lse[t], r_lse[t], 3e-5 + 2e-6 * std::abs(r_lse[t]))
          << "row " << t;
      ASSERT_EQ(std::memcmp(&tl[t], &r_tl[t], 4), 0)
          << "target_logit row " << t << ": " << tl[t] << " vs " << r_tl[t];
      ASSERT_EQ(cnt[t], r_cnt[t]) << "count row " << t;
      nonzero += cnt[t] > 0;
    }
    if (T > 8) {
      EXPECT_GT(nonzero, 0) << "degenerate test data: every count is 0";
    }
  }

  // 2) Pass 1 (stats + local target logit).
  poison();
  ASSERT_TRUE(ShardStatsCuda(dev_shard, dev_ids,
                             {d_max.ptr, d_sum.ptr, d_tl.ptr}, stream)
                  .ok());
  sync();
  {
    const auto mx = Download(d_max), se = Download(d_sum), tl = Download(d_tl);
    check_stats(mx, se, "Stats");
    for (size_t t = 0; t < T; ++t) {
      ASSERT_EQ(std::memcmp(&tl[t], &r_tl1[t], 4), 0)
          << "pass-1 target_logit row " << t;
    }
  }

  // 3) Pass 2 (count strictly above the given global target logit).
  poison();
  ASSERT_TRUE(
      ShardCountAboveCuda(dev_shard, dev_ids, d_gtl.ptr, d_cnt.ptr, stream)
          .ok());
  sync();
  {
    const auto cnt = Download(d_cnt);
    for (size_t t = 0; t < T; ++t)
      ASSERT_EQ(cnt[t], r_cnt2[t]) << "pass-2 count row " << t;
  }

  // 4) Combine helpers on the device vs the CPU.
  {
    DeviceBuffer<float> d_smax(2 * T), d_ssum(2 * T), d_out(T), d_out2(T);
    std::vector<float> smax(2 * T), ssum(2 * T);
    for (size_t t = 0; t < T; ++t) {
      smax[t] = r_max[t];
      ssum[t] = r_sum[t];
      smax[T + t] = t % 3 == 0 ? -kInf : r_max[t] - 1.5f;
      ssum[T + t] = t % 3 == 0 ? 0.0f : r_sum[t] * 0.5f;
    }
    CUDA_OK(cudaMemcpy(d_smax.ptr, smax.data(), 8 * T, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d_ssum.ptr, ssum.data(), 8 * T, cudaMemcpyHostToDevice));
    std::vector<float> want(T), want_resc(T);
    ASSERT_TRUE(
        CombineShardStatsCpu(smax.data(), ssum.data(), 2, T, want.data()).ok());
    ASSERT_TRUE(RescaleSumExpCpu(smax.data() + T, ssum.data() + T, r_max.data(),
                                 T, want_resc.data())
                    .ok());
    ASSERT_TRUE(
        CombineShardStatsCuda(d_smax.ptr, d_ssum.ptr, 2, T, d_out.ptr, stream)
            .ok());
    ASSERT_TRUE(RescaleSumExpCuda(d_smax.ptr + T, d_ssum.ptr + T, d_smax.ptr, T,
                                  d_out2.ptr, stream)
                    .ok());
    sync();
    const auto got = Download(d_out), got_resc = Download(d_out2);
    for (size_t t = 0; t < T; ++t) {
      ASSERT_NEAR(got[t], want[t], 1e-5f * std::abs(want[t]) + 1e-6f)
          << "combine row " << t;
      ASSERT_NEAR(got_resc[t], want_resc[t],
                  1e-5f * std::abs(want_resc[t]) + 1e-30f)
          << "rescale row " << t;
    }
    ASSERT_TRUE(
        LseFromMaxSumCuda(d_smax.ptr, d_ssum.ptr, T, d_out.ptr, stream).ok());
    sync();
    const auto lse = Download(d_out);
    for (size_t t = 0; t < T; ++t) {
      ASSERT_NEAR(lse[t], r_max[t] + std::log(r_sum[t]),
                  1e-5f * std::abs(lse[t]) + 1e-6f);
    }
  }
  CUDA_OK(cudaStreamDestroy(stream));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LmHeadPassGpu,
    ::testing::Values(
        Case{"T1_V262144_bf16_cap30", true, 1, 262144, 262144, 0, 0, 30.0f,
             true},
        Case{"T16_V262144_bf16_cap30_i32", true, 16, 262144, 262144, 0, 0,
             30.0f, false},
        Case{"T4096_V4099_odd_bf16_cap30", true, 4096, 4099, 4103, 3, 0, 30.0f,
             true},
        Case{"T64_V32771_shard_offset_bf16", true, 64, 32771, 32776, 1, 65536,
             30.0f, true},
        Case{"T7_V5_tiny_bf16", true, 7, 5, 9, 1, 3, 30.0f, false},
        Case{"T33_V1027_bf16_nocap", true, 33, 1027, 1027, 0, 0, 0.0f, true},
        Case{"T128_V65539_f32_cap30", false, 128, 65539, 65541, 1, 0, 30.0f,
             true},
        Case{"T9_V3_f32_nocap_offset", false, 9, 3, 4, 0, 100, 0.0f, false},
        Case{"T31_V8191_f32_cap30_offset", false, 31, 8191, 8191, 2, 8191,
             30.0f, true}),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(LmHeadPassGpuErrors, RejectsBadShape) {
  LogitsShard s{reinterpret_cast<const void*>(0x1000),
                LogitsType::kBFloat16,
                4,
                8,
                7,
                0,
                30.0f};
  int64_t id = 0;
  float a, b, c;
  const absl::Status st =
      ShardStatsCuda(s, {&id, TargetIdType::kInt64}, {&a, &b, &c}, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("row_stride"));
}

}  // namespace
}  // namespace sweepd::kernels
