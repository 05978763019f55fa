// `sweepctl artifacts list|fetch|gc`. See artifacts_command.h.
#include "client/artifacts_command.h"

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/ctl_args.h"
#include "client/ctl_format.h"
#include "common/artifact_store.h"
#include "common/hash.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

int UsageError(CtlContext& ctx, absl::string_view message) {
  *ctx.env.err << "sweepctl " << ctx.command << ": " << message << "\n";
  return kCtlExitUsage;
}

int LocalError(CtlContext& ctx, const absl::Status& status) {
  *ctx.env.err << "sweepctl " << ctx.command << ": "
               << absl::StatusCodeToString(status.code()) << ": "
               << status.message() << "\n";
  return kCtlExitError;
}

int RunList(CtlContext& ctx, const std::vector<std::string>& args) {
  CLI::App app;
  std::string sweep, format_name = "table";
  AddCtlValueFlag(app, "--sweep", &sweep);
  AddCtlValueFlag(app, "--format", &format_name);
  std::vector<std::string> positional;
  absl::Status parsed = ParseCtlArgs(app, args, &positional);
  if (parsed.ok()) parsed = CheckPositionalCount(positional, 0, 0, "");
  absl::StatusOr<ResultFormat> format = ParseResultFormat(format_name);
  if (parsed.ok()) parsed = format.status();
  if (!parsed.ok()) return UsageError(ctx, parsed.message());

  const std::vector<std::string> header = {"sweep_id", "task_key", "index",
                                           "stage",    "name",     "bytes",
                                           "sha256",   "path"};
  std::vector<std::vector<std::string>> rows;
  v1::ListArtifactsRequest req;
  req.set_sweep_id(sweep);
  while (true) {
    v1::ListArtifactsResponse resp;
    auto call = ctx.CallContext();
    grpc::Status st = ctx.stub->ListArtifacts(call.get(), req, &resp);
    if (!st.ok()) return ctx.RpcError(st);
    for (const v1::ArtifactListing& a : resp.artifacts()) {
      rows.push_back({a.sweep_id(), a.task_key(), absl::StrCat(a.task_index()),
                      a.stage(), a.name(), absl::StrCat(a.bytes()), a.sha256(),
                      a.path()});
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  std::ostream& out = *ctx.env.out;
  switch (*format) {
    case ResultFormat::kTable:
      out << FormatTable(header, rows);
      break;
    case ResultFormat::kCsv:
      WriteCsv(header, rows, out);
      break;
    case ResultFormat::kJson: {
      nlohmann::json array = nlohmann::json::array();
      for (const auto& row : rows) {
        nlohmann::json o;
        for (size_t i = 0; i < header.size(); ++i) {
          if (header[i] == "index" || header[i] == "bytes") {
            o[header[i]] = std::stoll(row[i]);
          } else {
            o[header[i]] = row[i];
          }
        }
        array.push_back(std::move(o));
      }
      out << array.dump(2) << "\n";
      break;
    }
  }
  return kCtlExitOk;
}

// The fetch stream's timeout: cancels the call once no chunk has arrived for
// `idle` (--timeout-s). The stream as a whole has no deadline, so an object
// of gigabytes completes at any rate as long as it keeps coming. Its thread
// ends with the object.
class IdleWatchdog {
 public:
  IdleWatchdog(grpc::ClientContext* call, absl::Duration idle)
      : call_(call),
        idle_(idle),
        last_(absl::Now()),
        thread_([this] { Run(); }) {}
  ~IdleWatchdog() {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    thread_.join();
  }
  void Progress() {
    absl::MutexLock lock(&mu_);
    last_ = absl::Now();
  }
  bool fired() const {
    absl::MutexLock lock(&mu_);
    return fired_;
  }

 private:
  void Run() {
    absl::MutexLock lock(&mu_);
    while (!done_) {
      const absl::Time deadline = last_ + idle_;
      if (absl::Now() >= deadline) {
        fired_ = true;
        call_->TryCancel();
        return;
      }
      mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
    }
  }

  grpc::ClientContext* const call_;
  const absl::Duration idle_;
  mutable absl::Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the rest is initialised
};

int RunFetch(CtlContext& ctx, const std::vector<std::string>& args) {
  CLI::App app;
  std::string out_path;
  AddCtlValueFlag(app, "-o,--out", &out_path);
  std::vector<std::string> positional;
  absl::Status parsed = ParseCtlArgs(app, args, &positional);
  if (parsed.ok()) {
    parsed = CheckPositionalCount(positional, 1, 1, "missing argument PATH");
  }
  if (parsed.ok() && out_path.empty()) {
    parsed = absl::InvalidArgumentError("-o FILE is required");
  }
  if (!parsed.ok()) return UsageError(ctx, parsed.message());
  const std::string& path = positional[0];
  if (!IsArtifactObjectPath(path)) {
    return UsageError(ctx, absl::StrCat("'", path,
                                        "' is not an artifact path "
                                        "(objects/<aa>/<sha256>; see "
                                        "`sweepctl artifacts list`)"));
  }
  const std::string expected = path.substr(path.rfind('/') + 1);

  // Written aside and renamed only once verified: FILE is never a torn or
  // corrupt copy.
  const std::string partial = out_path + ".partial";
  std::ofstream file(partial, std::ios::binary | std::ios::trunc);
  if (!file) {
    const int err = errno;
    return LocalError(
        ctx, absl::ErrnoToStatus(err, absl::StrCat("cannot write ", partial)));
  }
  v1::FetchArtifactRequest req;
  req.set_path(path);
  grpc::ClientContext call;  // no deadline: the watchdog bounds idle time
  v1::ArtifactChunk chunk;
  Sha256 hash;
  int64_t received = 0, total = -1;
  std::string announced;
  absl::Status local;
  grpc::Status st;
  bool stalled = false;
  {
    IdleWatchdog watchdog(&call, ctx.timeout);
    auto reader = ctx.stub->FetchArtifact(&call, req);
    while (reader->Read(&chunk)) {
      watchdog.Progress();
      if (total < 0) {
        total = chunk.total_bytes();
        announced = chunk.sha256();
      }
      if (local.ok() && chunk.offset() != received) {
        local = absl::DataLossError(absl::StrCat(
            "chunk at offset ", chunk.offset(), " after ", received, " bytes"));
      }
      hash.Update(chunk.data());
      file.write(chunk.data().data(),
                 static_cast<std::streamsize>(chunk.data().size()));
      received += static_cast<int64_t>(chunk.data().size());
    }
    st = reader->Finish();
    stalled = !st.ok() && watchdog.fired();
  }
  file.close();
  if (stalled) {
    std::remove(partial.c_str());
    return LocalError(
        ctx, absl::DeadlineExceededError(absl::StrCat(
                 "no data from sweepd for ", absl::FormatDuration(ctx.timeout),
                 " after ", received, " bytes of ", path,
                 " (--timeout-s bounds the time between chunks)")));
  }
  if (!st.ok()) {
    std::remove(partial.c_str());
    return ctx.RpcError(st);
  }
  const std::string actual = hash.HexDigest();
  if (local.ok() && !file) {
    local = absl::InternalError(absl::StrCat("writing ", partial, " failed"));
  }
  if (local.ok() &&
      (actual != expected || announced != expected || received != total)) {
    local = absl::DataLossError(
        absl::StrCat("artifact ", path, ": received ", received, " of ", total,
                     " bytes hashing to ", actual, ", expected ", expected));
  }
  if (local.ok() && std::rename(partial.c_str(), out_path.c_str()) != 0) {
    local = absl::InternalError(
        absl::StrCat("rename ", partial, " -> ", out_path, " failed"));
  }
  if (!local.ok()) {
    std::remove(partial.c_str());
    return LocalError(ctx, local);
  }
  *ctx.env.out << "fetched " << path << " (" << received
               << " bytes, sha256 verified) to " << out_path << "\n";
  return kCtlExitOk;
}

int RunGc(CtlContext& ctx, const std::vector<std::string>& args) {
  CLI::App app;
  bool dry_run = false, do_delete = false;
  std::string min_age;
  AddCtlBoolFlag(app, "--dry-run", &dry_run);
  AddCtlBoolFlag(app, "--delete", &do_delete);
  AddCtlValueFlag(app, "--min-age-s", &min_age);
  std::vector<std::string> positional;
  absl::Status parsed = ParseCtlArgs(app, args, &positional);
  if (parsed.ok()) parsed = CheckPositionalCount(positional, 0, 0, "");
  if (parsed.ok() && dry_run && do_delete) {
    parsed = absl::InvalidArgumentError(
        "--dry-run and --delete exclude each other (without --delete, gc "
        "only counts)");
  }
  int64_t min_age_s = 0;
  if (parsed.ok() && !min_age.empty() &&
      (!absl::SimpleAtoi(min_age, &min_age_s) || min_age_s < 1)) {
    parsed = absl::InvalidArgumentError(absl::StrCat(
        "--min-age-s must be a whole number of seconds >= 1, got '", min_age,
        "'"));
  }
  if (!parsed.ok()) return UsageError(ctx, parsed.message());
  // Deleting is explicit: a DONE task never runs again, so an object deleted
  // by mistake is lost for good.
  v1::CollectArtifactGarbageRequest req;
  req.set_dry_run(!do_delete);
  req.set_min_age_seconds(min_age_s);
  v1::CollectArtifactGarbageResponse resp;
  auto call = ctx.CallContext();
  grpc::Status st = ctx.stub->CollectArtifactGarbage(call.get(), req, &resp);
  if (!st.ok()) return ctx.RpcError(st);
  const char* verb = resp.dry_run() ? "would delete" : "deleted";
  *ctx.env.out << (resp.dry_run() ? "dry run: " : "") << verb << " "
               << resp.objects_deleted() << " objects (" << resp.bytes_deleted()
               << " bytes) and " << resp.tmp_files_deleted() << " temp files ("
               << resp.tmp_bytes_deleted() << " bytes); kept "
               << resp.objects_kept() << " objects (" << resp.bytes_kept()
               << " bytes), " << resp.objects_too_young()
               << " of them unreferenced but younger than the minimum age; "
               << resp.referenced() << " paths referenced by the ledger, "
               << resp.checkpoints() << " checkpoints\n";
  if (resp.dry_run()) {
    *ctx.env.out << "nothing was deleted; run `sweepctl artifacts gc --delete"
                 << (min_age.empty() ? "" : " --min-age-s " + min_age)
                 << "` to delete\n";
  }
  return kCtlExitOk;
}

int RunArtifacts(CtlContext& ctx, const std::vector<std::string>& args) {
  if (args.empty()) {
    return UsageError(ctx, "missing subcommand: list, fetch or gc");
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "list") return RunList(ctx, rest);
  if (args[0] == "fetch") return RunFetch(ctx, rest);
  if (args[0] == "gc") return RunGc(ctx, rest);
  return UsageError(ctx, absl::StrCat("unknown subcommand '", args[0],
                                      "': list, fetch or gc"));
}

}  // namespace

CtlCommand ArtifactsCtlCommand() {
  return CtlCommand{
      "artifacts",
      "list [--sweep ID] [--format table|csv|json] | fetch PATH -o FILE | gc "
      "[--delete] [--min-age-s N]",
      "List, fetch or garbage-collect the artifacts in sweepd's store.",
      "  list    the artifacts committed results reference (sweep, task, "
      "index, stage, name,\n"
      "          bytes, sha256, path); --sweep ID for one sweep\n"
      "  fetch   stream object PATH (objects/<aa>/<sha256>) from sweepd's "
      "--artifact-root into\n"
      "          FILE, verified against its SHA-256 (FILE is written only "
      "when it matches);\n"
      "          the stream has no overall deadline; --timeout-s bounds the "
      "time between chunks\n"
      "  gc      (admin) delete objects no result, sweep or task spec, or "
      "checkpoint references,\n"
      "          and stale temp files. Without --delete it only counts "
      "(a dry run); objects\n"
      "          and temp files younger than --min-age-s (default 86400) "
      "are kept\n",
      RunArtifacts};
}

}  // namespace sweepd
