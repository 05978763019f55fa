#include "client/ctl_commands.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/best_of_k_table.h"
#include "client/ctl_args.h"
#include "client/ctl_format.h"
#include "client/sample_rows.h"
#include "client/spec_loader.h"
#include "coordinator/task_states.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/tls_config.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

constexpr int kResultsPageSize = 1000;
constexpr int kSweepsPageSize = 500;
constexpr int64_t kWatchBackoffStartMs = 250;
constexpr int64_t kWatchBackoffMaxMs = 10'000;

// Flags a command accepts; any other flag is a usage error.
struct FlagSpec {
  std::set<std::string> value_flags;  // "--format" takes a value
  std::set<std::string> bool_flags;   // "--watch"
  size_t min_positional = 0;
  size_t max_positional = 0;
};

struct ParsedArgs {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> values;
  std::set<std::string> bools;
};

// Parses a command's arguments with CLI11 (client/ctl_args.h).
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const FlagSpec& spec) {
  CLI::App app;
  std::map<std::string, std::vector<std::string>> values;
  std::map<std::string, bool> bools;
  for (const std::string& name : spec.value_flags) {
    AddCtlListFlag(app, name, &values[name]);
  }
  for (const std::string& name : spec.bool_flags) {
    AddCtlBoolFlag(app, name, &bools[name]);
  }
  ParsedArgs out;
  absl::Status parsed = ParseCtlArgs(app, args, &out.positional);
  if (!parsed.ok()) return parsed;
  for (const auto& [name, list] : values) {
    for (const std::string& value : list) out.values.emplace(name, value);
  }
  for (const auto& [name, set] : bools) {
    if (set) out.bools.insert(name);
  }
  absl::Status count =
      CheckPositionalCount(out.positional, spec.min_positional,
                           spec.max_positional, "missing argument");
  if (!count.ok()) return count;
  return out;
}

const CtlCommand* FindCommand(const std::string& name);

int Usage(const CtlContext& ctx, absl::string_view message) {
  const CtlCommand* cmd = FindCommand(ctx.command);
  *ctx.env.err << "sweepctl " << ctx.command << ": " << message << "\n";
  if (cmd != nullptr) {
    *ctx.env.err << "usage: sweepctl " << cmd->name << " " << cmd->args
                 << "\n(see sweepctl " << cmd->name << " --help)\n";
  }
  return kCtlExitUsage;
}

void PrintCommandHelp(const CtlCommand& cmd, std::ostream& out) {
  out << "usage: sweepctl [--coordinator HOST:PORT] [--timeout-s N] "
      << cmd.name << " " << cmd.args << "\n\n"
      << cmd.summary << "\n";
  if (!cmd.help.empty()) out << "\n" << cmd.help;
}

void PrintGlobalHelp(std::ostream& out) {
  out << "usage: sweepctl [--coordinator HOST:PORT] [--timeout-s N] "
         "[--tls-ca PEM [--tls-cert PEM --tls-key PEM]] [--token-file PATH] "
         "COMMAND [ARGS]\n\n"
         "The sweepd client: submit sweeps, follow them, read results.\n\n"
         "Commands:\n";
  size_t width = 0;
  for (const CtlCommand& c : CtlCommands())
    width = std::max(width, c.name.size());
  for (const CtlCommand& c : CtlCommands()) {
    out << "  " << c.name << std::string(width - c.name.size() + 2, ' ')
        << c.summary << "\n";
  }
  out << "\nGlobal flags:\n"
         "  --coordinator HOST:PORT  coordinator address (default: "
         "$SWEEPD_COORDINATOR, else "
      << kDefaultCoordinatorAddress
      << ")\n"
         "  --timeout-s N            deadline of every call in seconds "
         "(default 30)\n"
         "  --tls-ca PEM             connect with TLS, verifying sweepd's "
         "certificate against\n"
         "                           this CA bundle\n"
         "  --tls-cert PEM, --tls-key PEM  client certificate and key (mutual "
         "TLS)\n"
         "  --token-file PATH        bearer token (first line) sent with every "
         "call (default:\n"
         "                           $SWEEPD_TOKEN); needs TLS, never sent in "
         "plaintext\n"
         "  --help                   this help; `sweepctl COMMAND --help` for "
         "a command\n\n"
         "Exit codes: 0 ok, 1 RPC/server/input error, 2 usage error; watch: 3 "
         "sweep failed,\n"
         "4 sweep cancelled.\n";
}

// Errors after which reconnecting a watch stream can help.
bool Retryable(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return true;
    default:
      return false;
  }
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// ---- Commands
// ----------------------------------------------------------------------------

int RunSubmit(CtlContext& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs(args, {{}, {"--watch"}, 1, 1});
  if (!parsed.ok()) return Usage(ctx, parsed.status().message());
  auto spec = LoadSweepSpecFile(parsed->positional[0]);
  if (!spec.ok()) {
    *ctx.env.err << "sweepctl submit: "
                 << absl::StatusCodeToString(spec.status().code()) << ": "
                 << spec.status().message() << "\n";
    return kCtlExitError;
  }
  v1::SubmitSweepRequest req;
  *req.mutable_spec() = *std::move(spec);
  v1::SubmitSweepResponse resp;
  auto call = ctx.CallContext();
  grpc::Status st = ctx.stub->SubmitSweep(call.get(), req, &resp);
  if (!st.ok()) return ctx.RpcError(st);
  *ctx.env.out << (resp.already_existed() ? "sweep already exists: "
                                          : "submitted sweep ")
               << resp.sweep_id() << " (" << resp.total_tasks() << " tasks)\n";
  if (parsed->bools.count("--watch"))
    return WatchSweepProgress(ctx, resp.sweep_id());
  return kCtlExitOk;
}

int RunStatus(CtlContext& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs(args, {{}, {}, 0, 1});
  if (!parsed.ok()) return Usage(ctx, parsed.status().message());
  if (parsed->positional.empty()) {
    // Page by page (without specs), so no listing outgrows a message.
    std::vector<v1::SweepStatus> sweeps;
    v1::ListSweepsRequest req;
    req.set_page_size(kSweepsPageSize);
    do {
      v1::ListSweepsResponse resp;
      auto call = ctx.CallContext();
      grpc::Status st = ctx.stub->ListSweeps(call.get(), req, &resp);
      if (!st.ok()) return ctx.RpcError(st);
      for (v1::SweepStatus& s : *resp.mutable_sweeps()) {
        sweeps.push_back(std::move(s));
      }
      req.set_page_token(resp.next_page_token());
    } while (!req.page_token().empty());
    *ctx.env.out << FormatSweepTable(sweeps);
    return kCtlExitOk;
  }
  v1::GetSweepRequest req;
  req.set_sweep_id(parsed->positional[0]);
  v1::SweepStatus resp;
  auto call = ctx.CallContext();
  grpc::Status st = ctx.stub->GetSweep(call.get(), req, &resp);
  if (!st.ok()) return ctx.RpcError(st);
  *ctx.env.out << FormatSweepDetail(resp);
  return kCtlExitOk;
}

int RunWatch(CtlContext& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs(args, {{}, {}, 1, 1});
  if (!parsed.ok()) return Usage(ctx, parsed.status().message());
  return WatchSweepProgress(ctx, parsed->positional[0]);
}

int RunResults(CtlContext& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs(
      args, {{"--format", "--state", "--bootstrap", "--level", "--seed"},
             {"--samples", "--best-of-k", "--per-prompt"},
             1,
             1});
  if (!parsed.ok()) return Usage(ctx, parsed.status().message());
  ResultFormat format = ResultFormat::kTable;
  auto last_value = [&](const std::string& flag) -> const std::string* {
    auto [first, last] = parsed->values.equal_range(flag);
    if (first == last) return nullptr;
    return &std::prev(last)->second;
  };
  if (const std::string* f_text = last_value("--format")) {
    auto f = ParseResultFormat(*f_text);
    if (!f.ok()) return Usage(ctx, f.status().message());
    format = *f;
  }
  const bool samples = parsed->bools.count("--samples") > 0;
  const bool best_of_k = parsed->bools.count("--best-of-k") > 0;
  const bool per_prompt = parsed->bools.count("--per-prompt") > 0;
  if (samples && best_of_k) {
    return Usage(ctx, "--samples and --best-of-k exclude each other");
  }
  BootstrapOptions bootstrap;
  const std::string* b_text = last_value("--bootstrap");
  const std::string* l_text = last_value("--level");
  const std::string* s_text = last_value("--seed");
  if (!best_of_k && (per_prompt || b_text || l_text || s_text)) {
    return Usage(ctx,
                 "--per-prompt, --bootstrap, --level and --seed need "
                 "--best-of-k");
  }
  if (b_text != nullptr && (!absl::SimpleAtoi(*b_text, &bootstrap.resamples) ||
                            bootstrap.resamples < 1)) {
    return Usage(ctx, absl::StrCat("--bootstrap must be a number of "
                                   "resamples >= 1, got '",
                                   *b_text, "'"));
  }
  if (l_text != nullptr && (!absl::SimpleAtod(*l_text, &bootstrap.level) ||
                            !(bootstrap.level > 0 && bootstrap.level < 1))) {
    return Usage(
        ctx, absl::StrCat("--level must be in (0, 1), got '", *l_text, "'"));
  }
  if (s_text != nullptr && !absl::SimpleAtoi(*s_text, &bootstrap.seed)) {
    return Usage(ctx, absl::StrCat("--seed must be an unsigned integer, got '",
                                   *s_text, "'"));
  }
  v1::ListResultsRequest req;
  req.set_sweep_id(parsed->positional[0]);
  req.set_page_size(kResultsPageSize);
  auto [first, last] = parsed->values.equal_range("--state");
  for (auto it = first; it != last; ++it) {
    for (absl::string_view name :
         absl::StrSplit(it->second, ',', absl::SkipEmpty())) {
      auto state = ParseTaskState(std::string(name));
      if (!state.ok()) return Usage(ctx, state.status().message());
      req.add_states(*state);
    }
  }
  std::vector<v1::TaskRecord> records;
  for (;;) {
    v1::ListResultsResponse resp;
    auto call = ctx.CallContext();
    grpc::Status st = ctx.stub->ListResults(call.get(), req, &resp);
    if (!st.ok()) return ctx.RpcError(st);
    for (v1::TaskRecord& r : *resp.mutable_tasks()) {
      if (r.sweep_id().empty()) r.set_sweep_id(req.sweep_id());
      records.push_back(std::move(r));
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  if (samples) {
    WriteSamples(CollectSamples(records), format, *ctx.env.out);
    return kCtlExitOk;
  }
  if (best_of_k) {
    absl::StatusOr<std::vector<PointBestOfK>> curves =
        ComputeBestOfKTable(CollectSamples(records), bootstrap);
    if (!curves.ok()) {
      *ctx.env.err << "sweepctl results: "
                   << absl::StatusCodeToString(curves.status().code()) << ": "
                   << curves.status().message() << "\n";
      return kCtlExitError;
    }
    WriteBestOfK(*curves, per_prompt, bootstrap.level, format, *ctx.env.out);
    return kCtlExitOk;
  }
  std::vector<ResultRow> rows;
  for (const v1::TaskRecord& r : records) {
    std::vector<ResultRow> more = TidyRows(r);
    rows.insert(rows.end(), std::make_move_iterator(more.begin()),
                std::make_move_iterator(more.end()));
  }
  WriteResults(rows, format, *ctx.env.out);
  return kCtlExitOk;
}

int RunCancel(CtlContext& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs(args, {{}, {}, 1, 1});
  if (!parsed.ok()) return Usage(ctx, parsed.status().message());
  v1::CancelSweepRequest req;
  req.set_sweep_id(parsed->positional[0]);
  v1::CancelSweepResponse resp;
  auto call = ctx.CallContext();
  grpc::Status st = ctx.stub->CancelSweep(call.get(), req, &resp);
  if (!st.ok()) return ctx.RpcError(st);
  *ctx.env.out << "cancelled sweep " << req.sweep_id() << " ("
               << resp.cancelled_tasks() << " tasks cancelled)\n";
  return kCtlExitOk;
}

int RunWorkers(CtlContext& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs(args, {{}, {}, 0, 0});
  if (!parsed.ok()) return Usage(ctx, parsed.status().message());
  v1::ListWorkersResponse resp;
  auto call = ctx.CallContext();
  grpc::Status st =
      ctx.stub->ListWorkers(call.get(), v1::ListWorkersRequest(), &resp);
  if (!st.ok()) return ctx.RpcError(st);
  std::vector<v1::WorkerInfo> workers(resp.workers().begin(),
                                      resp.workers().end());
  *ctx.env.out << FormatWorkersTable(workers, ctx.env.clock->NowMs());
  return kCtlExitOk;
}

std::vector<CtlCommand>& MutableCommands() {
  static auto* commands = new std::vector<CtlCommand>{
      {"submit", "FILE [--watch]",
       "Submit a sweep spec (YAML or JSON); idempotent.",
       "Reads FILE (.yaml/.yml/.json), checks every field against the spec "
       "schema and submits\n"
       "it. Submitting an identical sweep again returns the existing sweep.\n"
       "  --watch   follow the sweep's progress afterwards (as `sweepctl "
       "watch`)\n",
       RunSubmit},
      {"status", "[SWEEP]",
       "Show one sweep in detail, or a table of all sweeps.", "", RunStatus},
      {"watch", "SWEEP", "Follow a sweep's progress until it ends.",
       "Shows done/total, failed, running, the rate (tasks/s over the last 30 "
       "s) and the ETA.\n"
       "Redraws one line on a terminal, prints one line per update otherwise. "
       "Reconnects when\n"
       "the stream breaks. Exits 0 when the sweep is done, 3 when it failed, 4 "
       "when cancelled.\n",
       RunWatch},
      {"results",
       "SWEEP [--format table|csv|json] [--state STATE[,STATE]] [--samples | "
       "--best-of-k [--per-prompt] [--bootstrap B] [--level L] [--seed S]]",
       "Print a sweep's results, one row per metric (or its samples, or "
       "best-of-k curves).",
       "Columns: sweep_id, task_key, index, state, interventions, params, "
       "seed, dataset,\n"
       "metric, one column per metric label, value, error (tasks without "
       "metrics get one row).\n"
       "  --format      table (default), csv, or json (an array of objects)\n"
       "  --state       only tasks in these states: pending, leased, done, "
       "failed, cancelled\n"
       "                (repeatable or comma-separated)\n"
       "Generate and canary sweeps (docs/GENERATION.md):\n"
       "  --samples     every kept sample, one row each: task, stage, "
       "interventions, params,\n"
       "                dataset, prompt_id, category, sample_index, "
       "num_tokens, finish_reason,\n"
       "                logprob_sum, score, pass, verifier_error, text\n"
       "  --best-of-k   pass@k, expected best score and selected-sample "
       "accuracy for every\n"
       "                k <= N, from the kept samples, per grid point (stage, "
       "interventions,\n"
       "                params): the mean over prompts with a bootstrap "
       "interval; samples\n"
       "                whose verifier errored are left out and counted\n"
       "  --per-prompt  also one curve per prompt\n"
       "  --bootstrap B resamples of the prompts (default 1000); --level L "
       "(default 0.95);\n"
       "                --seed S (default 24301): the same seed gives the same "
       "intervals\n",
       RunResults},
      {"cancel", "SWEEP", "Cancel a sweep's unfinished tasks.", "", RunCancel},
      {"workers", "", "List the registered workers.", "", RunWorkers},
  };
  return *commands;
}

const CtlCommand* FindCommand(const std::string& name) {
  for (const CtlCommand& c : CtlCommands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

}  // namespace

std::unique_ptr<grpc::ClientContext> CtlContext::CallContext() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
  return ctx;
}

int CtlContext::RpcError(const grpc::Status& status) const {
  *env.err << "sweepctl " << command << ": " << CodeName(status.error_code())
           << ": " << status.error_message() << " (coordinator " << coordinator
           << ")\n";
  return kCtlExitError;
}

const std::vector<CtlCommand>& CtlCommands() { return MutableCommands(); }

void RegisterCtlCommand(CtlCommand command) {
  auto& commands = MutableCommands();
  for (CtlCommand& c : commands) {
    if (c.name == command.name) {
      c = std::move(command);
      return;
    }
  }
  commands.push_back(std::move(command));
}

std::string ResolveCoordinatorAddress(const std::string& flag_value,
                                      const std::string& env_value) {
  if (!flag_value.empty()) return flag_value;
  if (!env_value.empty()) return env_value;
  return kDefaultCoordinatorAddress;
}

int WatchSweepProgress(CtlContext& ctx, const std::string& sweep_id) {
  std::ostream& out = *ctx.env.out;
  ProgressMeter meter(ctx.env.clock);
  bool drew = false;
  std::string blocked;  // the last blocked_reason shown
  auto render = [&](const v1::SweepStatus& s) {
    if (s.blocked_reason() != blocked) {
      // Why pending tasks wait (no live worker runs their kind), on its own
      // line, once per change.
      if (ctx.env.out_is_tty && drew) out << "\n";
      drew = false;
      blocked = s.blocked_reason();
      out << (blocked.empty()
                  ? std::string("unblocked: a capable worker is live")
                  : absl::StrCat("blocked: ", blocked))
          << "\n";
    }
    meter.Observe(s);
    if (ctx.env.out_is_tty) {
      out << "\r" << meter.Line() << "\x1b[K" << std::flush;
    } else {
      out << meter.Line() << "\n" << std::flush;
    }
    drew = true;
  };
  auto end_line = [&]() {
    if (ctx.env.out_is_tty && drew) out << "\n";
    drew = false;
  };
  auto finish = [&](const v1::SweepStatus& s) {
    end_line();
    const auto& c = s.counts();
    out << "sweep " << sweep_id << " " << SweepStateName(s.state()) << ": "
        << c.done() << "/" << c.total() << " done, " << c.failed()
        << " failed, " << c.cancelled() << " cancelled\n";
    if (s.state() == v1::SWEEP_STATE_DONE) return kCtlExitOk;
    return s.state() == v1::SWEEP_STATE_FAILED ? kCtlExitSweepFailed
                                               : kCtlExitSweepCancelled;
  };

  v1::WatchSweepRequest req;
  req.set_sweep_id(sweep_id);
  v1::GetSweepRequest get_req;
  get_req.set_sweep_id(sweep_id);
  int64_t backoff_ms = kWatchBackoffStartMs;
  for (;;) {
    // No overall deadline: a sweep may run for days. A broken stream is
    // reconnected below.
    grpc::ClientContext stream_ctx;
    auto reader = ctx.stub->WatchSweep(&stream_ctx, req);
    v1::SweepEvent event;
    while (reader->Read(&event)) {
      backoff_ms = kWatchBackoffStartMs;
      render(event.status());
      if (IsFinalSweepState(event.status().state())) {
        stream_ctx.TryCancel();
        reader->Finish();
        return finish(event.status());
      }
    }
    const grpc::Status st = reader->Finish();
    if (!st.ok() && !Retryable(st.error_code())) {
      end_line();
      return ctx.RpcError(st);
    }
    // The stream ended without a final state, or broke: ask directly, then
    // reconnect.
    v1::SweepStatus status;
    auto call = ctx.CallContext();
    const grpc::Status gs = ctx.stub->GetSweep(call.get(), get_req, &status);
    if (gs.ok()) {
      if (IsFinalSweepState(status.state())) {
        render(status);
        return finish(status);
      }
    } else if (!Retryable(gs.error_code())) {
      end_line();
      return ctx.RpcError(gs);
    }
    if (!st.ok() || !gs.ok()) {
      const grpc::Status& why = st.ok() ? gs : st;
      end_line();
      *ctx.env.err << "sweepctl watch: stream interrupted ("
                   << CodeName(why.error_code()) << ": " << why.error_message()
                   << "); reconnecting in " << backoff_ms << " ms\n";
    }
    ctx.env.clock->SleepUntilMs(ctx.env.clock->NowMs() + backoff_ms);
    backoff_ms = std::min(backoff_ms * 2, kWatchBackoffMaxMs);
  }
}

int RunSweepctl(const std::vector<std::string>& args, const CtlEnv& env) {
  // Global flags may stand anywhere; everything else, in order, is the
  // command and its arguments.
  std::string coordinator_flag;
  std::string timeout_text;
  std::vector<std::string> rest;
  CLI::App app;
  AddCtlValueFlag(app, "--coordinator", &coordinator_flag);
  AddCtlValueFlag(app, "--timeout-s", &timeout_text);
  ClientTlsOptions tls;
  std::string token_file;
  AddCtlValueFlag(app, "--tls-ca", &tls.ca_file);
  AddCtlValueFlag(app, "--tls-cert", &tls.cert_file);
  AddCtlValueFlag(app, "--tls-key", &tls.key_file);
  AddCtlValueFlag(app, "--token-file", &token_file);
  absl::Status parsed = ParseCtlArgs(app, args, nullptr, &rest);
  if (!parsed.ok()) {
    *env.err << "sweepctl: " << parsed.message() << "\n";
    return kCtlExitUsage;
  }
  double timeout_s = 30;
  if (!timeout_text.empty() &&
      (!absl::SimpleAtod(timeout_text, &timeout_s) || !(timeout_s > 0))) {
    *env.err
        << "sweepctl: --timeout-s must be a positive number of seconds, got '"
        << timeout_text << "'\n";
    return kCtlExitUsage;
  }
  if (rest.empty()) {
    PrintGlobalHelp(*env.err);
    return kCtlExitUsage;
  }
  if (rest[0] == "--help" || rest[0] == "-h") {
    PrintGlobalHelp(*env.out);
    return kCtlExitOk;
  }
  if (rest[0] == "help") {
    if (rest.size() > 1) {
      if (const CtlCommand* c = FindCommand(rest[1])) {
        PrintCommandHelp(*c, *env.out);
        return kCtlExitOk;
      }
      *env.err << "sweepctl: unknown command '" << rest[1] << "'\n";
      return kCtlExitUsage;
    }
    PrintGlobalHelp(*env.out);
    return kCtlExitOk;
  }
  const CtlCommand* cmd = FindCommand(rest[0]);
  if (cmd == nullptr) {
    *env.err << "sweepctl: unknown command '" << rest[0]
             << "' (see sweepctl --help)\n";
    return kCtlExitUsage;
  }
  const std::vector<std::string> cmd_args(rest.begin() + 1, rest.end());
  if (std::find(cmd_args.begin(), cmd_args.end(), "--help") != cmd_args.end() ||
      std::find(cmd_args.begin(), cmd_args.end(), "-h") != cmd_args.end()) {
    PrintCommandHelp(*cmd, *env.out);
    return kCtlExitOk;
  }

  CtlContext ctx;
  ctx.env = env;
  ctx.command = cmd->name;
  ctx.coordinator =
      ResolveCoordinatorAddress(coordinator_flag, env.env_coordinator);
  ctx.timeout = absl::Seconds(timeout_s);
  absl::StatusOr<std::string> token =
      ReadClientToken(token_file, env.env_token);
  if (!token.ok()) {
    *env.err << "sweepctl: " << token.status().message() << "\n";
    return kCtlExitUsage;
  }
  tls.token = *token;
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      MakeChannelCredentials(tls);
  if (!creds.ok()) {
    *env.err << "sweepctl: " << creds.status().message() << "\n";
    return kCtlExitUsage;
  }
  auto channel = grpc::CreateChannel(ctx.coordinator, *creds);
  std::unique_ptr<v1::Coordinator::Stub> stub =
      v1::Coordinator::NewStub(channel);
  ctx.stub = stub.get();
  return cmd->run(ctx, cmd_args);
}

}  // namespace sweepd
