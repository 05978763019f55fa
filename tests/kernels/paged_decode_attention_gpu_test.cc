// GPU test of kernels/paged_decode_attention.h (label gpu): the CUDA kernel
// against its CPU reference on random inputs — bf16 and fp32; the 31B's
// shapes (sliding: head_dim 256, 2 query heads per KV head; full: head_dim
// 512, K = V, 8 per KV head) and GQA ratios 1 and 4; window edges (a window
// of 1, exactly the window, keys before the ring's first position); a padding
// row (q_pos -1: zeros) and rows of one key; page lists in scattered pool
// order with unused trailing entries; one split and several (the merge
// kernel), chosen and forced, including more splits than keys; the tiled
// kernel's edges (tile tails, many tiles, tiles of 8, 64 splits, rows with no
// keys, head_dim 24 and 8, G 3, 12 and 64).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/paged_decode_attention.h"

namespace sweepd::kernels {
namespace {

struct Case {
  const char* name;
  Dtype dtype;
  int heads, kv, hd, page_size, pages_per_row;
  int64_t window;
  bool k_eq_v;
  std::vector<int64_t> q_pos, first_pos;
  int splits;  // 0 = PagedDecodeAttentionSplits
};

template <typename T>
T* ToDevice(const std::vector<T>& v) {
  void* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, std::max<size_t>(16, v.size() * sizeof(T))),
            cudaSuccess);
  EXPECT_EQ(
      cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
      cudaSuccess);
  return static_cast<T*>(d);
}

// Random values in dtype, as raw bytes (bf16 bits or floats).
std::vector<uint8_t> Random(Dtype t, size_t n, float sd, std::mt19937* rng) {
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<uint8_t> out(n * DtypeSize(t));
  for (size_t i = 0; i < n; ++i) StoreAs(t, out.data(), i, dist(*rng));
  return out;
}

void RunCase(const Case& c) {
  SCOPED_TRACE(c.name);
  const Dtype t = c.dtype;
  const int64_t rows = static_cast<int64_t>(c.q_pos.size());
  const int P = c.page_size, hd = c.hd;
  const int64_t pool_pages = rows * c.pages_per_row + 3;
  const int64_t pool_rows = pool_pages * P;
  std::mt19937 rng(static_cast<uint32_t>(hd * 7 + rows * 3 + c.heads));
  const size_t qn = rows * c.heads * hd, pn = c.kv * pool_rows * hd;
  std::vector<uint8_t> q = Random(t, qn, 1.0f / std::sqrt(float(hd)), &rng);
  std::vector<uint8_t> kp = Random(t, pn, 1.0f, &rng);
  std::vector<uint8_t> vp = Random(t, pn, 1.0f, &rng);
  std::vector<uint8_t> kn(hd * DtypeSize(t));
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  for (int i = 0; i < hd; ++i) StoreAs(t, kn.data(), i, u(rng));
  // Gemma 4's proportional RoPE: a quarter of the angles rotate.
  std::vector<float> inv_freq(hd / 2, 0.0f);
  for (int i = 0; i < hd / 8; ++i) {
    inv_freq[i] = std::pow(1e6f, -2.0f * i / hd);
  }
  if (!c.k_eq_v) {
    for (int i = 0; i < hd / 2; ++i)
      inv_freq[i] = std::pow(1e4f, -2.0f * i / hd);
  }
  // Row r's pages: a shuffled permutation of the pool, followed by two
  // unused entries (never read).
  std::vector<int64_t> perm(pool_pages);
  for (int64_t i = 0; i < pool_pages; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  const int64_t stride = c.pages_per_row + 2;
  std::vector<int64_t> pages(rows * stride, 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int j = 0; j < c.pages_per_row; ++j) {
      pages[r * stride + j] = perm[r * c.pages_per_row + j];
    }
  }
  PagedDecodeAttentionArgs a;
  a.dtype = t;
  a.rows = rows;
  a.heads = c.heads;
  a.kv_heads = c.kv;
  a.head_dim = hd;
  a.q_row_stride = int64_t{c.heads} * hd;
  a.pool_rows = pool_rows;
  a.page_size = P;
  a.page_stride = stride;
  a.max_pages = c.pages_per_row;
  a.window = c.window;
  a.scale = 1.0f;
  a.splits = c.splits > 0
                 ? c.splits
                 : PagedDecodeAttentionSplits(rows, c.kv, c.pages_per_row * P,
                                              CudaMultiprocessorCount());
  // CPU reference.
  std::vector<uint8_t> want(qn * DtypeSize(t));
  a.q = q.data();
  a.k_pool = c.k_eq_v ? nullptr : kp.data();
  a.v_pool = vp.data();
  a.pages = pages.data();
  a.first_pos = c.first_pos.data();
  a.q_pos = c.q_pos.data();
  a.k_norm = kn.data();
  a.inv_freq = inv_freq.data();
  a.out = want.data();
  ASSERT_TRUE(PagedDecodeAttentionCpu(a).ok());
  // Device.
  a.q = ToDevice(q);
  a.k_pool = c.k_eq_v ? nullptr : ToDevice(kp);
  a.v_pool = ToDevice(vp);
  a.pages = ToDevice(pages);
  a.first_pos = ToDevice(c.first_pos);
  a.q_pos = ToDevice(c.q_pos);
  a.k_norm = ToDevice(kn);
  a.inv_freq = ToDevice(inv_freq);
  std::vector<uint8_t> junk(qn * DtypeSize(t), 0x7f);  // overwritten
  a.out = ToDevice(junk);
  std::vector<uint8_t> ws(
      std::max<int64_t>(16, PagedDecodeAttentionWorkspaceBytes(a)));
  a.workspace = ToDevice(ws);
  ASSERT_EQ(PagedDecodeAttentionCuda(a, nullptr), 0) << "splits " << a.splits;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint8_t> got(qn * DtypeSize(t));
  ASSERT_EQ(cudaMemcpy(got.data(), a.out, got.size(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (const void* p :
       {a.q, a.k_pool, a.v_pool, static_cast<const void*>(a.pages),
        static_cast<const void*>(a.first_pos),
        static_cast<const void*>(a.q_pos), a.k_norm,
        static_cast<const void*>(a.inv_freq), static_cast<const void*>(a.out),
        static_cast<const void*>(a.workspace)}) {
    if (p != nullptr) cudaFree(const_cast<void*>(p));
  }
  const double abs_tol = t == Dtype::kBFloat16 ? 2e-2 : 2e-4;
  const double rel_tol = t == Dtype::kBFloat16 ? 2e-2 : 1e-4;
  int64_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < qn; ++i) {
    const double g = LoadAs(t, got.data(), i), w = LoadAs(t, want.data(), i);
    const double err = std::fabs(g - w);
    worst = std::max(worst, err);
    if (!(err <= abs_tol + rel_tol * std::fabs(w))) {
      if (++bad <= 5) {
        ADD_FAILURE() << "element " << i << " (row " << i / (c.heads * hd)
                      << ", head " << (i / hd) % c.heads << ", col " << i % hd
                      << "): got " << g << ", want " << w;
      }
    }
  }
  EXPECT_EQ(bad, 0) << "max |err| " << worst << " splits " << a.splits;
  // Padding rows are exact zeros.
  for (int64_t r = 0; r < rows; ++r) {
    if (c.q_pos[r] >= 0) continue;
    for (int64_t i = r * c.heads * hd; i < (r + 1) * c.heads * hd; ++i) {
      ASSERT_EQ(LoadAs(t, got.data(), i), 0.0f) << "padding row " << r;
    }
  }
}

TEST(PagedDecodeAttentionGpuTest, MatchesTheCpuReference) {
  const std::vector<Case> cases = {
      // The 31B's sliding layers: 128-token prompt + 64 new, page 16.
      {"sliding hd256 bf16, N=1",
       Dtype::kBFloat16,
       32,
       16,
       256,
       16,
       12,
       1024,
       false,
       {191},
       {0},
       0},
      {"sliding hd256 bf16, N=4 rows of one key to full pages",
       Dtype::kBFloat16,
       4,
       2,
       256,
       16,
       12,
       1024,
       false,
       {0, 15, 16, 191},
       {0, 0, 0, 0},
       0},
      // Past the window: the ring's first position > 0, keys before the
      // window's start masked, the window's exact edge.
      {"sliding past the window",
       Dtype::kBFloat16,
       8,
       4,
       256,
       16,
       66,
       1024,
       false,
       {1040, 1100, 1023, -1},
       {16, 64, 0, 0},
       0},
      {"window 1 and padding",
       Dtype::kFloat32,
       4,
       2,
       64,
       4,
       5,
       1,
       false,
       {0, 7, -1, 19},
       {0, 0, 0, 0},
       0},
      // The 31B's full layers: K = V, head_dim 512, 8 heads per KV head.
      {"full hd512 K=V bf16, N=1",
       Dtype::kBFloat16,
       32,
       4,
       512,
       16,
       12,
       0,
       true,
       {191},
       {0},
       0},
      {"full hd512 K=V bf16, N=8",
       Dtype::kBFloat16,
       32,
       4,
       512,
       16,
       12,
       0,
       true,
       {130, 140, 150, 160, 170, 180, 190, 191},
       {0, 0, 0, 0, 0, 0, 0, 0},
       0},
      {"full hd512 K=V fp32, forced 5 splits",
       Dtype::kFloat32,
       16,
       2,
       512,
       16,
       10,
       0,
       true,
       {150, 3},
       {0, 0},
       5},
      {"K=V long keys, 7 splits",
       Dtype::kBFloat16,
       8,
       1,
       512,
       16,
       130,
       0,
       true,
       {2070},
       {0},
       7},
      {"GQA 1, fp32, 3 splits > keys of row 1",
       Dtype::kFloat32,
       4,
       4,
       128,
       8,
       4,
       0,
       false,
       {30, 1},
       {0, 0},
       3},
      {"GQA 4, bf16, head_dim 64 K=V",
       Dtype::kBFloat16,
       8,
       2,
       64,
       4,
       9,
       6,
       true,
       {35, 20, 2},
       {0, 8, 0},
       0},
      {"tiny model's shapes (head_dim 16 and 32)",
       Dtype::kFloat32,
       4,
       2,
       16,
       4,
       6,
       8,
       false,
       {21, 5},
       {12, 0},
       2},
      {"tiny full K=V head_dim 32",
       Dtype::kFloat32,
       4,
       1,
       32,
       4,
       7,
       0,
       true,
       {24, 9},
       {0, 0},
       0},
      // The tiled kernel's paths: tile tails (63/64/65 keys and more than
      // one tile of 64 keys in one split), the head_dim 512 K = V tile of
      // 32, float32 head_dim 512 at G x head_dim = 8192 (tiles of 8: the
      // double-buffered page reads over many tiles), many splits with empty
      // ones, rows with no keys (q_pos before the ring's first position, a
      // window past the page list), head_dim 24 (3 or 6 chunks of 16 bytes,
      // RoPE partners not chunk-aligned) with G 3, G 12 (two head chunks in
      // P · V) and G 64 at head_dim 8.
      {"tile tails, bf16 hd256, one split",
       Dtype::kBFloat16,
       4,
       2,
       256,
       16,
       14,
       0,
       false,
       {63, 64, 65, 127, 128, 200, -1},
       {0, 0, 0, 0, 0, 0, 0},
       1},
      {"hd512 K=V bf16, one split, several tiles",
       Dtype::kBFloat16,
       16,
       2,
       512,
       16,
       14,
       0,
       true,
       {31, 32, 33, 95, 210},
       {0, 0, 0, 0, 0},
       1},
      {"fp32 hd512 G=16, tiles of 8",
       Dtype::kFloat32,
       32,
       2,
       512,
       8,
       13,
       0,
       false,
       {100, 7, 8},
       {0, 0, 0},
       1},
      {"fp32 hd512 K=V G=16, 2 splits",
       Dtype::kFloat32,
       32,
       2,
       512,
       8,
       13,
       0,
       true,
       {100, 7, 8},
       {0, 0, 0},
       2},
      {"64 splits, some empty",
       Dtype::kBFloat16,
       8,
       4,
       128,
       16,
       8,
       0,
       false,
       {100, 0, -1, 127},
       {0, 0, 0, 0},
       64},
      {"rows with no keys",
       Dtype::kBFloat16,
       4,
       2,
       256,
       16,
       4,
       16,
       false,
       {5, 40, -1, 200},
       {10, 0, 0, 0},
       3},
      {"head_dim 24 K=V, G 3, bf16",
       Dtype::kBFloat16,
       6,
       2,
       24,
       4,
       20,
       0,
       true,
       {70, 3},
       {0, 0},
       0},
      {"head_dim 24 K=V, G 3, fp32",
       Dtype::kFloat32,
       6,
       2,
       24,
       4,
       20,
       0,
       true,
       {70, 3},
       {0, 0},
       1},
      {"G 12, hd 64, bf16, 2 splits",
       Dtype::kBFloat16,
       12,
       1,
       64,
       16,
       6,
       50,
       false,
       {90, 10},
       {0, 0},
       2},
      {"G 64, head_dim 8, K=V fp32",
       Dtype::kFloat32,
       64,
       1,
       8,
       4,
       30,
       0,
       true,
       {119, 60},
       {0, 0},
       1},
  };
  for (const Case& c : cases) RunCase(c);
}

}  // namespace
}  // namespace sweepd::kernels
