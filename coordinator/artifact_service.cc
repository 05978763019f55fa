// The artifact RPCs and the check of reported artifacts. See
// artifact_service.h.
#include "coordinator/artifact_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/artifact_refs.h"
#include "proto/grpc_status.h"

namespace sweepd {
namespace {

// Largest chunk FetchArtifact sends (well under gRPC's 4 MB default).
constexpr size_t kFetchChunkBytes = size_t{1} << 20;
// Ledger pages stop after this many bytes of task records.
constexpr int64_t kTaskPageBytes = 3 << 20;
constexpr int64_t kDefaultGcMinAgeSeconds = 86'400;

absl::Status NoStore() {
  return absl::FailedPreconditionError(
      "sweepd has no artifact store: start it with --artifact-root DIR (the "
      "directory the workers' --artifact-root names)");
}

// Sweep ids in submission order (created_ms, then id).
absl::StatusOr<std::vector<std::string>> SweepIdsInOrder(Ledger* ledger) {
  ASSIGN_OR_RETURN(std::vector<SweepRow> rows, ledger->ListSweeps());
  std::sort(rows.begin(), rows.end(), [](const SweepRow& a, const SweepRow& b) {
    return std::tie(a.created_ms, a.sweep_id) <
           std::tie(b.created_ms, b.sweep_id);
  });
  std::vector<std::string> ids;
  ids.reserve(rows.size());
  for (const SweepRow& r : rows) ids.push_back(r.sweep_id);
  return ids;
}

// A ListArtifacts page token: "<sweep_id>:<after task idx>" (after -1: from
// the sweep's first task).
struct ArtifactCursor {
  std::string sweep_id;
  int64_t after = -1;
};

absl::StatusOr<ArtifactCursor> ParseCursor(const std::string& token) {
  const size_t colon = token.rfind(':');
  ArtifactCursor c;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(token.substr(colon + 1), &c.after) || c.after < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: '", token.substr(0, 80),
                     "' is not a token from this API"));
  }
  c.sweep_id = token.substr(0, colon);
  return c;
}

absl::Status ListPage(Ledger* ledger, const v1::ListArtifactsRequest& req,
                      int task_limit, v1::ListArtifactsResponse* resp) {
  std::vector<std::string> sweeps;
  if (!req.sweep_id().empty()) {
    RETURN_IF_ERROR(ledger->GetSweep(req.sweep_id()).status());
    sweeps.push_back(req.sweep_id());
  } else {
    ASSIGN_OR_RETURN(sweeps, SweepIdsInOrder(ledger));
  }
  size_t i = 0;
  int64_t after = -1;
  if (!req.page_token().empty()) {
    ASSIGN_OR_RETURN(ArtifactCursor cursor, ParseCursor(req.page_token()));
    while (i < sweeps.size() && sweeps[i] != cursor.sweep_id) ++i;
    if (i == sweeps.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("page_token: sweep '", cursor.sweep_id.substr(0, 80),
                       "' is not listed"));
    }
    after = cursor.after;
  }
  int tasks_read = 0;
  for (; i < sweeps.size(); ++i, after = -1) {
    bool more = true;
    while (more && tasks_read < task_limit) {
      ASSIGN_OR_RETURN(
          TaskPage page,
          ledger->ListTasks(sweeps[i], {v1::TASK_STATE_DONE}, after,
                            task_limit - tasks_read, kTaskPageBytes));
      for (const v1::TaskRecord& t : page.tasks) {
        for (const v1::Artifact& a : t.result().artifacts()) {
          v1::ArtifactListing* out = resp->add_artifacts();
          out->set_name(a.name());
          out->set_path(a.path());
          out->set_bytes(a.bytes());
          out->set_sha256(a.sha256());
          out->set_sweep_id(t.sweep_id());
          out->set_task_key(t.task_key());
          out->set_task_index(t.spec().index());
          out->set_stage(t.spec().stage());
        }
      }
      tasks_read += static_cast<int>(page.tasks.size());
      more = page.more;
      if (page.last_idx >= 0) after = page.last_idx;
    }
    if (tasks_read >= task_limit) {
      if (more) {
        resp->set_next_page_token(absl::StrCat(sweeps[i], ":", after));
      } else if (i + 1 < sweeps.size()) {
        resp->set_next_page_token(absl::StrCat(sweeps[i + 1], ":-1"));
      }
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

// Every object path the ledger references: sweep specs, task specs and
// results, of every sweep and task whatever its state.
absl::StatusOr<std::set<std::string>> ReferencedPaths(Ledger* ledger) {
  std::set<std::string> paths;
  ASSIGN_OR_RETURN(std::vector<SweepRow> sweeps, ledger->ListSweeps());
  for (const SweepRow& sweep : sweeps) {
    CollectArtifactPaths(sweep.spec, &paths);
    int64_t after = -1;
    while (true) {
      ASSIGN_OR_RETURN(
          TaskPage page,
          ledger->ListTasks(sweep.sweep_id, {}, after, 1000, kTaskPageBytes));
      for (const v1::TaskRecord& t : page.tasks) {
        CollectArtifactPaths(t, &paths);
      }
      if (!page.more) break;
      after = page.last_idx;
    }
  }
  return paths;
}

// Streams one object: each chunk is read on the executor, written, and the
// next one read once the write is done. Deletes itself in OnDone.
class FetchReactor : public grpc::ServerWriteReactor<v1::ArtifactChunk> {
 public:
  FetchReactor(ThreadPool* executor, std::shared_ptr<ArtifactStore> store,
               std::string path, std::string sha256)
      : executor_(executor),
        store_(std::move(store)),
        path_(std::move(path)),
        sha256_(std::move(sha256)) {}
  ~FetchReactor() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void Start() {
    executor_->Schedule([this] { Open(); });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "fetch stream closed by the client"));
      return;
    }
    executor_->Schedule([this] { ReadNext(); });
  }

  void OnDone() override { delete this; }

 private:
  void Open() {
    absl::StatusOr<std::string> full = store_->LocateUnverified(path_, sha256_);
    if (!full.ok()) return Finish(ToGrpcStatus(full.status()));
    fd_ = ::open(full->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      return Finish(ToGrpcStatus(
          absl::NotFoundError(absl::StrCat("artifact ", path_, ": cannot open ",
                                           *full, ": ", strerror(errno)))));
    }
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
      return Finish(ToGrpcStatus(absl::InternalError(
          absl::StrCat("artifact ", path_, ": fstat: ", strerror(errno)))));
    }
    expected_ = path_.substr(path_.rfind('/') + 1);
    chunk_.set_total_bytes(static_cast<int64_t>(st.st_size));
    chunk_.set_sha256(expected_);
    first_ = true;
    ReadNext();
  }

  void ReadNext() {
    std::string* data = chunk_.mutable_data();
    data->resize(kFetchChunkBytes);
    size_t got = 0;
    while (got < kFetchChunkBytes) {
      const ssize_t n = ::read(fd_, data->data() + got, kFetchChunkBytes - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return Finish(ToGrpcStatus(absl::InternalError(
            absl::StrCat("artifact ", path_, ": read: ", strerror(errno)))));
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    data->resize(got);
    if (got == 0 && !first_) {
      // End of file: what was sent must be the object.
      const std::string actual = hash_.HexDigest();
      if (actual != expected_) {
        SWEEPD_LOG(WARNING)
            << "artifact " << path_
            << " fails verification while fetched: content " << actual;
        return Finish(ToGrpcStatus(absl::DataLossError(absl::StrCat(
            "artifact ", path_, ": checksum mismatch (content has ", actual,
            ", expected ", expected_, ")"))));
      }
      return Finish(grpc::Status::OK);
    }
    hash_.Update(*data);
    chunk_.set_offset(offset_);
    offset_ += static_cast<int64_t>(got);
    if (!first_) {
      chunk_.clear_total_bytes();
      chunk_.clear_sha256();
    }
    first_ = false;
    StartWrite(&chunk_);
  }

  ThreadPool* const executor_;
  const std::shared_ptr<ArtifactStore> store_;
  const std::string path_;
  const std::string sha256_;
  // Owned by the one step in flight (a read on the executor or a write).
  int fd_ = -1;
  std::string expected_;
  v1::ArtifactChunk chunk_;
  Sha256 hash_;
  int64_t offset_ = 0;
  bool first_ = true;
};

}  // namespace

ArtifactService::ArtifactService(Ledger* ledger, ThreadPool* executor,
                                 std::shared_ptr<ArtifactStore> store,
                                 bool rehash_reported)
    : ledger_(ledger),
      executor_(executor),
      store_(std::move(store)),
      rehash_reported_(rehash_reported) {}

grpc::ServerUnaryReactor* ArtifactService::List(
    grpc::CallbackServerContext* ctx, const v1::ListArtifactsRequest* req,
    v1::ListArtifactsResponse* resp, const absl::Status& admitted) {
  auto* reactor = ctx->DefaultReactor();
  if (!admitted.ok()) {
    reactor->Finish(ToGrpcStatus(admitted));
    return reactor;
  }
  if (req->page_size() < 0 || req->page_size() > 5000) {
    reactor->Finish(ToGrpcStatus(
        absl::InvalidArgumentError("page_size: must be between 0 and 5000")));
    return reactor;
  }
  const int limit = req->page_size() == 0 ? 500 : req->page_size();
  executor_->Schedule([this, req, resp, reactor, limit] {
    reactor->Finish(ToGrpcStatus(ListPage(ledger_, *req, limit, resp)));
  });
  return reactor;
}

grpc::ServerWriteReactor<v1::ArtifactChunk>* ArtifactService::Fetch(
    grpc::CallbackServerContext* ctx, const v1::FetchArtifactRequest* req,
    const absl::Status& admitted) {
  auto* reactor =
      new FetchReactor(executor_, store_, req->path(), req->sha256());
  absl::Status s = admitted;
  if (s.ok() && store_ == nullptr) s = NoStore();
  if (s.ok() && !IsArtifactObjectPath(req->path())) {
    s = absl::InvalidArgumentError(absl::StrCat(
        "path: '", req->path().substr(0, 200),
        "' is not an object path of the store (objects/<aa>/<sha256>)"));
  }
  if (!s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  (void)ctx;
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* ArtifactService::CollectGarbage(
    grpc::CallbackServerContext* ctx,
    const v1::CollectArtifactGarbageRequest* req,
    v1::CollectArtifactGarbageResponse* resp, const absl::Status& admitted) {
  auto* reactor = ctx->DefaultReactor();
  absl::Status s = admitted;
  if (s.ok() && store_ == nullptr) s = NoStore();
  if (s.ok() && req->min_age_seconds() < 0) {
    s = absl::InvalidArgumentError("min_age_seconds: must be >= 0");
  }
  if (!s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  executor_->Schedule([this, req, resp, reactor] {
    // Never collect on a partial view of the ledger: any read error aborts.
    absl::StatusOr<std::set<std::string>> referenced = ReferencedPaths(ledger_);
    if (!referenced.ok()) {
      return reactor->Finish(ToGrpcStatus(referenced.status()));
    }
    ArtifactGcOptions options;
    options.dry_run = req->dry_run();
    options.min_age =
        absl::Seconds(req->min_age_seconds() == 0 ? kDefaultGcMinAgeSeconds
                                                  : req->min_age_seconds());
    options.tmp_min_age = options.min_age;
    const int64_t referenced_count = static_cast<int64_t>(referenced->size());
    options.referenced = std::move(*referenced);
    absl::StatusOr<ArtifactGcStats> stats = store_->GarbageCollect(options);
    if (!stats.ok()) return reactor->Finish(ToGrpcStatus(stats.status()));
    resp->set_objects_deleted(stats->objects_deleted);
    resp->set_bytes_deleted(stats->bytes_deleted);
    resp->set_objects_kept(stats->objects_kept);
    resp->set_bytes_kept(stats->bytes_kept);
    resp->set_objects_too_young(stats->objects_too_young);
    resp->set_tmp_files_deleted(stats->tmp_files_deleted);
    resp->set_tmp_bytes_deleted(stats->tmp_bytes_deleted);
    resp->set_referenced(referenced_count);
    resp->set_checkpoints(stats->checkpoints);
    resp->set_dry_run(req->dry_run());
    const char* verb = req->dry_run() ? "would be " : "";
    SWEEPD_LOG(INFO) << "artifact gc" << (req->dry_run() ? " (dry run)" : "")
                     << ": " << stats->objects_deleted << " objects / "
                     << stats->bytes_deleted << " bytes " << verb << "deleted, "
                     << stats->objects_kept << " kept ("
                     << stats->objects_too_young << " too young), "
                     << stats->tmp_files_deleted << " temp files " << verb
                     << "removed";
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

bool ArtifactService::NeedsCheck(const ResultReport& report) const {
  return store_ != nullptr && report.result.has_value() &&
         report.result->artifacts_size() > 0;
}

void ArtifactService::CheckReport(ResultReport* report) const {
  if (!NeedsCheck(*report)) return;
  for (const v1::Artifact& a : report->result->artifacts()) {
    const absl::Status s =
        store_->Check(ArtifactInfo{a.name(), a.path(), a.bytes(), a.sha256()},
                      rehash_reported_);
    if (s.ok()) continue;
    // A reference that is not an object of the store will not become one on
    // a retry; a missing or different object may (a torn or unflushed write).
    const bool retryable =
        !absl::IsInvalidArgument(s) && !absl::IsPermissionDenied(s);
    // s names the artifact (Check) and its path.
    const std::string message = absl::StrCat(
        "result refused by sweepd: ", s.message(),
        retryable ? " (the task will run again)" : " (not retried)");
    SWEEPD_LOG(WARNING) << "task " << report->task_key << " from worker "
                        << report->worker_id << ": " << message;
    v1::TaskFailure failure;
    failure.set_message(message);
    failure.set_retryable(retryable);
    report->result.reset();
    report->failure = std::move(failure);
    return;
  }
}

}  // namespace sweepd
