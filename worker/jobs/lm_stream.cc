#include "worker/jobs/lm_stream.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/windowing.h"

namespace sweepd {

std::string LmShareKey(const LmTaskSpec& s) {
  return absl::StrCat(s.model.path, "\n", s.model.fingerprint, "\n",
                      s.model.dtype, "\n", s.model.tokenizer, "\n", s.data.path,
                      "\n", TextSplitName(s.data.split), "\n",
                      s.data.max_records, "\n", s.data.shard_index, "\n",
                      s.data.num_shards, "\n", s.windowing.bos_name());
}

std::string LmStreamKey(const LmTaskSpec& s) {
  return absl::StrCat(s.kind, "\n", s.model.path, "\n", s.model.fingerprint,
                      "\n", s.model.dtype, "\n", s.model.tokenizer, "\n",
                      s.data.path, "\n", TextSplitName(s.data.split), "\n",
                      s.data.max_records, "\n", s.data.shard_index, "\n",
                      s.data.num_shards, "\n", s.windowing.context_length, "\n",
                      s.windowing.stride, "\n", s.windowing.bos_name());
}

absl::StatusOr<LmStream> BuildLmStream(const LmTaskSpec& spec,
                                       const Tokenizer& tokenizer,
                                       int64_t max_batch_tokens) {
  LmStream out;
  ASSIGN_OR_RETURN(std::vector<TextRecord> records, ReadShard(spec.data));
  out.categories.push_back("all");
  std::map<std::string, int> category_index;
  const Windowing& w = spec.windowing;
  for (const TextRecord& r : records) {
    int category = 0;
    if (!r.category.empty()) {
      auto [it, inserted] = category_index.emplace(
          r.category, static_cast<int>(out.categories.size()));
      if (inserted) out.categories.push_back(r.category);
      category = it->second;
    }
    const std::string where = absl::StrCat(spec.data.path, ":", r.line);
    if (spec.kind == kEvalKind) {
      absl::StatusOr<std::vector<int32_t>> ids =
          tokenizer.Encode(r.text, w.bos);
      if (!ids.ok()) return Annotate(ids.status(), where + ": text");
      const std::vector<TokenWindow> windows =
          MakeWindows(static_cast<int64_t>(ids->size()), w);
      out.record_first_sequence.push_back(
          windows.empty() ? -1 : static_cast<int>(out.sequences.size()));
      for (const TokenWindow& win : windows) {
        LmSequence s;
        s.category = category;
        s.tokens.assign(ids->begin() + win.begin, ids->begin() + win.end);
        s.targets.assign(win.length(), -1);
        for (int64_t j = win.score_begin; j < win.end; ++j) {
          s.targets[j - 1 - win.begin] = (*ids)[j];
        }
        out.sequences.push_back(std::move(s));
      }
      continue;
    }
    // probe
    if (!r.prompt.empty()) {
      absl::StatusOr<std::vector<int32_t>> ids =
          tokenizer.Encode(r.prompt, w.bos);
      if (!ids.ok()) return Annotate(ids.status(), where + ": prompt");
      if (static_cast<int64_t>(ids->size()) > w.context_length) {
        ids->erase(ids->begin(), ids->end() - w.context_length);
      }
      LmSequence s;
      s.category = category;
      s.tokens = std::move(*ids);
      s.targets.assign(s.tokens.size(), -1);
      if (!r.target.empty()) {
        absl::StatusOr<std::vector<int32_t>> target =
            tokenizer.Encode(r.target, BosPolicy::kOff);
        if (!target.ok()) return Annotate(target.status(), where + ": target");
        if (!target->empty()) {
          s.rank_pos = static_cast<int>(s.tokens.size()) - 1;
          s.targets[s.rank_pos] = (*target)[0];
        }
      }
      out.sequences.push_back(std::move(s));
      continue;
    }
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(r.text, w.bos);
    if (!ids.ok()) return Annotate(ids.status(), where + ": text");
    for (size_t b = 0; b < ids->size(); b += w.context_length) {
      const size_t e = std::min(ids->size(), b + w.context_length);
      LmSequence s;
      s.category = category;
      s.tokens.assign(ids->begin() + b, ids->begin() + e);
      s.targets.assign(s.tokens.size(), -1);
      out.sequences.push_back(std::move(s));
    }
  }
  std::map<int64_t, std::vector<int>> by_length;
  for (size_t i = 0; i < out.sequences.size(); ++i) {
    by_length[static_cast<int64_t>(out.sequences[i].tokens.size())].push_back(
        static_cast<int>(i));
  }
  for (const auto& [len, members] : by_length) {
    const size_t per_batch =
        static_cast<size_t>(std::max<int64_t>(1, max_batch_tokens / len));
    for (size_t b = 0; b < members.size(); b += per_batch) {
      LmBatch batch;
      batch.seq = len;
      batch.members.assign(
          members.begin() + b,
          members.begin() + std::min(members.size(), b + per_batch));
      out.batches.push_back(std::move(batch));
    }
  }
  return out;
}

absl::Status AttachProbeToEvalStream(const LmTaskSpec& probe,
                                     const Tokenizer& tokenizer,
                                     LmStream* eval) {
  ASSIGN_OR_RETURN(std::vector<TextRecord> records, ReadShard(probe.data));
  if (records.size() != eval->record_first_sequence.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat(probe.data.path, ": the shard holds ", records.size(),
                     " records for probe and ",
                     eval->record_first_sequence.size(), " for eval"));
  }
  struct Mark {
    int sequence, len, rank_pos;
  };
  std::vector<Mark> marks;
  marks.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const TextRecord& r = records[i];
    const std::string where = absl::StrCat(probe.data.path, ":", r.line);
    if (r.prompt.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(where,
                       ": the record has no prompt (probe chunks its "
                       "text)"));
    }
    const int seq = eval->record_first_sequence[i];
    if (seq < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          where, ": the record's text has no eval window (< 2 tokens)"));
    }
    const LmSequence& window = eval->sequences[seq];
    absl::StatusOr<std::vector<int32_t>> ids =
        tokenizer.Encode(r.prompt, probe.windowing.bos);
    if (!ids.ok()) return Annotate(ids.status(), where + ": prompt");
    const size_t p = ids->size();
    if (p == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": the prompt has no tokens"));
    }
    if (p > static_cast<size_t>(probe.windowing.context_length)) {
      return absl::FailedPreconditionError(absl::StrCat(
          where, ": the prompt's ", p, " tokens exceed probe context_length ",
          probe.windowing.context_length));
    }
    if (p > window.tokens.size() ||
        !std::equal(ids->begin(), ids->end(), window.tokens.begin())) {
      return absl::FailedPreconditionError(absl::StrCat(
          where, ": the prompt's ", p,
          " tokens are not a prefix of the first eval window of the text (",
          window.tokens.size(), " tokens)"));
    }
    int rank_pos = -1;
    if (!r.target.empty()) {
      absl::StatusOr<std::vector<int32_t>> target =
          tokenizer.Encode(r.target, BosPolicy::kOff);
      if (!target.ok()) return Annotate(target.status(), where + ": target");
      if (!target->empty()) {
        rank_pos = static_cast<int>(p) - 1;
        if (window.targets[rank_pos] != (*target)[0]) {
          return absl::FailedPreconditionError(absl::StrCat(
              where, ": the eval target after the prompt (token ",
              window.targets[rank_pos], ") is not the target's first token (",
              (*target)[0], ")"));
        }
      }
    }
    marks.push_back(Mark{seq, static_cast<int>(p), rank_pos});
  }
  for (const Mark& m : marks) {
    eval->sequences[m.sequence].probe_len = m.len;
    eval->sequences[m.sequence].probe_rank_pos = m.rank_pos;
  }
  return absl::OkStatus();
}

engine::ForwardRequest MakeBatchRequest(const LmStream& data,
                                        const LmBatch& batch) {
  engine::ForwardRequest req;
  req.batch = static_cast<int64_t>(batch.members.size());
  req.seq = batch.seq;
  req.tokens.reserve(req.batch * req.seq);
  req.targets.reserve(req.batch * req.seq);
  for (int m : batch.members) {
    const LmSequence& s = data.sequences[m];
    req.tokens.insert(req.tokens.end(), s.tokens.begin(), s.tokens.end());
    req.targets.insert(req.targets.end(), s.targets.begin(), s.targets.end());
  }
  return req;
}

}  // namespace sweepd
