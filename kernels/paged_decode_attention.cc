// CPU reference of kernels/paged_decode_attention.h: the kernel's math and
// rounding points, dot products and the softmax accumulated in double, the
// softmax in two passes (max, then sum).
#include "kernels/paged_decode_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"

namespace sweepd::kernels {

bool PagedDecodeAttentionSupported(int heads, int kv_heads, int head_dim) {
  return kv_heads >= 1 && heads >= kv_heads && heads % kv_heads == 0 &&
         head_dim >= 8 && head_dim <= 512 && head_dim % 8 == 0 &&
         int64_t{heads / kv_heads} * head_dim <= 8192;
}

int PagedDecodeAttentionSplits(int64_t rows, int kv_heads, int64_t max_keys,
                               int sm_count) {
  const int64_t blocks = std::max<int64_t>(1, rows * kv_heads);
  const int64_t want = (2 * std::max(1, sm_count) + blocks - 1) / blocks;
  const int64_t by_keys = max_keys / 32;
  return static_cast<int>(std::clamp<int64_t>(std::min(want, by_keys), 1, 64));
}

int64_t PagedDecodeAttentionWorkspaceBytes(const PagedDecodeAttentionArgs& a) {
  if (a.splits <= 1) return 0;
  return a.rows * a.heads * a.splits * (int64_t{a.head_dim} + 2) * 4;
}

absl::Status PagedDecodeAttentionCpu(const PagedDecodeAttentionArgs& a) {
  if (a.rows < 0 ||
      !PagedDecodeAttentionSupported(a.heads, a.kv_heads, a.head_dim)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedDecodeAttentionCpu: rows ", a.rows, ", heads ", a.heads,
        ", kv_heads ", a.kv_heads, " (heads a multiple), head_dim ", a.head_dim,
        " (a multiple of 8, 8..512; heads / kv_heads x "
        "head_dim <= 8192)"));
  }
  if (a.q == nullptr || a.v_pool == nullptr || a.out == nullptr ||
      a.pages == nullptr || a.first_pos == nullptr || a.q_pos == nullptr ||
      (a.k_pool == nullptr && (a.k_norm == nullptr || a.inv_freq == nullptr))) {
    return absl::InvalidArgumentError(
        "PagedDecodeAttentionCpu: q, v_pool, pages, first_pos, q_pos and out "
        "must be set, and k_norm and inv_freq without k_pool");
  }
  if (a.page_size < 1 || a.max_pages < 0 || a.max_pages > a.page_stride ||
      a.pool_rows < 0 || a.window < 0 ||
      a.q_row_stride < a.heads * a.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedDecodeAttentionCpu: page_size ", a.page_size, ", max_pages ",
        a.max_pages, " (<= page_stride ", a.page_stride, "), pool_rows ",
        a.pool_rows, ", window ", a.window, ", q_row_stride ", a.q_row_stride));
  }
  const Dtype t = a.dtype;
  const int hd = a.head_dim, half = hd / 2;
  const int G = a.heads / a.kv_heads;
  const int64_t P = a.page_size;
  std::vector<float> k(hd), kn(hd);
  std::vector<double> scores, acc(hd);
  for (int64_t r = 0; r < a.rows; ++r) {
    const int64_t qp = a.q_pos[r], fp = a.first_pos[r];
    int64_t lo = fp, hi = qp;
    if (a.window > 0) lo = std::max(lo, qp - a.window + 1);
    hi = std::min(hi, fp + a.max_pages * P - 1);
    const int64_t n = qp < 0 ? 0 : std::max<int64_t>(0, hi - lo + 1);
    for (int kvh = 0; kvh < a.kv_heads; ++kvh) {
      // Keys of this KV head, derived once for its query heads.
      std::vector<std::vector<float>> keys(n), vals(n);
      for (int64_t j = 0; j < n; ++j) {
        const int64_t p = lo + j, rel = p - fp;
        const int64_t page = a.pages[r * a.page_stride + rel / P];
        if (page < 0 || (page + 1) * P > a.pool_rows) {
          return absl::InvalidArgumentError(
              absl::StrCat("PagedDecodeAttentionCpu: row ", r, " position ", p,
                           " maps to page ", page, ", outside the pool of ",
                           a.pool_rows, " rows"));
        }
        const int64_t base = (kvh * a.pool_rows + page * P + rel % P) * hd;
        vals[j].resize(hd);
        for (int i = 0; i < hd; ++i) vals[j][i] = LoadAs(t, a.v_pool, base + i);
        keys[j].resize(hd);
        if (a.k_pool != nullptr) {
          for (int i = 0; i < hd; ++i)
            keys[j][i] = LoadAs(t, a.k_pool, base + i);
          continue;
        }
        for (int i = 0; i < hd; ++i) {
          kn[i] = RoundTo(t, vals[j][i] * LoadAs(t, a.k_norm, i));
        }
        for (int i = 0; i < half; ++i) {
          const float angle = static_cast<float>(p) * a.inv_freq[i];
          const float c = RoundTo(t, std::cos(angle));
          const float s = RoundTo(t, std::sin(angle));
          keys[j][i] =
              RoundTo(t, RoundTo(t, kn[i] * c) + RoundTo(t, -kn[i + half] * s));
          keys[j][i + half] =
              RoundTo(t, RoundTo(t, kn[i + half] * c) + RoundTo(t, kn[i] * s));
        }
      }
      for (int g = 0; g < G; ++g) {
        const int h = kvh * G + g;
        const int64_t q0 = r * a.q_row_stride + static_cast<int64_t>(h) * hd;
        const int64_t o0 = (r * a.heads + h) * static_cast<int64_t>(hd);
        scores.assign(n, 0);
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < n; ++j) {
          double dot = 0;
          for (int i = 0; i < hd; ++i) {
            dot += static_cast<double>(LoadAs(t, a.q, q0 + i)) * keys[j][i];
          }
          scores[j] = static_cast<double>(RoundTo(t, static_cast<float>(dot))) *
                      a.scale;
          m = std::max(m, scores[j]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < n; ++j) {
          const double e = std::exp(scores[j] - m);
          sum += e;
          for (int i = 0; i < hd; ++i) acc[i] += e * vals[j][i];
        }
        for (int i = 0; i < hd; ++i) {
          StoreAs(t, a.out, o0 + i,
                  n == 0 ? 0.0f : static_cast<float>(acc[i] / sum));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
