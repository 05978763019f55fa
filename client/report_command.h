// `sweepctl report`: fetches every TaskRecord of a sweep through ListResults
// pages, builds the report model (client/report.h) and writes the
// self-contained HTML file.
//
//   sweepctl report SWEEP --out report.html [--safety-weights BI,VAR,DELTA]
//       [--critical-threshold PCT] [--drop-k 10,14,18] [--ablation-dataset
//       NAME]
//       [--model-config config.json] [--num-layers N] [--title TEXT]
//
// Register it with RegisterCtlCommand(ReportCtlCommand()) before RunSweepctl.
// Stateless; each run borrows the CtlContext's stub and streams.
#ifndef SWEEPD_CLIENT_REPORT_COMMAND_H_
#define SWEEPD_CLIENT_REPORT_COMMAND_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/ctl_commands.h"
#include "client/report.h"
#include "sweepd/v1/coordinator.grpc.pb.h"

namespace sweepd {

struct ReportCommandArgs {
  std::string sweep_id;
  std::string out_path;
  // Everything but layer_types, which come from model_config_path when set.
  ReportOptions options;
  std::string model_config_path;
};

// Parses the arguments after "report". INVALID_ARGUMENT naming the flag for
// unknown flags, missing values, a missing SWEEP or --out, and malformed
// numbers or lists.
absl::StatusOr<ReportCommandArgs> ParseReportArgs(
    const std::vector<std::string>& args);

// Every task of `sweep_id`, in every state, following next_page_token.
// `call_context` makes the ClientContext (with its deadline) of each page's
// call. The gRPC status is kept.
absl::StatusOr<std::vector<sweepd::v1::TaskRecord>> FetchSweepRecords(
    sweepd::v1::Coordinator::StubInterface& stub, const std::string& sweep_id,
    const std::function<std::unique_ptr<grpc::ClientContext>()>& call_context);

// The `report` entry of the sweepctl dispatch table.
CtlCommand ReportCtlCommand();

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_REPORT_COMMAND_H_
