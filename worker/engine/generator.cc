#include "worker/engine/generator.h"

#include <algorithm>
#include <deque>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sweepd::engine {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStopToken:
    case FinishReason::kStopCondition:
      return "stop";
    case FinishReason::kLength:
      return "length";
  }
  return "length";
}

namespace {

struct Pending {
  int prompt;
  int next_sample;  // first sample not yet admitted
};

}  // namespace

absl::StatusOr<GenerationStats> Generate(
    DecodeSession* session, const std::vector<GenerationPrompt>& prompts,
    const GenerationOptions& options) {
  if (options.max_batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GenerationOptions.max_batch must be >= 1, got ", options.max_batch));
  }
  for (size_t p = 0; p < prompts.size(); ++p) {
    if (prompts[p].max_new_tokens < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt ", p, ": max_new_tokens must be >= 1, got ",
                       prompts[p].max_new_tokens));
    }
    if (prompts[p].tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt ", p, " is empty"));
    }
  }
  GenerationStats stats;
  const absl::Time start = absl::Now();
  std::deque<Pending> queue;
  for (size_t p = 0; p < prompts.size(); ++p) {
    if (!prompts[p].samples.empty()) queue.push_back({static_cast<int>(p), 0});
  }
  std::map<int64_t, GeneratedSample> live;  // by sequence id
  absl::Duration ttft_sum;
  int64_t admissions = 0;

  // Appends a token; returns true when the sample is finished.
  auto add_token = [&](GeneratedSample& s, const DecodedToken& t) {
    const GenerationPrompt& gp = prompts[s.prompt];
    s.tokens.push_back(t.token);
    s.logprobs.push_back(t.logprob);
    s.logprob_sum += t.logprob;
    ++stats.tokens;
    if (std::find(gp.stop_tokens.begin(), gp.stop_tokens.end(), t.token) !=
        gp.stop_tokens.end()) {
      s.finish = FinishReason::kStopToken;
      return true;
    }
    if (options.should_stop &&
        options.should_stop(s.prompt, s.sample, s.tokens)) {
      s.finish = FinishReason::kStopCondition;
      return true;
    }
    if (static_cast<int>(s.tokens.size()) >= gp.max_new_tokens) {
      s.finish = FinishReason::kLength;
      return true;
    }
    return false;
  };
  auto finish = [&](int64_t seq) {
    auto it = live.find(seq);
    session->Release(seq);
    GeneratedSample done = std::move(it->second);
    done.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    live.erase(it);
    if (options.on_sample) options.on_sample(std::move(done));
  };

  while (!queue.empty() || !live.empty()) {
    if (options.cancelled && options.cancelled()) {
      for (auto& [seq, s] : live) session->Release(seq);
      return absl::CancelledError("generation cancelled");
    }
    // Admit as many waiting samples as fit, in prompt order, prefilled
    // together.
    std::vector<PromptRequest> batch;
    std::vector<AdmitSize> sizes;
    std::vector<std::pair<int, int>> parts;  // (prompt, first sample)
    int admitted = 0;
    int64_t longest = 0;
    for (size_t q = 0; q < queue.size(); ++q) {
      const Pending& next = queue[q];
      const GenerationPrompt& gp = prompts[next.prompt];
      const int remaining =
          static_cast<int>(gp.samples.size()) - next.next_sample;
      const int64_t len = static_cast<int64_t>(gp.tokens.size());
      const int64_t padded =
          std::max(longest, len) * static_cast<int64_t>(batch.size() + 1);
      if (!batch.empty() && padded > options.max_prefill_tokens) break;
      int room =
          std::min(remaining, options.max_batch -
                                  static_cast<int>(live.size()) - admitted);
      sizes.push_back({len, room, gp.max_new_tokens});
      while (room > 0 && !session->CanAdmit(sizes)) {
        sizes.back().samples = --room;
      }
      if (room == 0) {
        sizes.pop_back();
        if (live.empty() && batch.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "prompt ", next.prompt, " (", len, " tokens, ", gp.max_new_tokens,
              " new) does not fit the decode session even alone"));
        }
        break;
      }
      PromptRequest r;
      r.tokens = gp.tokens;
      r.samples.assign(gp.samples.begin() + next.next_sample,
                       gp.samples.begin() + next.next_sample + room);
      batch.push_back(std::move(r));
      parts.push_back({next.prompt, next.next_sample});
      admitted += room;
      longest = std::max(longest, len);
      if (room < remaining) break;  // the rest of this prompt waits
    }
    if (!batch.empty()) {
      const absl::Time t0 = absl::Now();
      ASSIGN_OR_RETURN(std::vector<std::vector<DecodedToken>> first,
                       session->AddPrompts(batch));
      const absl::Duration dt = absl::Now() - t0;
      stats.prefill_time += dt;
      ttft_sum += dt * static_cast<int64_t>(batch.size());
      admissions += static_cast<int64_t>(batch.size());
      ++stats.prefills;
      std::vector<int64_t> done;
      for (size_t b = 0; b < batch.size(); ++b) {
        const auto [prompt, first_sample] = parts[b];
        for (size_t i = 0; i < first[b].size(); ++i) {
          GeneratedSample s;
          s.prompt = prompt;
          s.sample = first_sample + static_cast<int>(i);
          s.time_to_first_token = absl::ToDoubleSeconds(absl::Now() - start);
          auto [it, inserted] =
              live.emplace(first[b][i].sequence, std::move(s));
          if (add_token(it->second, first[b][i])) {
            done.push_back(first[b][i].sequence);
          }
        }
        Pending& p = queue.front();
        p.next_sample += static_cast<int>(first[b].size());
        if (p.next_sample ==
            static_cast<int>(prompts[p.prompt].samples.size())) {
          queue.pop_front();
        }
      }
      stats.max_live = std::max(stats.max_live, static_cast<int>(live.size()));
      for (int64_t seq : done) finish(seq);
    }
    if (live.empty()) continue;
    const absl::Time t0 = absl::Now();
    ASSIGN_OR_RETURN(std::vector<DecodedToken> step, session->Step());
    const absl::Duration step_time = absl::Now() - t0;
    stats.decode_time += step_time;
    ++stats.steps;
    if (options.on_step) {
      options.on_step(absl::ToDoubleSeconds(step_time),
                      static_cast<int>(step.size()));
    }
    for (const DecodedToken& t : step) {
      if (add_token(live.at(t.sequence), t)) finish(t.sequence);
    }
  }
  if (admissions > 0) stats.mean_time_to_first_token = ttft_sum / admissions;
  return stats;
}

}  // namespace sweepd::engine
