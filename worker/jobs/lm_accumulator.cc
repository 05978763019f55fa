#include "worker/jobs/lm_accumulator.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "worker/jobs/task.h"

namespace sweepd {

void AccumulateEval(const LmStream& data, const LmBatch& batch,
                    const engine::ForwardResult& r, LmAccumulator* acc) {
  const int64_t S = batch.seq;
  for (size_t b = 0; b < batch.members.size(); ++b) {
    const LmSequence& s = data.sequences[batch.members[b]];
    double sum = 0.0;
    int64_t n = 0;
    for (int64_t p = 0; p < S; ++p) {
      const int64_t i = static_cast<int64_t>(b) * S + p;
      if (!r.target_valid[i]) continue;
      sum += r.nll[i];
      ++n;
    }
    acc->nll_sum[0] += sum;
    acc->tokens[0] += n;
    if (s.category > 0) {
      acc->nll_sum[s.category] += sum;
      acc->tokens[s.category] += n;
    }
  }
}

void AccumulateProbe(const LmStream& data, const LmBatch& batch,
                     const std::vector<const engine::LayerStats*>& stats,
                     bool from_eval, LmAccumulator* acc) {
  const int64_t S = batch.seq;
  const int N = static_cast<int>(stats.size());
  for (size_t b = 0; b < batch.members.size(); ++b) {
    const LmSequence& s = data.sequences[batch.members[b]];
    const int64_t len = from_eval ? s.probe_len : S;
    const int rank_pos = from_eval ? s.probe_rank_pos : s.rank_pos;
    if (len == 0) continue;
    const int cats[2] = {0, s.category};
    const int ncats = s.category > 0 ? 2 : 1;
    int decision = N;
    for (int L = 0; L < N; ++L) {
      const engine::LayerStats& st = *stats[L];
      double bi = 0.0, norm = 0.0;
      for (int64_t p = 0; p < len; ++p) {
        bi += st.block_influence[b * S + p];
        norm += st.resid_out_norm[b * S + p];
      }
      int64_t rank = -1;
      if (rank_pos >= 0) rank = st.target_rank[b * S + rank_pos];
      if (rank == 0 && decision == N) decision = L;
      for (int k = 0; k < ncats; ++k) {
        acc->bi_sum[cats[k]][L] += bi;
        acc->norm_sum[cats[k]][L] += norm;
        if (rank >= 0) {
          acc->rank_sum[cats[k]][L] += static_cast<double>(rank);
          if (rank == 0) ++acc->top1[cats[k]][L];
        }
      }
    }
    for (int k = 0; k < ncats; ++k) {
      acc->tokens[cats[k]] += len;
      if (rank_pos >= 0) {
        ++acc->prompts[cats[k]];
        acc->decision_sum[cats[k]] += decision;
      }
    }
  }
}

TaskOutput MakeLmTaskOutput(const std::string& kind, BosPolicy bos,
                            const LmAccumulator& acc,
                            const std::vector<std::string>& categories,
                            int layers, double wall_seconds) {
  TaskOutput out;
  const LmAccumulator& a = acc;
  out.metrics.push_back(
      MetricRow{"bos", bos == BosPolicy::kOn ? 1.0 : 0.0, {}});
  for (size_t c = 0; c < categories.size(); ++c) {
    const std::map<std::string, std::string> cat = {
        {"category", categories[c]}};
    if (kind == kEvalKind) {
      out.metrics.push_back(MetricRow{"nll_sum", a.nll_sum[c], cat});
      out.metrics.push_back(
          MetricRow{"tokens", static_cast<double>(a.tokens[c]), cat});
      if (a.tokens[c] > 0) {
        const double mean = a.nll_sum[c] / static_cast<double>(a.tokens[c]);
        out.metrics.push_back(MetricRow{"nll_mean", mean, cat});
        out.metrics.push_back(MetricRow{"ppl", std::exp(mean), cat});
      }
      continue;
    }
    out.metrics.push_back(
        MetricRow{"tokens", static_cast<double>(a.tokens[c]), cat});
    out.metrics.push_back(
        MetricRow{"prompts", static_cast<double>(a.prompts[c]), cat});
    const double tokens = static_cast<double>(a.tokens[c]);
    const double prompts = static_cast<double>(a.prompts[c]);
    for (int L = 0; L < layers; ++L) {
      std::map<std::string, std::string> labels = cat;
      labels["layer"] = std::to_string(L);
      if (a.tokens[c] > 0) {
        out.metrics.push_back(MetricRow{"bi", a.bi_sum[c][L] / tokens, labels});
        out.metrics.push_back(
            MetricRow{"resid_norm", a.norm_sum[c][L] / tokens, labels});
      }
      if (a.prompts[c] > 0) {
        out.metrics.push_back(
            MetricRow{"lens_rank", a.rank_sum[c][L] / prompts, labels});
        out.metrics.push_back(MetricRow{
            "lens_top1", static_cast<double>(a.top1[c][L]) / prompts, labels});
      }
    }
    if (a.prompts[c] > 0) {
      out.metrics.push_back(
          MetricRow{"decision_layer", a.decision_sum[c] / prompts, cat});
    }
  }
  out.wall_seconds = wall_seconds;
  return out;
}

}  // namespace sweepd
