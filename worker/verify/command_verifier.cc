#include "worker/verify/command_verifier.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "worker/verify/line_process.h"

namespace sweepd::verify {
namespace {

using Json = nlohmann::json;

// At most this much of an offending line goes into an error message.
constexpr size_t kQuoteBytes = 120;
// How long an exited child is given to be reaped once its stdout closed.
constexpr auto kExitGrace = std::chrono::milliseconds(500);

std::string Quote(const std::string& line) {
  if (line.size() <= kQuoteBytes) return line;
  return absl::StrCat(line.substr(0, kQuoteBytes), "...");
}

class CommandVerifier : public Verifier {
 public:
  explicit CommandVerifier(VerifierSpec spec) : spec_(std::move(spec)) {}

  absl::StatusOr<std::vector<VerifyScore>> Score(
      absl::Span<const VerifyItem> items) override {
    std::vector<VerifyScore> out(items.size());
    const size_t batch = static_cast<size_t>(spec_.batch_size);
    for (size_t begin = 0; begin < items.size(); begin += batch) {
      const size_t end = std::min(items.size(), begin + batch);
      ScoreBatch(items, begin, end, &out);
    }
    return out;
  }

  std::string name() const override { return "command"; }

 private:
  // Scores items [begin, end) into (*out)[begin, end).
  void ScoreBatch(absl::Span<const VerifyItem> items, size_t begin, size_t end,
                  std::vector<VerifyScore>* out) {
    const size_t n = end - begin;
    std::vector<bool> answered(n, false);
    size_t num_answered = 0;
    auto fail_unanswered = [&](const std::string& what) {
      for (size_t i = 0; i < n; ++i) {
        if (answered[i]) continue;
        (*out)[begin + i] = VerifyScore{};
        (*out)[begin + i].error = what;
      }
    };
    if (process_ == nullptr) {
      auto started = LineProcess::Start(spec_.command);
      if (!started.ok()) {
        fail_unanswered(
            absl::StrCat("verifier command: ", started.status().message()));
        return;
      }
      process_ = *std::move(started);
    }

    std::string request;
    for (size_t i = begin; i < end; ++i) {
      const VerifyItem& item = items[i];
      request += Json{{"id", i},
                      {"prompt", item.prompt},
                      {"sample", item.sample},
                      {"reference", item.reference},
                      {"category", item.category}}
                     .dump(-1, ' ', false, Json::error_handler_t::replace);
      request += '\n';
    }
    const auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::microseconds(absl::ToInt64Microseconds(spec_.timeout));
    // Responses are taken as they arrive; the first bad line ends the
    // process.
    std::string failure;
    const LineProcess::Exchange exchange =
        process_->Talk(request, n, deadline, [&](const std::string& line) {
          failure = TakeResponse(line, begin, end, &answered, out);
          if (!failure.empty()) return false;
          ++num_answered;
          return true;
        });
    const std::string progress =
        absl::StrCat(" (", num_answered, " of ", n, " responses)");
    if (failure.empty()) {
      switch (exchange.outcome) {
        case LineProcess::Outcome::kComplete:
        case LineProcess::Outcome::kRejected:  // cannot happen without failure
          return;
        case LineProcess::Outcome::kTimedOut:
          failure = absl::StrCat("verifier command timed out after ",
                                 absl::FormatDuration(spec_.timeout), progress);
          break;
        case LineProcess::Outcome::kClosed:
          failure =
              absl::StrCat("verifier command ",
                           process_->WaitForExit(
                               std::chrono::steady_clock::now() + kExitGrace),
                           " after ", num_answered, " of ", n, " responses");
          break;
      }
    } else {
      failure = absl::StrCat("verifier command ", failure, progress);
    }
    process_->Kill();
    const std::string stderr_tail = process_->StderrTail();
    if (!stderr_tail.empty()) {
      absl::StrAppend(&failure, "; its stderr ends: ", Quote(stderr_tail));
    }
    process_.reset();
    fail_unanswered(failure);
  }

  // Records one response line; returns "" or what is wrong with it.
  std::string TakeResponse(const std::string& line, size_t begin, size_t end,
                           std::vector<bool>* answered,
                           std::vector<VerifyScore>* out) {
    Json response = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (response.is_discarded() || !response.is_object()) {
      return absl::StrCat("wrote a line that is not a JSON object: '",
                          Quote(line), "'");
    }
    const auto id_it = response.find("id");
    if (id_it == response.end() || !id_it->is_number_integer()) {
      return absl::StrCat("wrote a response without an integer \"id\": '",
                          Quote(line), "'");
    }
    const int64_t id = id_it->get<int64_t>();
    if (id < static_cast<int64_t>(begin) || id >= static_cast<int64_t>(end)) {
      return absl::StrCat("answered id ", id, ", which is not in the batch [",
                          begin, ", ", end, ")");
    }
    const size_t slot = static_cast<size_t>(id) - begin;
    if ((*answered)[slot]) {
      return absl::StrCat("answered id ", id, " twice");
    }
    VerifyScore score;
    const auto error_it = response.find("error");
    if (error_it != response.end() && !error_it->is_null()) {
      score.error = absl::StrCat(
          "verifier: ", error_it->is_string() ? error_it->get<std::string>()
                                              : error_it->dump());
      if (score.error == "verifier: ") score.error = "verifier: (empty error)";
    } else {
      const auto score_it = response.find("score");
      if (score_it == response.end() || !score_it->is_number() ||
          !std::isfinite(score_it->get<double>())) {
        return absl::StrCat("wrote a response without a finite \"score\": '",
                            Quote(line), "'");
      }
      score.score = score_it->get<double>();
      const auto pass_it = response.find("pass");
      if (pass_it != response.end() && !pass_it->is_null()) {
        if (!pass_it->is_boolean()) {
          return absl::StrCat("wrote a non-boolean \"pass\": '", Quote(line),
                              "'");
        }
        score.pass = pass_it->get<bool>();
      } else if (spec_.pass_threshold.has_value()) {
        score.pass = score.score >= *spec_.pass_threshold;
      } else {
        score.pass = score.score > 0;
      }
    }
    (*answered)[slot] = true;
    (*out)[static_cast<size_t>(id)] = std::move(score);
    return "";
  }

  const VerifierSpec spec_;
  std::unique_ptr<LineProcess> process_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Verifier>> CreateCommandVerifier(
    const VerifierSpec& spec) {
  if (spec.command.empty() || spec.command[0].empty()) {
    return absl::InvalidArgumentError(
        "verifier.command: kind 'command' needs a command line (argv)");
  }
  if (spec.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("verifier.timeout: must be positive, got ",
                     absl::FormatDuration(spec.timeout)));
  }
  if (spec.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "verifier.batch_size: must be >= 1, got ", spec.batch_size));
  }
  return std::make_unique<CommandVerifier>(spec);
}

}  // namespace sweepd::verify
