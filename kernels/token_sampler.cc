// CPU reference of kernels/token_sampler.h: the contract written out row by
// row (sorts for top-k and top-p, a sequential double inverse CDF), plus the
// argument checks and the workspace size shared with the CUDA launcher.
#include "kernels/token_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/softcap_math.h"

namespace sweepd::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

float SoftcapZ(Dtype dtype, float x, float cap, bool reciprocal) {
  if (!(cap > 0.0f)) return x;
  const float a = RoundTo(dtype, reciprocal ? x * (1.0f / cap) : x / cap);
  const float b = RoundTo(dtype, std::tanh(a));
  return RoundTo(dtype, b * cap);
}

// -0 counts as +0 (f + 0 is +0 for both zeros).
uint32_t Key(float f) {
  return internal::OrderedKey(internal::FloatToBits(f + 0.0f), 32);
}

// The fixed-point top-p mass of e in [0, 1].
uint64_t Mass(float e) {
  return static_cast<uint64_t>(std::nearbyint(e * 4294967296.0f));
}

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("TokenSamplerCpu: ", what));
}

absl::Status Validate(const TokenSamplerArgs& a, int64_t* edits) {
  if (a.rows < 1) return Invalid(absl::StrCat("rows ", a.rows, " < 1"));
  if (a.vocab < 1 || a.vocab > kTokenSamplerMaxVocab) {
    return Invalid(absl::StrCat("vocab ", a.vocab, " not in 1..2^30"));
  }
  if (a.row_stride < a.vocab) {
    return Invalid(
        absl::StrCat("row_stride ", a.row_stride, " < vocab ", a.vocab));
  }
  if (!(a.softcap >= 0.0f) || std::isinf(a.softcap)) {
    return Invalid(absl::StrCat("softcap ", a.softcap, " not finite >= 0"));
  }
  const std::pair<const void*, const char*> required[] = {
      {a.logits, "logits"}, {a.temperature, "temperature"},
      {a.top_k, "top_k"},   {a.top_p, "top_p"},
      {a.min_p, "min_p"},   {a.uniform, "uniform"},
      {a.token, "token"},   {a.logprob, "logprob"}};
  for (const auto& [p, name] : required) {
    if (p == nullptr) return Invalid(absl::StrCat(name, " is null"));
  }
  for (int64_t r = 0; r < a.rows; ++r) {
    if (std::isnan(a.temperature[r])) {
      return Invalid(absl::StrCat("temperature[", r, "] is NaN"));
    }
    if (a.top_k[r] < 0) {
      return Invalid(absl::StrCat("top_k[", r, "] ", a.top_k[r], " < 0"));
    }
    if (!(a.top_p[r] >= 0.0f && a.top_p[r] <= 1.0f)) {
      return Invalid(
          absl::StrCat("top_p[", r, "] ", a.top_p[r], " not in [0, 1]"));
    }
    if (!(a.min_p[r] >= 0.0f && a.min_p[r] <= 1.0f)) {
      return Invalid(
          absl::StrCat("min_p[", r, "] ", a.min_p[r], " not in [0, 1]"));
    }
    if (!(a.uniform[r] >= 0.0 && a.uniform[r] < 1.0)) {
      return Invalid(
          absl::StrCat("uniform[", r, "] ", a.uniform[r], " not in [0, 1)"));
    }
  }
  if (a.edit_capacity < 0) {
    return Invalid(absl::StrCat("edit_capacity ", a.edit_capacity, " < 0"));
  }
  *edits = 0;
  if (a.edit_capacity == 0) return absl::OkStatus();
  if (a.edit_count == nullptr || a.edit_row == nullptr ||
      a.edit_token == nullptr || a.edit_value == nullptr) {
    return Invalid(
        "edit_count, edit_row, edit_token and edit_value must be set when "
        "edit_capacity > 0");
  }
  if (*a.edit_count < 0 || *a.edit_count > a.edit_capacity) {
    return Invalid(absl::StrCat("edit_count ", *a.edit_count, " not in 0..",
                                a.edit_capacity));
  }
  *edits = *a.edit_count;
  for (int64_t i = 0; i < *edits; ++i) {
    if (a.edit_row[i] < 0 || a.edit_row[i] >= a.rows) {
      return Invalid(absl::StrCat("edit_row[", i, "] ", a.edit_row[i],
                                  " not in 0..", a.rows - 1));
    }
    if (a.edit_token[i] < 0 || a.edit_token[i] >= a.vocab) {
      return Invalid(absl::StrCat("edit_token[", i, "] ", a.edit_token[i],
                                  " not in 0..", a.vocab - 1));
    }
    const float v = a.edit_value[i];
    if (std::isnan(v) || v == std::numeric_limits<float>::infinity()) {
      return Invalid(absl::StrCat("edit_value[", i, "] ", v,
                                  " is neither finite nor -inf"));
    }
  }
  return absl::OkStatus();
}

// The largest key s among the candidates (key >= floor) whose upper weight
// {key >= s} reaches `need`, walking distinct keys descending.
uint32_t UpperThreshold(const std::vector<uint32_t>& keys,
                        const std::vector<uint64_t>& weight, uint32_t floor,
                        double need) {
  std::vector<int64_t> idx;
  for (int64_t v = 0; v < static_cast<int64_t>(keys.size()); ++v) {
    if (keys[v] >= floor) idx.push_back(v);
  }
  std::sort(idx.begin(), idx.end(),
            [&](int64_t x, int64_t y) { return keys[x] > keys[y]; });
  uint64_t cum = 0;
  for (size_t i = 0; i < idx.size();) {
    const uint32_t k = keys[idx[i]];
    uint64_t group = 0;
    for (; i < idx.size() && keys[idx[i]] == k; ++i) group += weight[idx[i]];
    cum += group;
    if (group > 0 && static_cast<double>(cum) >= need) return k;
  }
  return floor;  // unreachable when need <= the total weight
}

}  // namespace

int64_t TokenSamplerWorkspaceBytes(int64_t rows, int64_t vocab) {
  const int64_t z = (rows * vocab * 4 + 15) / 16 * 16;
  return z + rows * 8;
}

absl::Status TokenSamplerCpu(const TokenSamplerArgs& a) {
  int64_t edits = 0;
  if (absl::Status s = Validate(a, &edits); !s.ok()) return s;
  const int64_t V = a.vocab;
  std::vector<float> z(V), zb(V), zt(V), e(V);
  std::vector<uint32_t> keys(V);
  for (int64_t r = 0; r < a.rows; ++r) {
    // The model's distribution.
    const char* row = static_cast<const char*>(a.logits) +
                      r * a.row_stride * DtypeSize(a.dtype);
    float zmax = kNegInf;
    for (int64_t v = 0; v < V; ++v) {
      z[v] = SoftcapZ(a.dtype, LoadAs(a.dtype, row, v), a.softcap,
                      a.softcap_reciprocal);
      zmax = std::max(zmax, z[v]);
    }
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) {
      if (z[v] > kNegInf) sum += std::exp(static_cast<double>(z[v]) - zmax);
    }
    const double lse = zmax > kNegInf ? zmax + std::log(sum) : zmax;

    zb = z;
    for (int64_t i = 0; i < edits; ++i) {
      if (a.edit_row[i] == r) zb[a.edit_token[i]] += a.edit_value[i];
    }

    int64_t token = -1;
    const float t = a.temperature[r];
    if (!(t > 0.0f)) {
      float best = kNegInf;
      for (int64_t v = 0; v < V; ++v) {
        if (zb[v] > best) {
          best = zb[v];
          token = v;
        }
      }
    } else {
      float m = kNegInf;
      for (int64_t v = 0; v < V; ++v) {
        zt[v] = zb[v] / t;
        keys[v] = Key(zt[v]);
        m = std::max(m, zt[v]);
      }
      if (m > kNegInf) {
        uint32_t floor = 0;
        const int64_t k = a.top_k[r];
        if (k > 0 && k < V) {
          std::vector<uint32_t> sorted = keys;
          std::nth_element(sorted.begin(), sorted.begin() + (k - 1),
                           sorted.end(), std::greater<uint32_t>());
          floor = sorted[k - 1];
        }
        std::vector<uint64_t> mass(V);
        uint64_t total = 0;
        for (int64_t v = 0; v < V; ++v) {
          e[v] = keys[v] >= floor ? std::exp(zt[v] - m) : 0.0f;
          mass[v] = Mass(e[v]);
          total += mass[v];
        }
        if (a.top_p[r] < 1.0f) {
          const double need =
              static_cast<double>(a.top_p[r]) * static_cast<double>(total);
          floor = UpperThreshold(keys, mass, floor, need);
        }
        double kept = 0;
        int64_t last = -1;
        for (int64_t v = 0; v < V; ++v) {
          if (keys[v] < floor || e[v] < a.min_p[r]) e[v] = 0.0f;
          if (e[v] > 0.0f) {
            kept += e[v];
            last = v;
          }
        }
        if (last >= 0) {
          const double target = a.uniform[r] * kept;
          double acc = 0;
          token = last;
          for (int64_t v = 0; v < V; ++v) {
            if (e[v] <= 0.0f) continue;
            acc += e[v];
            if (acc > target) {
              token = v;
              break;
            }
          }
        }
      }
    }
    a.token[r] = token;
    a.logprob[r] = token >= 0
                       ? static_cast<float>(static_cast<double>(z[token]) - lse)
                       : kNegInf;
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
