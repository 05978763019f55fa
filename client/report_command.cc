// `sweepctl report`: argument parsing (CLI11, client/ctl_args.h), paging
// through ListResults, writing the HTML file.
#include "client/report_command.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/ctl_args.h"
#include "common/status.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

// ListResults allows up to 5000 per page; 1000 keeps each response a few MB at
// most.
constexpr int kReportPageSize = 1000;

absl::StatusOr<double> ParseDouble(const std::string& flag,
                                   const std::string& text) {
  double value = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(text), &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", text, "\" is not a number"));
  }
  return value;
}

absl::StatusOr<int> ParseInt(const std::string& flag, const std::string& text) {
  int value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", text, "\" is not an integer"));
  }
  return value;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 const std::string& contents) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      return absl::PermissionDeniedError(absl::StrCat("cannot open ", tmp));
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.close();
    if (!out) return absl::DataLossError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::PermissionDeniedError(
        absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

int RunReport(CtlContext& ctx, const std::vector<std::string>& args) {
  auto usage = [&](absl::string_view message) {
    *ctx.env.err << "sweepctl report: " << message
                 << "\nusage: sweepctl report " << ReportCtlCommand().args
                 << "\n(see sweepctl report --help)\n";
    return kCtlExitUsage;
  };
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      const CtlCommand cmd = ReportCtlCommand();
      *ctx.env.out
          << "usage: sweepctl [--coordinator HOST:PORT] [--timeout-s N] report "
          << cmd.args << "\n\n"
          << cmd.summary << "\n\n"
          << cmd.help;
      return kCtlExitOk;
    }
  }
  absl::StatusOr<ReportCommandArgs> parsed = ParseReportArgs(args);
  if (!parsed.ok()) return usage(parsed.status().message());
  auto fail = [&](const absl::Status& status) {
    *ctx.env.err << "sweepctl report: "
                 << absl::StatusCodeToString(status.code()) << ": "
                 << status.message() << "\n";
    return kCtlExitError;
  };
  if (!parsed->model_config_path.empty()) {
    absl::StatusOr<std::string> text = ReadFile(parsed->model_config_path);
    if (!text.ok()) return fail(text.status());
    absl::StatusOr<std::vector<std::string>> types =
        LayerTypesFromConfigJson(*text, parsed->model_config_path);
    if (!types.ok()) return fail(types.status());
    parsed->options.layer_types = *std::move(types);
  }
  if (parsed->options.title.empty()) {
    v1::GetSweepRequest req;
    req.set_sweep_id(parsed->sweep_id);
    v1::SweepStatus status;
    auto call = ctx.CallContext();
    grpc::Status st = ctx.stub->GetSweep(call.get(), req, &status);
    if (!st.ok()) return ctx.RpcError(st);
    parsed->options.title =
        status.name().empty()
            ? absl::StrCat("Sweep ", parsed->sweep_id)
            : absl::StrCat(status.name(), " (", parsed->sweep_id, ")");
  }
  absl::StatusOr<std::vector<v1::TaskRecord>> records = FetchSweepRecords(
      *ctx.stub, parsed->sweep_id, [&ctx] { return ctx.CallContext(); });
  if (!records.ok()) return fail(records.status());
  absl::StatusOr<ReportData> data = BuildReportData(*records, parsed->options);
  if (!data.ok()) return fail(data.status());
  if (data->sweep_id.empty()) data->sweep_id = parsed->sweep_id;
  absl::StatusOr<std::string> html = RenderReportHtml(*data);
  if (!html.ok()) return fail(html.status());
  absl::Status written = WriteFileAtomically(parsed->out_path, *html);
  if (!written.ok()) return fail(written);
  *ctx.env.out << "wrote " << parsed->out_path << ": "
               << ReportChartIds(*data).size() << " charts, "
               << data->num_layers << " layers, " << data->tasks_done << "/"
               << data->tasks_total << " tasks done\n";
  for (const std::string& note : data->notes)
    *ctx.env.out << "note: " << note << "\n";
  return kCtlExitOk;
}

}  // namespace

absl::StatusOr<ReportCommandArgs> ParseReportArgs(
    const std::vector<std::string>& args) {
  ReportCommandArgs out;
  std::vector<std::string> positional;
  std::string weights, critical, drop_k, num_layers;
  CLI::App app;
  AddCtlValueFlag(app, "--out", &out.out_path);
  AddCtlValueFlag(app, "--safety-weights", &weights);
  AddCtlValueFlag(app, "--critical-threshold", &critical);
  AddCtlValueFlag(app, "--drop-k", &drop_k);
  AddCtlValueFlag(app, "--ablation-dataset", &out.options.ablation_dataset);
  AddCtlValueFlag(app, "--model-config", &out.model_config_path);
  AddCtlValueFlag(app, "--num-layers", &num_layers);
  AddCtlValueFlag(app, "--title", &out.options.title);
  RETURN_IF_ERROR(ParseCtlArgs(app, args, &positional));
  if (app.count("--safety-weights") > 0) {
    std::vector<std::string> parts = absl::StrSplit(weights, ',');
    if (parts.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--safety-weights: expected BI,VAR,DELTA (three numbers), got \"",
          weights, "\""));
    }
    ASSIGN_OR_RETURN(out.options.weights.bi,
                     ParseDouble("--safety-weights", parts[0]));
    ASSIGN_OR_RETURN(out.options.weights.bi_var,
                     ParseDouble("--safety-weights", parts[1]));
    ASSIGN_OR_RETURN(out.options.weights.delta,
                     ParseDouble("--safety-weights", parts[2]));
  }
  if (app.count("--critical-threshold") > 0) {
    ASSIGN_OR_RETURN(out.options.critical_delta_pct,
                     ParseDouble("--critical-threshold", critical));
  }
  if (app.count("--drop-k") > 0) {
    out.options.drop_k.clear();
    for (absl::string_view part :
         absl::StrSplit(drop_k, ',', absl::SkipWhitespace())) {
      ASSIGN_OR_RETURN(int k, ParseInt("--drop-k", std::string(part)));
      out.options.drop_k.push_back(k);
    }
  }
  if (app.count("--num-layers") > 0) {
    ASSIGN_OR_RETURN(out.options.num_layers,
                     ParseInt("--num-layers", num_layers));
  }
  RETURN_IF_ERROR(
      CheckPositionalCount(positional, 1, 1, "missing argument SWEEP"));
  out.sweep_id = positional[0];
  if (out.out_path.empty())
    return absl::InvalidArgumentError("--out FILE is required");
  return out;
}

absl::StatusOr<std::vector<v1::TaskRecord>> FetchSweepRecords(
    v1::Coordinator::StubInterface& stub, const std::string& sweep_id,
    const std::function<std::unique_ptr<grpc::ClientContext>()>& call_context) {
  std::vector<v1::TaskRecord> records;
  v1::ListResultsRequest req;
  req.set_sweep_id(sweep_id);
  req.set_page_size(kReportPageSize);
  for (;;) {
    v1::ListResultsResponse resp;
    std::unique_ptr<grpc::ClientContext> call = call_context();
    grpc::Status st = stub.ListResults(call.get(), req, &resp);
    if (!st.ok()) {
      return absl::Status(
          static_cast<absl::StatusCode>(st.error_code()),
          absl::StrCat("ListResults(", sweep_id, "): ", st.error_message()));
    }
    records.insert(records.end(),
                   std::make_move_iterator(resp.mutable_tasks()->begin()),
                   std::make_move_iterator(resp.mutable_tasks()->end()));
    if (resp.next_page_token().empty()) break;
    if (resp.next_page_token() == req.page_token()) {
      return absl::InternalError(absl::StrCat(
          "ListResults(", sweep_id,
          ") returned the same page token twice: ", resp.next_page_token()));
    }
    req.set_page_token(resp.next_page_token());
  }
  return records;
}

CtlCommand ReportCtlCommand() {
  return CtlCommand{
      "report",
      "SWEEP --out FILE [--safety-weights BI,VAR,DELTA] [--critical-threshold "
      "PCT] "
      "[--drop-k K,K,...]",
      "Write a self-contained HTML report (charts, layer profile, drop plan) "
      "of a sweep.",
      "Fetches every task of SWEEP and writes one HTML file that works "
      "offline: the seed-000\n"
      "charts (BI, BI heatmap, residual norms, logit-lens rank, decision "
      "layer, single-layer\n"
      "and block-drop perplexity deltas, safety score), the per-layer profile, "
      "the drop plan\n"
      "and the seed-002 degeneration table. Formulas: docs/REPORTS.md.\n"
      "  --out FILE                 where to write the HTML (required)\n"
      "  --safety-weights a,b,c     weights of n(BI), n(BI variance), "
      "n(max(dppl,0));\n"
      "                             default 0.4,0.2,0.4\n"
      "  --critical-threshold PCT   single-layer dppl (%) above which a layer "
      "is never\n"
      "                             dropped; default 1000\n"
      "  --drop-k K,K,...           drop plan sizes; default 10,14,18\n"
      "  --ablation-dataset NAME    dataset whose deltas feed the score; "
      "default: all pooled\n"
      "  --model-config FILE        config.json to label sliding/full "
      "attention layers\n"
      "  --num-layers N             layer count when no probe ran (needed for "
      "\"all\")\n"
      "  --title TEXT               report title; default: the sweep's name\n",
      RunReport};
}

}  // namespace sweepd
