#include "worker/engine/forward_plan.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/engine/gram.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

absl::StatusOr<CapturePoint> ParseCapture(const std::string& name,
                                          int num_layers) {
  const size_t open = name.find('[');
  if (open == std::string::npos || name.back() != ']') {
    return absl::InvalidArgumentError(
        absl::StrCat("capture point '", name, "' must look like resid_in[L]"));
  }
  const std::string kind = name.substr(0, open);
  int idx = 0;
  if (!absl::SimpleAtoi(name.substr(open + 1, name.size() - open - 2), &idx)) {
    return absl::InvalidArgumentError(
        absl::StrCat("capture point '", name, "': bad index"));
  }
  CapturePoint cp{CapturePoint::kResidIn, idx, name};
  if (kind == "hidden_states") {
    if (idx < 0 || idx > num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "capture point '", name, "': index outside [0, ", num_layers, "]"));
    }
    if (idx == 0) {
      cp.kind = CapturePoint::kResidIn;
    } else if (idx < num_layers) {
      cp.kind = CapturePoint::kResidOut;
      cp.layer = idx - 1;
    } else {
      cp.kind = CapturePoint::kFinalNorm;
      cp.layer = num_layers - 1;
    }
    return cp;
  }
  if (kind == "resid_in") {
    cp.kind = CapturePoint::kResidIn;
  } else if (kind == "resid_out") {
    cp.kind = CapturePoint::kResidOut;
  } else if (kind == "attn_heads") {
    cp.kind = CapturePoint::kAttnHeads;
  } else if (kind == "attn_out") {
    cp.kind = CapturePoint::kAttnOut;
  } else if (kind == "mlp_in") {
    cp.kind = CapturePoint::kMlpIn;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("capture point '", name,
                     "': kind must be resid_in, resid_out, attn_heads, "
                     "attn_out, mlp_in or hidden_states"));
  }
  if (idx < 0 || idx >= num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "capture point '", name, "': layer outside [0, ", num_layers, ")"));
  }
  return cp;
}

namespace {

// A capture point this forward produces: at or after start_layer, and not
// inside a skipped layer (attn_heads, attn_out, mlp_in).
absl::Status CheckPointRuns(const CapturePoint& cp, const Plan& plan) {
  if (cp.layer < plan.start_layer) {
    return absl::InvalidArgumentError(absl::StrCat("capture point '", cp.name,
                                                   "' lies before start_layer ",
                                                   plan.start_layer));
  }
  if ((cp.kind == CapturePoint::kAttnHeads ||
       cp.kind == CapturePoint::kAttnOut || cp.kind == CapturePoint::kMlpIn) &&
      plan.skip[cp.layer]) {
    return absl::InvalidArgumentError(absl::StrCat(
        "capture point '", cp.name, "' belongs to a skipped layer"));
  }
  return absl::OkStatus();
}

}  // namespace

void ResolveSteering(const ForwardRequest& req, const std::vector<int64_t>& pos,
                     const std::vector<int64_t>& len, Plan* plan) {
  // Steering ops were appended per layer in request order.
  std::vector<size_t> next(plan->steer.size(), 0);
  for (const Intervention& iv : req.interventions) {
    if (iv.kind != Intervention::Kind::kSteer) continue;
    SteerOp& op = plan->steer[iv.layer][next[iv.layer]++];
    op.rows.clear();
    for (size_t r = 0; r < pos.size(); ++r) {
      if (pos[r] < 0) continue;
      bool selected = iv.positions.empty();
      for (int p : iv.positions) {
        if ((p >= 0 ? p : len[r] + p) == pos[r]) selected = true;
      }
      if (selected) op.rows.push_back(static_cast<int64_t>(r));
    }
  }
}

absl::Status MakePlan(const ModelConfig& cfg, int tp_size, const void* owner,
                      const ForwardRequest& req, Plan* plan) {
  const int N = cfg.num_hidden_layers;
  if (req.batch < 1 || req.seq < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch and seq must be >= 1, got batch=", req.batch, " seq=", req.seq));
  }
  const int64_t T = req.batch * req.seq;
  if (static_cast<int64_t>(req.tokens.size()) != T) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokens has ", req.tokens.size(), " entries, batch*seq = ", T));
  }
  for (int64_t i = 0; i < T; ++i) {
    if (req.tokens[i] < 0 || req.tokens[i] >= cfg.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens[", i, "] = ", req.tokens[i],
                       " outside [0, vocab_size=", cfg.vocab_size, ")"));
    }
  }
  plan->req = &req;
  if (req.targets.empty()) {
    plan->targets.assign(T, -1);
    for (int64_t b = 0; b < req.batch; ++b) {
      for (int64_t s = 0; s + 1 < req.seq; ++s) {
        plan->targets[b * req.seq + s] = req.tokens[b * req.seq + s + 1];
      }
    }
  } else {
    if (static_cast<int64_t>(req.targets.size()) != T) {
      return absl::InvalidArgumentError(absl::StrCat(
          "targets has ", req.targets.size(), " entries, batch*seq = ", T));
    }
    for (int64_t i = 0; i < T; ++i) {
      if (req.targets[i] < -1 || req.targets[i] >= cfg.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("targets[", i, "] = ", req.targets[i],
                         " outside [-1, vocab_size)"));
      }
    }
    plan->targets = req.targets;
  }
  if (!req.lens_positions.empty() &&
      static_cast<int64_t>(req.lens_positions.size()) != T) {
    return absl::InvalidArgumentError(
        absl::StrCat("lens_positions has ", req.lens_positions.size(),
                     " entries, batch*seq = ", T));
  }
  plan->lens.assign(T, 0);
  for (int64_t i = 0; i < T; ++i) {
    plan->lens[i] = plan->targets[i] >= 0 &&
                    (req.lens_positions.empty() || req.lens_positions[i] != 0);
  }
  plan->skip.assign(N, 0);
  plan->zero.assign(N, 0);
  plan->reinit.assign(N, std::nullopt);
  plan->masked_heads.assign(N, {});
  plan->replace.assign(N, nullptr);
  plan->steer.assign(N, {});
  for (size_t i = 0; i < req.interventions.size(); ++i) {
    const Intervention& iv = req.interventions[i];
    if (iv.layer < 0 || iv.layer >= N) {
      return absl::InvalidArgumentError(absl::StrCat(
          "interventions[", i, "].layer ", iv.layer, " outside [0, ", N, ")"));
    }
    switch (iv.kind) {
      case Intervention::Kind::kSkipLayer:
        plan->skip[iv.layer] = 1;
        break;
      case Intervention::Kind::kZeroLayer:
        plan->zero[iv.layer] = 1;
        break;
      case Intervention::Kind::kReinitLayer:
        plan->reinit[iv.layer] = iv.seed;
        break;
      case Intervention::Kind::kMaskHeads:
        for (int head : iv.heads) {
          if (head < 0 || head >= cfg.num_attention_heads) {
            return absl::InvalidArgumentError(
                absl::StrCat("interventions[", i, "].heads: head ", head,
                             " outside [0, ", cfg.num_attention_heads, ")"));
          }
          plan->masked_heads[iv.layer].push_back(head);
        }
        break;
      case Intervention::Kind::kSteer: {
        if (static_cast<int64_t>(iv.vector.size()) != cfg.hidden_size) {
          return absl::InvalidArgumentError(
              absl::StrCat("interventions[", i, "] (steer of layer ", iv.layer,
                           "): the vector has ", iv.vector.size(),
                           " values, hidden_size is ", cfg.hidden_size));
        }
        if (!std::isfinite(iv.scale)) {
          return absl::InvalidArgumentError(
              absl::StrCat("interventions[", i, "] (steer of layer ", iv.layer,
                           "): scale ", iv.scale, " is not finite"));
        }
        SteerOp op;
        op.mode = iv.steer_mode;
        op.delta.resize(iv.vector.size());
        for (size_t j = 0; j < iv.vector.size(); ++j) {
          op.delta[j] = static_cast<float>(iv.scale * iv.vector[j]);
          if (!std::isfinite(op.delta[j])) {
            return absl::InvalidArgumentError(absl::StrCat(
                "interventions[", i, "] (steer of layer ", iv.layer,
                "): scale * vector[", j, "] is not finite"));
          }
        }
        plan->steer[iv.layer].push_back(std::move(op));
        break;
      }
      case Intervention::Kind::kReplaceLayer: {
        if (plan->replace[iv.layer] != nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat("layer ", iv.layer,
                           " has more than one replace_layer intervention"));
        }
        absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
            SafetensorsFile::Open(iv.weights_path);
        if (!file.ok()) {
          return absl::Status(
              file.status().code(),
              absl::StrCat("interventions[", i, "] (replace_layer of layer ",
                           iv.layer, "): ", file.status().message()));
        }
        RETURN_IF_ERROR(CheckReplacement(cfg, iv.layer, **file));
        plan->replace[iv.layer] = std::move(*file);
        break;
      }
    }
  }
  for (int L = 0; L < N; ++L) {
    if (plan->skip[L] + plan->zero[L] + plan->reinit[L].has_value() +
            (plan->replace[L] != nullptr) >
        1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer ", L,
          " has more than one of skip / zero / reinit / replace_layer "
          "interventions"));
    }
  }
  {
    std::vector<int64_t> pos(T), len(T, req.seq);
    for (int64_t r = 0; r < T; ++r) pos[r] = r % req.seq;
    ResolveSteering(req, pos, len, plan);
  }
  plan->first_touched = FirstTouchedLayer(req.interventions, N);
  plan->row_masked_heads.assign(N, {});
  if (!req.row_head_masks.empty()) {
    if (static_cast<int64_t>(req.row_head_masks.size()) != req.batch) {
      return absl::InvalidArgumentError(
          absl::StrCat("row_head_masks has ", req.row_head_masks.size(),
                       " entries, batch = ", req.batch));
    }
    for (int64_t b = 0; b < req.batch; ++b) {
      const RowHeadMask& m = req.row_head_masks[b];
      if (m.heads.empty()) continue;
      if (m.layer < 0 || m.layer >= N) {
        return absl::InvalidArgumentError(
            absl::StrCat("row_head_masks[", b, "].layer ", m.layer,
                         " outside [0, ", N, ")"));
      }
      for (int head : m.heads) {
        if (head < 0 || head >= cfg.num_attention_heads) {
          return absl::InvalidArgumentError(
              absl::StrCat("row_head_masks[", b, "].heads: head ", head,
                           " outside [0, ", cfg.num_attention_heads, ")"));
        }
      }
      auto& rows = plan->row_masked_heads[m.layer];
      if (rows.empty()) rows.resize(req.batch);
      rows[b] = m.heads;
      plan->first_touched = std::min(plan->first_touched, m.layer);
    }
  }
  plan->start_layer = 0;
  if (req.start_from != nullptr) {
    const auto* st = dynamic_cast<const PrefixStateImpl*>(req.start_from.get());
    if (st == nullptr || st->owner != owner) {
      return absl::InvalidArgumentError(
          "start_from was not produced by this engine");
    }
    bool same_tokens =
        st->seq == req.seq && st->batch > 0 && req.batch % st->batch == 0;
    const int64_t state_tokens = st->batch * st->seq;
    for (int64_t i = 0; same_tokens && i < T; ++i) {
      same_tokens = req.tokens[i] == st->tokens[i % state_tokens];
    }
    if (!same_tokens) {
      return absl::InvalidArgumentError(
          "start_from was produced for different tokens than this request's "
          "(or the request's rows are not the state's rows repeated)");
    }
    plan->start_repeat = req.batch / st->batch;
    if (req.start_layer < 0 || req.start_layer > N) {
      return absl::InvalidArgumentError(absl::StrCat(
          "start_layer ", req.start_layer, " outside [0, ", N, "]"));
    }
    if (req.start_layer > st->valid_until()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "start_layer ", req.start_layer,
          " is past the prefix state's valid_until ", st->valid_until(),
          " (its forward had an intervention at that layer)"));
    }
    if (req.start_layer > plan->first_touched) {
      return absl::InvalidArgumentError(
          absl::StrCat("start_layer ", req.start_layer,
                       " is past this request's first intervention at layer ",
                       plan->first_touched));
    }
    for (const auto& rank_resid : st->resid) {
      if (static_cast<int>(rank_resid.size()) != N + 1 ||
          !rank_resid[req.start_layer].defined()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "start_from holds no residual for layer ", req.start_layer));
      }
    }
    plan->start_state = st;
    plan->start_layer = req.start_layer;
  } else if (req.start_layer != 0) {
    return absl::InvalidArgumentError("start_layer > 0 needs start_from");
  }
  for (const std::string& name : req.captures) {
    ASSIGN_OR_RETURN(CapturePoint cp, ParseCapture(name, N));
    RETURN_IF_ERROR(CheckPointRuns(cp, *plan));
    plan->captures.push_back(cp);
  }
  for (size_t i = 0; i < req.grams.size(); ++i) {
    auto* g = dynamic_cast<GramAccumulatorImpl*>(req.grams[i].get());
    if (g == nullptr || g->owner != owner) {
      return absl::InvalidArgumentError(
          absl::StrCat("grams[", i, "] was not made by this engine's NewGram"));
    }
    if (std::find(plan->grams.begin(), plan->grams.end(), g) !=
        plan->grams.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("grams[", i, "] is listed twice"));
    }
    RETURN_IF_ERROR(CheckPointRuns(g->x, *plan));
    if (g->y) RETURN_IF_ERROR(CheckPointRuns(*g->y, *plan));
    plan->grams.push_back(g);
  }
  if (!req.gram_rows.empty() &&
      static_cast<int64_t>(req.gram_rows.size()) != T) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gram_rows has ", req.gram_rows.size(), " entries, batch*seq = ", T));
  }
  if (!plan->grams.empty()) {
    for (int64_t i = 0; i < T; ++i) {
      if (req.gram_rows.empty() || req.gram_rows[i] != 0) {
        plan->gram_rows.push_back(i);
      }
    }
  }
  if (req.keep_prefix_state) {
    auto st = std::make_shared<PrefixStateImpl>();
    st->owner = owner;
    st->tokens = req.tokens;
    st->batch = req.batch;
    st->seq = req.seq;
    st->valid_until_ = plan->first_touched;
    if (plan->start_state != nullptr) {
      st->valid_until_ =
          std::min(st->valid_until_, plan->start_state->valid_until());
    }
    st->resid.resize(tp_size);
    plan->keep_state = std::move(st);
  }
  return absl::OkStatus();
}

}  // namespace sweepd::engine::internal
