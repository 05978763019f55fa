// The Coordinator service's handlers (what sweepctl and the dashboard call):
// SubmitSweep (planned on the executor), GetSweep, ListSweeps, WatchSweep
// (service_watch.h), CancelSweep (submitter or admin), ListResults,
// ListWorkers; the artifact RPCs are forwarded to ArtifactService
// (artifact_service.h). Every handler first passes ServerImpl::Admit.
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "coordinator/planner.h"
#include "coordinator/service_impl.h"
#include "coordinator/service_validation.h"
#include "coordinator/service_watch.h"
#include "sweepd/v1/coordinator.grpc.pb.h"

namespace sweepd::service_internal {
namespace {

class CoordinatorHandlers
    : public v1::Coordinator::WithRawCallbackMethod_SubmitSweep<
          v1::Coordinator::CallbackService> {
 public:
  explicit CoordinatorHandlers(ServerImpl* s) : s_(s) {}

  grpc::ServerUnaryReactor* SubmitSweep(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* raw,
                                        grpc::ByteBuffer* raw_resp) override {
    auto* reactor = ctx->DefaultReactor();
    std::optional<Caller> caller = s_->Admit(*ctx, Rpc::kSubmitSweep, reactor);
    if (!caller.has_value()) return reactor;
    if (s_->Draining()) return FinishDraining(reactor);
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
      absl::StatusOr<Plan> plan = PlanSweep(req->spec(), s_->options().planner);
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
    if (s_->Draining()) return FinishDraining(reactor);
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

  grpc::ServerUnaryReactor* ListSweeps(grpc::CallbackServerContext* ctx,
                                       const v1::ListSweepsRequest* req,
                                       v1::ListSweepsResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!s_->Admit(*ctx, Rpc::kListSweeps, reactor)) return reactor;
    if (s_->Draining()) return FinishDraining(reactor);
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
    s_->executor().Schedule([this, resp, reactor, after, limit, include_spec] {
      // The scheduler's summaries are in (created_ms, sweep_id) order and
      // carry no spec: no ledger read unless specs are asked for.
      const std::vector<SweepSummary> all = s_->scheduler()->ListSweeps();
      size_t i = 0;
      while (i < all.size() && std::tie(all[i].created_ms, all[i].sweep_id) <=
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
    std::optional<Caller> caller = s_->Admit(*ctx, Rpc::kCancelSweep, reactor);
    if (!caller.has_value()) return reactor;
    if (s_->Draining()) return FinishDraining(reactor);
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
    s_->executor().Schedule(
        [this, req, reactor, cancel, name = caller->name, peer = ctx->peer()] {
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
    if (s_->Draining()) return FinishDraining(reactor);
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
      reactor->Finish(Invalid("page_token",
                              absl::StrCat("'", req->page_token(),
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
      auto page = s_->ledger()->ListTasks(req->sweep_id(), states, after, limit,
                                          kListResultsPageBytes);
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
    if (s_->Draining()) return FinishDraining(reactor);
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
  ServerImpl* const s_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeCoordinatorHandlers(ServerImpl* server) {
  return std::make_unique<CoordinatorHandlers>(server);
}

}  // namespace sweepd::service_internal
