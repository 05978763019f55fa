#include "coordinator/service.h"

#include <atomic>
#include <deque>
#include <limits>
#include <optional>
#include <set>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/utf8.h"
#include "coordinator/artifact_service.h"
#include "coordinator/task_states.h"
#include "coordinator/thread_pool.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "proto/grpc_status.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "sweepd/v1/worker.grpc.pb.h"

namespace sweepd {
namespace {

// ListResults pages stop after this many bytes of task records (and always
// hold at least one), so a page fits gRPC's default 4 MB receive limit even
// when generate results carry thousands of samples.
constexpr int64_t kListResultsPageBytes = 3 << 20;

grpc::Status ToGrpc(const absl::Status& s) { return ToGrpcStatus(s); }

grpc::Status Invalid(absl::string_view field, absl::string_view what) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat(field, ": ", what));
}

void FillStatus(const SweepSummary& sum, const v1::SweepSpec* spec,
                v1::SweepStatus* out) {
  out->set_sweep_id(sum.sweep_id);
  out->set_name(sum.name);
  out->set_state(sum.state);
  *out->mutable_counts() = sum.counts;
  if (spec != nullptr) *out->mutable_spec() = *spec;
  out->set_created_unix_ms(sum.created_ms);
  out->set_updated_unix_ms(sum.updated_ms);
  for (const v1::WaitingWork& w : sum.waiting) *out->add_waiting() = w;
  out->set_blocked_reason(sum.blocked_reason);
  for (const v1::WorkerOffer& w : sum.live_workers) {
    *out->add_live_workers() = w;
  }
}

grpc::Status ValidateLeases(
    const google::protobuf::RepeatedPtrField<v1::LeaseProgress>& in,
    std::vector<LeaseRef>* out) {
  for (int i = 0; i < in.size(); ++i) {
    const auto& l = in.Get(i);
    if (l.task_key().empty())
      return Invalid(absl::StrCat("leases[", i, "].task_key"), "empty");
    if (l.fencing_token() <= 0) {
      return Invalid(absl::StrCat("leases[", i, "].fencing_token"),
                     "must be > 0");
    }
    out->push_back(LeaseRef{l.task_key(), l.fencing_token()});
  }
  return grpc::Status::OK;
}

// Where in `bytes` (a serialized `desc` message) a string field holds invalid
// UTF-8, as "field.path (byte 0xNN at offset O)"; "" when none does (or the
// bytes are not a message at all).
std::string FindInvalidUtf8Field(const google::protobuf::Descriptor* desc,
                                 const std::string& bytes,
                                 const std::string& prefix, int depth = 0) {
  google::protobuf::UnknownFieldSet fields;
  if (depth > 32 || !fields.ParseFromString(bytes)) return "";
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& f = fields.field(i);
    if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      continue;
    }
    const google::protobuf::FieldDescriptor* fd =
        desc->FindFieldByNumber(f.number());
    if (fd == nullptr) continue;
    const std::string path = prefix + fd->name();
    if (fd->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      const absl::Status valid = CheckUtf8(f.length_delimited(), path);
      if (!valid.ok()) return std::string(valid.message());
    } else if (fd->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      std::string inner = FindInvalidUtf8Field(
          fd->message_type(), f.length_delimited(), path + ".", depth + 1);
      if (!inner.empty()) return inner;
    }
  }
  return "";
}

// Parses a raw request; INVALID_ARGUMENT saying what is wrong when it does not
// parse (gRPC's own deserializer answers UNIMPLEMENTED with no message).
grpc::Status ParseRawRequest(const grpc::ByteBuffer& raw,
                             google::protobuf::Message* out) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (raw.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  if (out->ParseFromString(bytes)) return grpc::Status::OK;
  const std::string type = out->GetDescriptor()->name();
  std::string why = FindInvalidUtf8Field(out->GetDescriptor(), bytes, "");
  if (why.empty()) {
    why = absl::StrCat("the ", bytes.size(), " bytes are not a serialized ",
                       type);
  } else {
    why = absl::StrCat(why, "; strings must be UTF-8");
  }
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat(type, " does not parse: ", why));
}

// A ListSweeps page token: "<created_ms>:<sweep_id>" of the page's last sweep.
struct SweepCursor {
  int64_t created_ms = -1;
  std::string sweep_id;
};

class ServerImpl;
class WatchReactor;

void FinishDenied(grpc::ServerUnaryReactor* reactor, const grpc::Status& s) {
  reactor->Finish(s);
}
void FinishDenied(WatchReactor* reactor, const grpc::Status& s);

// ---- WatchSweep stream
// ------------------------------------------------------------------

class WatchReactor : public grpc::ServerWriteReactor<v1::SweepEvent> {
 public:
  WatchReactor(ServerImpl* server, std::string sweep_id)
      : server_(server), sweep_id_(std::move(sweep_id)) {}

  enum class Action { kNothing, kWrite, kFinishUnavailable, kFinishNotFound };
  // Called by the watch loop under its registry lock: decides what to send
  // next.
  Action Decide(LeaseScheduler* scheduler, Clock* clock, bool shutting_down);
  // Then, with no lock held (a gRPC reaction may run inline), performs it. The
  // reactor stays alive: OnDone cannot run before Finish, and Decide made this
  // the only caller of Finish or the owner of the one outstanding write.
  void Act(Action action);
  void SetSpec(v1::SweepSpec spec) {
    absl::MutexLock lock(&mu_);
    spec_ = std::move(spec);
  }
  // Ends the stream with `status` unless already ending.
  void FinishOnce(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  void OnWriteDone(bool ok) override {
    bool finish_ok = false, finish_err = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (finished_) return;
      if (!ok) {
        finished_ = finish_err = true;
      } else if (final_sent_ || cancelled_) {
        finished_ = true;
        finish_ok = final_sent_;
        finish_err = !final_sent_;
      }
    }
    if (finish_ok) Finish(grpc::Status::OK);
    if (finish_err)
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch stream closed"));
  }

  void OnCancel() override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      // Before ready_, the start-up read on the executor owns finishing.
      if (ready_ && !writing_ && !finished_) finish = finished_ = true;
    }
    if (finish)
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }

  void OnDone() override;

 private:
  ServerImpl* const server_;
  const std::string sweep_id_;
  absl::Mutex mu_;
  v1::SweepSpec spec_ ABSL_GUARDED_BY(mu_);
  // Filled by Decide under mu_, then owned by the one outstanding write
  // (writing_) until OnWriteDone.
  v1::SweepEvent event_;
  // The spec was read; polling may start.
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool final_sent_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_version_ ABSL_GUARDED_BY(mu_) =
      std::numeric_limits<uint64_t>::max();
  std::string last_blocked_reason_ ABSL_GUARDED_BY(mu_);
  friend class ServerImpl;
};

// ---- Services
// -----------------------------------------------------------------------------

class ServerImpl : public CoordinatorServer {
 public:
  ServerImpl(Ledger* ledger, LeaseScheduler* scheduler,
             const ServiceOptions& options)
      : ledger_(ledger),
        scheduler_(scheduler),
        options_(options),
        executor_(options.executor_threads),
        artifacts_(ledger, &executor_, options.artifacts,
                   options.rehash_reported_artifacts),
        coordinator_(this),
        gateway_(this) {
    background_ = std::thread([this] { BackgroundLoop(); });
  }
  ~ServerImpl() override { Stop(); }

  grpc::Service* coordinator_service() override { return &coordinator_; }
  grpc::Service* worker_gateway_service() override { return &gateway_; }

  void ConfigureBuilder(grpc::ServerBuilder* builder) override {
    builder->RegisterService(&coordinator_);
    builder->RegisterService(&gateway_);
    builder->SetMaxReceiveMessageSize(options_.max_message_bytes);
    builder->SetMaxSendMessageSize(options_.max_message_bytes);
  }

  void BeginShutdown() override { shutting_down_ = true; }

  void Stop() override {
    BeginShutdown();
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (background_.joinable()) background_.join();
    executor_.Stop();
  }

  // Shared plumbing for the handlers.
  bool Draining() const { return shutting_down_.load(); }

  // The first step of every handler: the caller if the authorizer lets the
  // call through (or authorisation is off); else nullopt, and `reactor` has
  // been finished with the denial.
  template <typename Reactor>
  std::optional<Caller> Admit(const grpc::CallbackServerContext& ctx, Rpc rpc,
                              Reactor* reactor) {
    Caller caller;
    if (options_.authorizer != nullptr) {
      absl::StatusOr<Caller> checked = options_.authorizer->Check(ctx, rpc);
      if (!checked.ok()) {
        FinishDenied(reactor, ToGrpc(checked.status()));
        return std::nullopt;
      }
      caller = std::move(*checked);
    }
    handler_calls_.fetch_add(1);
    return caller;
  }
  // Admit for handlers that finish their own reactor: OK, the denial, or
  // UNAVAILABLE while shutting down.
  absl::Status AdmitStatus(const grpc::CallbackServerContext& ctx, Rpc rpc) {
    if (options_.authorizer != nullptr) {
      RETURN_IF_ERROR(options_.authorizer->Check(ctx, rpc).status());
    }
    handler_calls_.fetch_add(1);
    if (Draining()) return absl::UnavailableError("sweepd is shutting down");
    return absl::OkStatus();
  }
  int64_t handler_calls() const override { return handler_calls_.load(); }
  ThreadPool& executor() { return executor_; }
  ArtifactService& artifacts() { return artifacts_; }
  Ledger* ledger() { return ledger_; }
  LeaseScheduler* scheduler() { return scheduler_; }
  const ServiceOptions& options() const { return options_; }

  // Marks `w` ready and registers it; false (and not registered) if it was
  // cancelled.
  bool AddWatcherIfNotCancelled(WatchReactor* w) {
    absl::MutexLock lock(&watch_mu_);
    absl::MutexLock wlock(&w->mu_);
    if (w->cancelled_) return false;
    w->ready_ = true;
    watchers_.insert(w);
    return true;
  }
  void RemoveWatcher(WatchReactor* w) {
    absl::MutexLock lock(&watch_mu_);
    watchers_.erase(w);
  }

 private:
  // SubmitSweep is a raw method: it parses its request itself (see the header).
  class CoordinatorHandlers
      : public v1::Coordinator::WithRawCallbackMethod_SubmitSweep<
            v1::Coordinator::CallbackService> {
   public:
    explicit CoordinatorHandlers(ServerImpl* s) : s_(s) {}

    grpc::ServerUnaryReactor* SubmitSweep(grpc::CallbackServerContext* ctx,
                                          const grpc::ByteBuffer* raw,
                                          grpc::ByteBuffer* raw_resp) override {
      auto* reactor = ctx->DefaultReactor();
      std::optional<Caller> caller =
          s_->Admit(*ctx, Rpc::kSubmitSweep, reactor);
      if (!caller.has_value()) return reactor;
      if (s_->Draining()) return Fail(reactor);
      auto request = std::make_shared<v1::SubmitSweepRequest>();
      grpc::Status parsed = ParseRawRequest(*raw, request.get());
      if (!parsed.ok()) {
        reactor->Finish(parsed);
        return reactor;
      }
      const v1::SubmitSweepRequest* req = request.get();
      if (!req->has_spec()) {
        reactor->Finish(Invalid("spec", "required"));
        return reactor;
      }
      if (absl::Status writable = s_->ledger()->writable(); !writable.ok()) {
        reactor->Finish(ToGrpc(writable));  // disk full: nothing can be stored
        return reactor;
      }
      const size_t spec_bytes = req->spec().ByteSizeLong();
      if (static_cast<int64_t>(spec_bytes) > s_->options().max_spec_bytes) {
        reactor->Finish(Invalid(
            "spec", absl::StrCat("is ", spec_bytes, " bytes; the limit is ",
                                 s_->options().max_spec_bytes,
                                 " bytes (sweepd --max-spec-bytes)")));
        return reactor;
      }
      // The response is serialized into raw_resp before Finish.
      auto response = std::make_shared<v1::SubmitSweepResponse>();
      v1::SubmitSweepResponse* resp = response.get();
      auto finish = [reactor, raw_resp, response](grpc::Status status) {
        if (status.ok()) {
          const std::string bytes = response->SerializeAsString();
          grpc::Slice slice(bytes);
          *raw_resp = grpc::ByteBuffer(&slice, 1);
        }
        reactor->Finish(status);
      };
      const std::string submitter = caller->name;
      s_->executor().Schedule([this, request, req, resp, finish, submitter] {
        absl::StatusOr<Plan> plan =
            PlanSweep(req->spec(), s_->options().planner);
        if (!plan.ok()) return finish(ToGrpc(plan.status()));
        plan->submitter = submitter;
        SWEEPD_LOG(INFO) << "planned sweep " << plan->sweep_id << " ('"
                         << plan->resolved_spec.name()
                         << "'): " << plan->tasks.size() << " tasks";
        s_->scheduler()->SubmitPlan(
            std::move(plan).value(),
            [resp, finish](absl::StatusOr<SubmitOutcome> r) {
              if (!r.ok()) return finish(ToGrpc(r.status()));
              resp->set_sweep_id(r->sweep_id);
              resp->set_total_tasks(r->total_tasks);
              resp->set_already_existed(r->already_existed);
              finish(grpc::Status::OK);
            });
      });
      return reactor;
    }

    grpc::ServerUnaryReactor* GetSweep(grpc::CallbackServerContext* ctx,
                                       const v1::GetSweepRequest* req,
                                       v1::SweepStatus* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (!s_->Admit(*ctx, Rpc::kGetSweep, reactor)) return reactor;
      if (s_->Draining()) return Fail(reactor);
      if (req->sweep_id().empty()) {
        reactor->Finish(Invalid("sweep_id", "required"));
        return reactor;
      }
      s_->executor().Schedule([this, req, resp, reactor] {
        auto row = s_->ledger()->GetSweep(req->sweep_id());
        if (!row.ok()) return reactor->Finish(ToGrpc(row.status()));
        auto sum = s_->scheduler()->GetSweep(req->sweep_id());
        if (!sum.has_value()) {
          return reactor->Finish(grpc::Status(
              grpc::StatusCode::NOT_FOUND,
              absl::StrCat("sweep_id '", req->sweep_id(), "' not found")));
        }
        FillStatus(*sum, &row->spec, resp);
        reactor->Finish(grpc::Status::OK);
      });
      return reactor;
    }

    grpc::ServerUnaryReactor* ListSweeps(
        grpc::CallbackServerContext* ctx, const v1::ListSweepsRequest* req,
        v1::ListSweepsResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (!s_->Admit(*ctx, Rpc::kListSweeps, reactor)) return reactor;
      if (s_->Draining()) return Fail(reactor);
      const int max_page = req->include_spec() ? 20 : 1000;
      if (req->page_size() < 0 || req->page_size() > max_page) {
        reactor->Finish(Invalid(
            "page_size",
            absl::StrCat("must be between 0 and ", max_page,
                         req->include_spec() ? " with include_spec" : "")));
        return reactor;
      }
      SweepCursor after;
      if (!req->page_token().empty()) {
        const size_t colon = req->page_token().find(':');
        if (colon == std::string::npos ||
            !absl::SimpleAtoi(req->page_token().substr(0, colon),
                              &after.created_ms) ||
            after.created_ms < 0) {
          reactor->Finish(Invalid(
              "page_token", absl::StrCat("'", req->page_token().substr(0, 80),
                                         "' is not a token from this API")));
          return reactor;
        }
        after.sweep_id = req->page_token().substr(colon + 1);
      }
      const int limit = req->page_size() == 0 ? 500 : req->page_size();
      const bool include_spec = req->include_spec();
      s_->executor().Schedule(
          [this, resp, reactor, after, limit, include_spec] {
            // The scheduler's summaries are in (created_ms, sweep_id) order and
            // carry no spec: no ledger read unless specs are asked for.
            const std::vector<SweepSummary> all = s_->scheduler()->ListSweeps();
            size_t i = 0;
            while (i < all.size() &&
                   std::tie(all[i].created_ms, all[i].sweep_id) <=
                       std::tie(after.created_ms, after.sweep_id)) {
              ++i;
            }
            for (; i < all.size() && resp->sweeps_size() < limit; ++i) {
              if (!include_spec) {
                FillStatus(all[i], nullptr, resp->add_sweeps());
                continue;
              }
              auto row = s_->ledger()->GetSweep(all[i].sweep_id);
              if (!row.ok()) return reactor->Finish(ToGrpc(row.status()));
              FillStatus(all[i], &row->spec, resp->add_sweeps());
            }
            if (i < all.size() && resp->sweeps_size() > 0) {
              const SweepSummary& last = all[i - 1];
              resp->set_next_page_token(
                  absl::StrCat(last.created_ms, ":", last.sweep_id));
            }
            reactor->Finish(grpc::Status::OK);
          });
      return reactor;
    }

    grpc::ServerWriteReactor<v1::SweepEvent>* WatchSweep(
        grpc::CallbackServerContext* ctx,
        const v1::WatchSweepRequest* req) override {
      auto* reactor = new WatchReactor(s_, req->sweep_id());
      if (!s_->Admit(*ctx, Rpc::kWatchSweep, reactor)) return reactor;
      if (s_->Draining()) {
        reactor->FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                         "sweepd is shutting down"));
        return reactor;
      }
      if (req->sweep_id().empty()) {
        reactor->FinishOnce(Invalid("sweep_id", "required"));
        return reactor;
      }
      const std::string id = req->sweep_id();
      s_->executor().Schedule([this, id, reactor] {
        auto row = s_->ledger()->GetSweep(id);
        if (!row.ok()) return reactor->FinishOnce(ToGrpc(row.status()));
        reactor->SetSpec(row->spec);
        // Registered and marked ready atomically w.r.t. OnDone's RemoveWatcher.
        if (!s_->AddWatcherIfNotCancelled(reactor)) {
          reactor->FinishOnce(
              grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
        }
      });
      return reactor;
    }

    grpc::ServerUnaryReactor* CancelSweep(
        grpc::CallbackServerContext* ctx, const v1::CancelSweepRequest* req,
        v1::CancelSweepResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      std::optional<Caller> caller =
          s_->Admit(*ctx, Rpc::kCancelSweep, reactor);
      if (!caller.has_value()) return reactor;
      if (s_->Draining()) return Fail(reactor);
      if (req->sweep_id().empty()) {
        reactor->Finish(Invalid("sweep_id", "required"));
        return reactor;
      }
      auto cancel = [this, req, resp, reactor] {
        s_->scheduler()->CancelSweep(
            req->sweep_id(), [resp, reactor](absl::StatusOr<int64_t> n) {
              if (!n.ok()) return reactor->Finish(ToGrpc(n.status()));
              resp->set_cancelled_tasks(*n);
              reactor->Finish(grpc::Status::OK);
            });
      };
      if (!caller->authenticated || caller->role == Role::kAdmin) {
        cancel();
        return reactor;
      }
      // Only the sweep's submitter (or an admin) may cancel it: the ledger
      // read runs off the reactor.
      s_->executor().Schedule([this, req, reactor, cancel, name = caller->name,
                               peer = ctx->peer()] {
        auto row = s_->ledger()->GetSweep(req->sweep_id());
        if (row.ok() && row->submitter != name) {
          SWEEPD_LOG(WARNING)
              << "auth: denied " << RpcMethodName(Rpc::kCancelSweep)
              << " of sweep " << req->sweep_id() << " from " << peer
              << " (token '" << name << "'): submitted by '" << row->submitter
              << "'";
          return reactor->Finish(
              grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                           absl::StrCat("sweep ", req->sweep_id(),
                                        " was submitted by '", row->submitter,
                                        "'; only its submitter or an "
                                        "admin may cancel it")));
        }
        cancel();  // NOT_FOUND and ledger errors come from the cancel itself
      });
      return reactor;
    }

    grpc::ServerUnaryReactor* ListResults(
        grpc::CallbackServerContext* ctx, const v1::ListResultsRequest* req,
        v1::ListResultsResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (!s_->Admit(*ctx, Rpc::kListResults, reactor)) return reactor;
      if (s_->Draining()) return Fail(reactor);
      if (req->sweep_id().empty()) {
        reactor->Finish(Invalid("sweep_id", "required"));
        return reactor;
      }
      if (req->page_size() < 0 || req->page_size() > 5000) {
        reactor->Finish(Invalid("page_size", "must be between 0 and 5000"));
        return reactor;
      }
      int64_t after = -1;
      if (!req->page_token().empty() &&
          (!absl::SimpleAtoi(req->page_token(), &after) || after < 0)) {
        reactor->Finish(Invalid(
            "page_token", absl::StrCat("'", req->page_token(),
                                       "' is not a token from this API")));
        return reactor;
      }
      std::vector<v1::TaskState> states;
      for (int i = 0; i < req->states_size(); ++i) {
        const int st = req->states(i);
        if (st <= v1::TASK_STATE_UNSPECIFIED || st > v1::TASK_STATE_CANCELLED) {
          reactor->Finish(
              Invalid(absl::StrCat("states[", i, "]"), "not a task state"));
          return reactor;
        }
        states.push_back(static_cast<v1::TaskState>(st));
      }
      const int limit = req->page_size() == 0 ? 500 : req->page_size();
      s_->executor().Schedule([this, req, resp, reactor, states, after, limit] {
        if (!s_->scheduler()->GetSweep(req->sweep_id()).has_value()) {
          return reactor->Finish(grpc::Status(
              grpc::StatusCode::NOT_FOUND,
              absl::StrCat("sweep_id '", req->sweep_id(), "' not found")));
        }
        auto page = s_->ledger()->ListTasks(req->sweep_id(), states, after,
                                            limit, kListResultsPageBytes);
        if (!page.ok()) return reactor->Finish(ToGrpc(page.status()));
        for (auto& t : page->tasks) *resp->add_tasks() = std::move(t);
        if (page->more) resp->set_next_page_token(absl::StrCat(page->last_idx));
        reactor->Finish(grpc::Status::OK);
      });
      return reactor;
    }

    grpc::ServerUnaryReactor* ListWorkers(
        grpc::CallbackServerContext* ctx, const v1::ListWorkersRequest* req,
        v1::ListWorkersResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (!s_->Admit(*ctx, Rpc::kListWorkers, reactor)) return reactor;
      if (s_->Draining()) return Fail(reactor);
      for (auto& w : s_->scheduler()->ListWorkers())
        *resp->add_workers() = std::move(w);
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }

    // The artifact RPCs live in coordinator/artifact_service.cc.
    grpc::ServerUnaryReactor* ListArtifacts(
        grpc::CallbackServerContext* ctx, const v1::ListArtifactsRequest* req,
        v1::ListArtifactsResponse* resp) override {
      return s_->artifacts().List(ctx, req, resp,
                                  s_->AdmitStatus(*ctx, Rpc::kListArtifacts));
    }
    grpc::ServerWriteReactor<v1::ArtifactChunk>* FetchArtifact(
        grpc::CallbackServerContext* ctx,
        const v1::FetchArtifactRequest* req) override {
      return s_->artifacts().Fetch(ctx, req,
                                   s_->AdmitStatus(*ctx, Rpc::kFetchArtifact));
    }
    grpc::ServerUnaryReactor* CollectArtifactGarbage(
        grpc::CallbackServerContext* ctx,
        const v1::CollectArtifactGarbageRequest* req,
        v1::CollectArtifactGarbageResponse* resp) override {
      return s_->artifacts().CollectGarbage(
          ctx, req, resp, s_->AdmitStatus(*ctx, Rpc::kCollectArtifactGarbage));
    }

   private:
    static grpc::ServerUnaryReactor* Fail(grpc::ServerUnaryReactor* r) {
      r->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                             "sweepd is shutting down"));
      return r;
    }
    ServerImpl* const s_;
  };

  class GatewayHandlers : public v1::WorkerGateway::CallbackService {
   public:
    explicit GatewayHandlers(ServerImpl* s) : s_(s) {}

    grpc::ServerUnaryReactor* RegisterWorker(
        grpc::CallbackServerContext* ctx, const v1::RegisterWorkerRequest* req,
        v1::RegisterWorkerResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (!s_->Admit(*ctx, Rpc::kRegisterWorker, reactor)) return reactor;
      if (s_->Draining()) return Fail(reactor);
      const auto& caps = req->capabilities();
      if (req->name().size() > s_->options().max_worker_name_bytes) {
        reactor->Finish(
            Invalid("name", absl::StrCat("is ", req->name().size(),
                                         " bytes long; the limit is ",
                                         s_->options().max_worker_name_bytes)));
      } else if (caps.gpu_count() < 0) {
        reactor->Finish(Invalid("capabilities.gpu_count", "must be >= 0"));
      } else if (caps.tensor_parallel() < 0) {
        reactor->Finish(
            Invalid("capabilities.tensor_parallel", "must be >= 0"));
      } else if (caps.gpu_memory_bytes() < 0) {
        reactor->Finish(
            Invalid("capabilities.gpu_memory_bytes", "must be >= 0"));
      } else {
        s_->scheduler()->RegisterWorker(
            req->name(), caps,
            [resp, reactor](absl::StatusOr<v1::RegisterWorkerResponse> r) {
              if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
              *resp = *r;
              reactor->Finish(grpc::Status::OK);
            });
      }
      return reactor;
    }

    grpc::ServerUnaryReactor* LeaseTasks(
        grpc::CallbackServerContext* ctx, const v1::LeaseTasksRequest* req,
        v1::LeaseTasksResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (!s_->Admit(*ctx, Rpc::kLeaseTasks, reactor)) return reactor;
      if (s_->Draining()) return Fail(reactor);
      if (req->worker_id().empty()) {
        reactor->Finish(Invalid("worker_id", "required"));
        return reactor;
      }
      if (req->max_tasks() < 0) {
        reactor->Finish(Invalid("max_tasks", "must be >= 0"));
        return reactor;
      }
      std::optional<v1::WorkerCapabilities> caps;
      if (req->has_capabilities()) caps = req->capabilities();
      s_->scheduler()->LeaseTasks(
          req->worker_id(), std::max(1, req->max_tasks()), caps,
          [resp, reactor](absl::StatusOr<LeaseBatch> r) {
            if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
            for (auto& t : r->tasks) *resp->add_tasks() = std::move(t);
            resp->set_retry_after_ms(r->retry_after_ms);
            reactor->Finish(grpc::Status::OK);
          });
      return reactor;
    }

    grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                        const v1::HeartbeatRequest* req,
                                        v1::HeartbeatResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (!s_->Admit(*ctx, Rpc::kHeartbeat, reactor)) return reactor;
      if (s_->Draining()) return Fail(reactor);
      if (req->worker_id().empty()) {
        reactor->Finish(Invalid("worker_id", "required"));
        return reactor;
      }
      std::vector<LeaseRef> leases;
      grpc::Status v = ValidateLeases(req->leases(), &leases);
      if (!v.ok()) {
        reactor->Finish(v);
        return reactor;
      }
      s_->scheduler()->Heartbeat(
          req->worker_id(), leases, req->draining(),
          [resp, reactor](absl::StatusOr<HeartbeatOutcome> r) {
            if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
            for (auto& k : r->cancelled_task_keys) {
              resp->add_cancelled_task_keys(k);
            }
            resp->set_lease_expires_unix_ms(r->lease_expires_ms);
            reactor->Finish(grpc::Status::OK);
          });
      return reactor;
    }

    grpc::ServerUnaryReactor* ReportResult(
        grpc::CallbackServerContext* ctx, const v1::ReportResultRequest* req,
        v1::ReportResultResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (!s_->Admit(*ctx, Rpc::kReportResult, reactor)) return reactor;
      if (s_->Draining()) return Fail(reactor);
      grpc::Status v = grpc::Status::OK;
      if (req->worker_id().empty())
        v = Invalid("worker_id", "required");
      else if (req->task_key().empty())
        v = Invalid("task_key", "required");
      else if (req->fencing_token() <= 0)
        v = Invalid("fencing_token", "must be > 0");
      else if (req->outcome_case() ==
               v1::ReportResultRequest::OUTCOME_NOT_SET) {
        v = Invalid("outcome", "one of result or failure is required");
      }
      if (!v.ok()) {
        reactor->Finish(v);
        return reactor;
      }
      ResultReport report;
      report.worker_id = req->worker_id();
      report.task_key = req->task_key();
      report.fencing_token = req->fencing_token();
      if (req->has_result()) report.result = req->result();
      if (req->has_failure()) report.failure = req->failure();
      auto record = [this, resp, reactor](const ResultReport& checked) {
        s_->scheduler()->ReportResult(
            checked, [resp, reactor](absl::StatusOr<bool> r) {
              if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
              resp->set_committed(*r);
              reactor->Finish(grpc::Status::OK);
            });
      };
      if (!s_->artifacts().NeedsCheck(report)) {
        record(report);
        return reactor;
      }
      // The referenced objects must exist before the result commits (file
      // system work: off the reactor).
      s_->executor().Schedule([this, record, report]() mutable {
        s_->artifacts().CheckReport(&report);
        record(report);
      });
      return reactor;
    }

    grpc::ServerUnaryReactor* ReleaseTasks(
        grpc::CallbackServerContext* ctx, const v1::ReleaseTasksRequest* req,
        v1::ReleaseTasksResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (!s_->Admit(*ctx, Rpc::kReleaseTasks, reactor)) return reactor;
      // Releases are accepted while draining: they hand work back.
      if (req->worker_id().empty()) {
        reactor->Finish(Invalid("worker_id", "required"));
        return reactor;
      }
      std::vector<LeaseRef> leases;
      grpc::Status v = ValidateLeases(req->leases(), &leases);
      if (!v.ok()) {
        reactor->Finish(v);
        return reactor;
      }
      s_->scheduler()->ReleaseTasks(
          req->worker_id(), leases, [resp, reactor](absl::StatusOr<int> r) {
            if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
            resp->set_released(*r);
            reactor->Finish(grpc::Status::OK);
          });
      return reactor;
    }

   private:
    static grpc::ServerUnaryReactor* Fail(grpc::ServerUnaryReactor* r) {
      r->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                             "sweepd is shutting down"));
      return r;
    }
    ServerImpl* const s_;
  };

  void BackgroundLoop() {
    int64_t next_expiry = 0;
    while (!stop_.HasBeenNotified()) {
      const int64_t now = options_.clock->NowMs();
      if (now >= next_expiry) {
        next_expiry = now + options_.expiry_interval_ms;
        scheduler_->ExpireLeases([](absl::StatusOr<int> r) {
          if (!r.ok())
            SWEEPD_LOG(WARNING) << "lease expiry pass failed: " << r.status();
        });
      }
      if (!Draining()) {
        for (StageWork& work : scheduler_->TakeSweepsReadyForStage()) {
          executor_.Schedule([this, work] { DeriveStage(work); });
        }
      }
      PollWatchers(Draining());
      stop_.WaitForNotificationWithTimeout(
          absl::Milliseconds(options_.watch_interval_ms));
    }
    // Final pass: end every open watch stream.
    PollWatchers(/*shutting_down=*/true);
  }

  // Plans a derived stage from the sweep's results (docs/STAGES.md). A stage
  // the results cannot support becomes one FAILED task that says why, so the
  // sweep ends FAILED with the reason in its results; transient errors (ledger
  // reads) leave the stage for the next pass.
  void DeriveStage(const StageWork& work) {
    auto abandon = [&](const absl::Status& status) {
      SWEEPD_LOG(WARNING) << "sweep " << work.sweep_id << ": deriving stage "
                          << work.stage_index
                          << " failed, will retry: " << status;
      scheduler_->AbandonStage(work.sweep_id);
    };
    auto sweep = ledger_->GetSweep(work.sweep_id);
    if (!sweep.ok()) return abandon(sweep.status());
    std::vector<v1::TaskRecord> records;
    int64_t after = -1;
    while (true) {
      auto page = ledger_->ListTasks(work.sweep_id, {}, after, 5000);
      if (!page.ok()) return abandon(page.status());
      for (auto& t : page->tasks) records.push_back(std::move(t));
      if (!page->more) break;
      after = page->last_idx;
    }
    auto planned = PlanDerivedStage(sweep->spec, work.stage_index, records,
                                    work.first_index, options_.planner);
    std::vector<PlannedTask> tasks;
    if (planned.ok()) {
      tasks = std::move(*planned);
    } else if (absl::IsFailedPrecondition(planned.status()) ||
               absl::IsInvalidArgument(planned.status())) {
      tasks.push_back(StageFailureTask(sweep->spec, work, planned.status()));
    } else {
      return abandon(planned.status());
    }
    const size_t n = tasks.size();
    scheduler_->AppendStage(work.sweep_id, work.stage_index, std::move(tasks),
                            [work, n](absl::StatusOr<int64_t> r) {
                              if (!r.ok()) {
                                SWEEPD_LOG(WARNING)
                                    << "sweep " << work.sweep_id << ": stage "
                                    << work.stage_index
                                    << " not recorded: " << r.status();
                              } else {
                                SWEEPD_LOG(INFO)
                                    << "sweep " << work.sweep_id << ": stage "
                                    << work.stage_index << " planned " << *r
                                    << " of " << n << " tasks";
                              }
                            });
  }

  // A task that records why a derived stage could not be planned: inserted
  // FAILED (its error is the reason), so results and reports show it.
  static PlannedTask StageFailureTask(const v1::SweepSpec& spec,
                                      const StageWork& work,
                                      const absl::Status& why) {
    const v1::Stage& stage = spec.stages(work.stage_index);
    PlannedTask t;
    t.spec.set_kind(v1::JOB_KIND_EVAL);
    t.spec.set_stage(stage.name());
    t.spec.set_index(work.first_index);
    t.task_key = Sha256Hex(
        absl::StrCat("stage-failure:", work.sweep_id, ":", stage.name()));
    t.group_key = t.task_key;
    t.failure = std::string(why.message());
    return t;
  }

  void PollWatchers(bool shutting_down) {
    std::vector<std::pair<WatchReactor*, WatchReactor::Action>> actions;
    {
      absl::MutexLock lock(&watch_mu_);
      for (WatchReactor* w : watchers_) {
        auto a = w->Decide(scheduler_, options_.clock, shutting_down);
        if (a != WatchReactor::Action::kNothing) actions.emplace_back(w, a);
      }
    }
    for (auto& [w, a] : actions) w->Act(a);
  }

  Ledger* const ledger_;
  LeaseScheduler* const scheduler_;
  const ServiceOptions options_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<int64_t> handler_calls_{0};
  ThreadPool executor_;
  ArtifactService artifacts_;
  CoordinatorHandlers coordinator_;
  GatewayHandlers gateway_;
  absl::Mutex watch_mu_;
  std::set<WatchReactor*> watchers_ ABSL_GUARDED_BY(watch_mu_);
  absl::Notification stop_;
  std::thread background_;
};

WatchReactor::Action WatchReactor::Decide(LeaseScheduler* scheduler,
                                          Clock* clock, bool shutting_down) {
  absl::MutexLock lock(&mu_);
  if (!ready_ || finished_ || writing_) return Action::kNothing;
  if (shutting_down) {
    finished_ = true;
    return Action::kFinishUnavailable;
  }
  auto sum = scheduler->GetSweep(sweep_id_);
  if (!sum.has_value()) {
    finished_ = true;
    return Action::kFinishNotFound;
  }
  // A worker coming or going changes why tasks wait without changing the
  // sweep's version.
  if (sum->version == last_version_ &&
      sum->blocked_reason == last_blocked_reason_) {
    return Action::kNothing;
  }
  last_version_ = sum->version;
  last_blocked_reason_ = sum->blocked_reason;
  event_.Clear();
  FillStatus(*sum, &spec_, event_.mutable_status());
  event_.set_unix_ms(clock->NowMs());
  final_sent_ = IsFinalSweepState(sum->state);
  writing_ = true;
  return Action::kWrite;
}

void WatchReactor::Act(Action action) {
  switch (action) {
    case Action::kWrite:
      StartWrite(&event_);
      break;
    case Action::kFinishUnavailable:
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "sweepd is shutting down"));
      break;
    case Action::kFinishNotFound:
      Finish(
          grpc::Status(grpc::StatusCode::NOT_FOUND,
                       absl::StrCat("sweep_id '", sweep_id_, "' not found")));
      break;
    case Action::kNothing:
      break;
  }
}

void FinishDenied(WatchReactor* reactor, const grpc::Status& s) {
  reactor->FinishOnce(s);
}

void WatchReactor::OnDone() {
  server_->RemoveWatcher(this);
  delete this;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Create(
    Ledger* ledger, LeaseScheduler* scheduler, const ServiceOptions& options) {
  if (ledger == nullptr || scheduler == nullptr) {
    return absl::InvalidArgumentError(
        "CoordinatorServer needs a ledger and a scheduler");
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("ServiceOptions.clock is null");
  }
  if (options.executor_threads < 1) {
    return absl::InvalidArgumentError(
        "ServiceOptions.executor_threads must be >= 1");
  }
  return std::unique_ptr<CoordinatorServer>(
      new ServerImpl(ledger, scheduler, options));
}

bool IsLoopbackAddress(const std::string& host_port) {
  std::string host = host_port;
  const size_t colon = host.rfind(':');
  if (colon != std::string::npos && host.find(']') != std::string::npos) {
    host = host.substr(0, host.find(']') + 1);
  } else if (colon != std::string::npos && host.find(':') == colon) {
    host = host.substr(0, colon);
  }
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  return absl::StartsWith(host, "127.");
}

void InitGrpcServerPlugins() {
  static const bool once = [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    return true;
  }();
  (void)once;
}

}  // namespace sweepd
