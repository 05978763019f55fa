// The WorkerGateway service's handlers (what workers call): RegisterWorker,
// LeaseTasks, Heartbeat, ReportResult (artifact references checked first,
// off the reactor) and ReleaseTasks. Each validates its request and hands it
// to the LeaseScheduler, finishing in the scheduler's callback. Every handler
// first passes ServerImpl::Admit.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/service_impl.h"
#include "coordinator/service_validation.h"
#include "sweepd/v1/worker.grpc.pb.h"

namespace sweepd::service_internal {
namespace {

class GatewayHandlers : public v1::WorkerGateway::CallbackService {
 public:
  explicit GatewayHandlers(ServerImpl* s) : s_(s) {}

  grpc::ServerUnaryReactor* RegisterWorker(
      grpc::CallbackServerContext* ctx, const v1::RegisterWorkerRequest* req,
      v1::RegisterWorkerResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!Begin(*ctx, Rpc::kRegisterWorker, reactor)) return reactor;
    const auto& caps = req->capabilities();
    if (req->name().size() > s_->options().max_worker_name_bytes) {
      reactor->Finish(Invalid(
          "name",
          absl::StrCat("is ", req->name().size(), " bytes long; the limit is ",
                       s_->options().max_worker_name_bytes)));
    } else if (caps.gpu_count() < 0) {
      reactor->Finish(Invalid("capabilities.gpu_count", "must be >= 0"));
    } else if (caps.tensor_parallel() < 0) {
      reactor->Finish(Invalid("capabilities.tensor_parallel", "must be >= 0"));
    } else if (caps.gpu_memory_bytes() < 0) {
      reactor->Finish(Invalid("capabilities.gpu_memory_bytes", "must be >= 0"));
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

  grpc::ServerUnaryReactor* LeaseTasks(grpc::CallbackServerContext* ctx,
                                       const v1::LeaseTasksRequest* req,
                                       v1::LeaseTasksResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!Begin(*ctx, Rpc::kLeaseTasks, reactor)) return reactor;
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
    s_->scheduler()->LeaseTasks(req->worker_id(), std::max(1, req->max_tasks()),
                                caps,
                                [resp, reactor](absl::StatusOr<LeaseBatch> r) {
                                  if (!r.ok())
                                    return reactor->Finish(ToGrpc(r.status()));
                                  for (auto& t : r->tasks)
                                    *resp->add_tasks() = std::move(t);
                                  resp->set_retry_after_ms(r->retry_after_ms);
                                  reactor->Finish(grpc::Status::OK);
                                });
    return reactor;
  }

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* req,
                                      v1::HeartbeatResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!Begin(*ctx, Rpc::kHeartbeat, reactor)) return reactor;
    std::vector<LeaseRef> leases;
    if (grpc::Status v = WorkerLeases(req->worker_id(), req->leases(), &leases);
        !v.ok()) {
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
    if (!Begin(*ctx, Rpc::kReportResult, reactor)) return reactor;
    grpc::Status v = grpc::Status::OK;
    if (req->worker_id().empty())
      v = Invalid("worker_id", "required");
    else if (req->task_key().empty())
      v = Invalid("task_key", "required");
    else if (req->fencing_token() <= 0)
      v = Invalid("fencing_token", "must be > 0");
    else if (req->outcome_case() == v1::ReportResultRequest::OUTCOME_NOT_SET) {
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
    // Releases are accepted while draining: they hand work back.
    if (!Begin(*ctx, Rpc::kReleaseTasks, reactor, /*while_draining=*/true)) {
      return reactor;
    }
    std::vector<LeaseRef> leases;
    if (grpc::Status v = WorkerLeases(req->worker_id(), req->leases(), &leases);
        !v.ok()) {
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
  // Admission, then (unless `while_draining`) the draining answer: false
  // when either has finished the call's reactor.
  bool Begin(grpc::CallbackServerContext& ctx, Rpc rpc,
             grpc::ServerUnaryReactor* reactor, bool while_draining = false) {
    if (!s_->Admit(ctx, rpc, reactor)) return false;
    if (while_draining || !s_->Draining()) return true;
    FinishDraining(reactor);
    return false;
  }

  // A request's worker_id (required) and leases (ValidateLeases).
  static grpc::Status WorkerLeases(
      const std::string& worker_id,
      const google::protobuf::RepeatedPtrField<v1::LeaseProgress>& in,
      std::vector<LeaseRef>* out) {
    if (worker_id.empty()) return Invalid("worker_id", "required");
    return ValidateLeases(in, out);
  }

  ServerImpl* const s_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeGatewayHandlers(ServerImpl* server) {
  return std::make_unique<GatewayHandlers>(server);
}

}  // namespace sweepd::service_internal
