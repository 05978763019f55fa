#include "worker/engine/sampler.h"

#include <algorithm>
#include <limits>

#include "worker/engine/host_upload.h"
#include "worker/engine/tp_ops.h"

namespace sweepd::engine::internal {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Without a host synchronisation (host_upload.h): the host queues the whole
// sampler while the device still runs the forward.
template <typename T>
at::Tensor ToDevice(const std::vector<T>& v, at::ScalarType type,
                    const at::Device& device) {
  return Upload(v, type, device);
}

// Adds values[i] at (rows[i], tokens[i]) where the token falls into this
// rank's shard. Without a host synchronisation: edits outside the shard add 0
// to a clamped column.
void AddLocal(at::Tensor& z, const std::vector<int64_t>& rows,
              const std::vector<int64_t>& tokens, const at::Tensor& values,
              int64_t vocab_start, int64_t vocab_len) {
  const at::Device device = z.device();
  at::Tensor r = ToDevice(rows, at::kLong, device);
  at::Tensor t = ToDevice(tokens, at::kLong, device) - vocab_start;
  at::Tensor mine = t.ge(0).logical_and(t.lt(vocab_len));
  at::Tensor v = at::where(mine, values, at::zeros_like(values));
  z.index_put_({r, t.clamp(0, std::max<int64_t>(0, vocab_len - 1))}, v,
               /*accumulate=*/true);
}

// Row-wise minimum over ranks of int64 values.
at::Tensor AllReduceMinLong(comm::Communicator* comm, const at::Tensor& v) {
  at::Tensor neg = (-v).contiguous();
  AllReduceMax(comm, neg);
  return -neg;
}

}  // namespace

SampledRows SampleRows(comm::Communicator* comm, const at::Tensor& z,
                       int64_t vocab_start, int64_t vocab_len,
                       const SamplerBatch& batch) {
  const at::Device device = z.device();
  const int64_t R = batch.rows();
  const int64_t Vs = z.size(1);
  const int64_t no_token = std::numeric_limits<int64_t>::max();

  // The model's distribution, for the log-probabilities.
  at::Tensor zmax = std::get<0>(z.max(1)).contiguous();
  AllReduceMax(comm, zmax);
  at::Tensor zsum = (z - zmax.unsqueeze(1)).exp().sum(1).contiguous();
  AllReduceSum(comm, zsum);
  const at::Tensor lse = zmax + zsum.log();

  // Bias (after the softcap) and bans.
  at::Tensor zb = z;
  if (!batch.bias_row.empty() || !batch.ban_row.empty()) zb = z.clone();
  if (!batch.bias_row.empty()) {
    AddLocal(zb, batch.bias_row, batch.bias_token,
             ToDevice(batch.bias_value, at::kFloat, device), vocab_start,
             vocab_len);
  }
  if (!batch.ban_row.empty()) {
    AddLocal(zb, batch.ban_row, batch.ban_token,
             at::full({static_cast<int64_t>(batch.ban_row.size())}, kNegInf,
                      zb.options()),
             vocab_start, vocab_len);
  }

  const at::Tensor temperature =
      ToDevice(batch.temperature, at::kFloat, device);
  const bool any_greedy =
      std::any_of(batch.temperature.begin(), batch.temperature.end(),
                  [](float t) { return t <= 0; });
  const bool any_sampled =
      std::any_of(batch.temperature.begin(), batch.temperature.end(),
                  [](float t) { return t > 0; });

  at::Tensor greedy;
  if (any_greedy) {
    auto [lv, li] = zb.max(1);
    at::Tensor gv = lv.clone();  // reduced in place: not an alias of lv
    AllReduceMax(comm, gv);
    at::Tensor cand =
        at::where(lv.eq(gv), li + vocab_start, at::full_like(li, no_token));
    greedy = AllReduceMinLong(comm, cand);
  }

  at::Tensor sampled;
  if (any_sampled) {
    at::Tensor safe_t =
        at::where(temperature.gt(0), temperature, at::ones_like(temperature));
    at::Tensor zt = zb / safe_t.unsqueeze(1);

    // top-k: the k-th largest value over all ranks is the row's threshold.
    const int64_t kmax =
        *std::max_element(batch.top_k.begin(), batch.top_k.end());
    if (kmax > 0) {
      const int64_t kk = std::min(kmax, Vs);
      at::Tensor top = std::get<0>(zt.topk(kk, 1));  // [R, kk]
      at::Tensor all = AllGather(comm, top).permute({1, 0, 2}).reshape({R, -1});
      at::Tensor sorted = std::get<0>(all.sort(1, /*descending=*/true));
      at::Tensor k = ToDevice(batch.top_k, at::kLong, device);
      at::Tensor pos = (k - 1).clamp(0, sorted.size(1) - 1);
      at::Tensor thr = sorted.gather(1, pos.unsqueeze(1)).squeeze(1);
      thr = at::where(k.gt(0), thr, at::full_like(thr, kNegInf));
      zt = zt.masked_fill(zt.lt(thr.unsqueeze(1)), kNegInf);
    }

    at::Tensor m = std::get<0>(zt.max(1)).contiguous();
    AllReduceMax(comm, m);
    at::Tensor e = (zt - m.unsqueeze(1)).exp();  // the top token has e = 1

    // top-p: bisection for the largest threshold t whose strict upper mass
    // still reaches top_p; the nucleus is {z > t}.
    const bool any_top_p = std::any_of(batch.top_p.begin(), batch.top_p.end(),
                                       [](float p) { return p < 1; });
    if (any_top_p) {
      at::Tensor p = ToDevice(batch.top_p, at::kFloat, device);
      at::Tensor total = e.sum(1).contiguous();
      AllReduceSum(comm, total);
      at::Tensor need = p * total;
      at::Tensor lo = m - 110.0f;  // mass above: everything
      at::Tensor hi = m.clone();   // mass above: nothing
      for (int it = 0; it < 40; ++it) {
        at::Tensor mid = (lo + hi) * 0.5f;
        at::Tensor mass = (e * zt.gt(mid.unsqueeze(1))).sum(1).contiguous();
        AllReduceSum(comm, mass);
        at::Tensor reaches = mass.ge(need);
        lo = at::where(reaches, mid, lo);
        hi = at::where(reaches, hi, mid);
      }
      at::Tensor drop =
          zt.le(lo.unsqueeze(1)).logical_and(p.lt(1).unsqueeze(1));
      e = e.masked_fill(drop, 0);
    }
    // min-p, relative to the top token's probability (e = 1).
    const bool any_min_p = std::any_of(batch.min_p.begin(), batch.min_p.end(),
                                       [](float p) { return p > 0; });
    if (any_min_p) {
      at::Tensor mp = ToDevice(batch.min_p, at::kFloat, device);
      e = e.masked_fill(e.lt(mp.unsqueeze(1)), 0);
    }

    // Inverse CDF over the global vocabulary in id order.
    at::Tensor ed = e.to(at::kDouble);
    at::Tensor s = ed.sum(1);             // [R]
    at::Tensor all = AllGather(comm, s);  // [tp, R]
    const int rank = comm->rank();
    at::Tensor upto = all.cumsum(0);
    at::Tensor total = upto[all.size(0) - 1];
    at::Tensor before = upto[rank] - all[rank];
    at::Tensor target = ToDevice(batch.uniform, at::kDouble, device) * total;
    // The last rank with mass takes targets that rounding put past the end.
    at::Tensor ranks =
        at::arange(all.size(0),
                   at::TensorOptions().dtype(at::kLong).device(device))
            .unsqueeze(1);
    at::Tensor last_nz = std::get<0>(
        at::where(all.gt(0), ranks, at::full_like(ranks, -1)).max(0));
    at::Tensor owner =
        target.ge(before)
            .logical_and(target.lt(before + s))
            .logical_or(last_nz.eq(rank).logical_and(target.ge(before + s)));
    at::Tensor c = ed.cumsum(1);
    at::Tensor local = (target - before).clamp_min(0).unsqueeze(1);
    at::Tensor idx =
        at::searchsorted(c, local, /*out_int32=*/false, /*right=*/true)
            .squeeze(1);
    // Past the end: the last token with mass.
    at::Tensor cols = at::arange(Vs, idx.options()).unsqueeze(0);
    at::Tensor last_col =
        std::get<0>(at::where(e.gt(0), cols, at::full_like(cols, -1)).max(1));
    idx = at::where(idx.ge(Vs), last_col, idx);
    at::Tensor tok = at::where(owner.logical_and(idx.ge(0)), idx + vocab_start,
                               at::full_like(idx, -1))
                         .contiguous();
    AllReduceMax(comm, tok);
    sampled = tok;
  }

  at::Tensor token;
  if (any_greedy && any_sampled) {
    token = at::where(temperature.gt(0), sampled, greedy);
  } else {
    token = any_sampled ? sampled : greedy;
  }
  token = at::where(token.eq(no_token), at::full_like(token, -1), token);

  // log softmax(z)[token], from the rank that holds it.
  at::Tensor lt = token - vocab_start;
  at::Tensor mine = lt.ge(0).logical_and(lt.lt(vocab_len));
  at::Tensor picked = z.gather(1, lt.clamp(0, Vs - 1).unsqueeze(1)).squeeze(1);
  at::Tensor val = at::where(mine, picked, at::zeros_like(picked)).contiguous();
  AllReduceSum(comm, val);
  return {token, (val - lse).to(at::kFloat)};
}

}  // namespace sweepd::engine::internal
