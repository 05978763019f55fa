#include "coordinator/ledger.h"

#include <sqlite3.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/ledger_impl.h"
#include "coordinator/ledger_schema.h"
#include "coordinator/ledger_sqlite.h"

namespace sweepd::ledger_internal {

absl::Status LedgerImpl::Init() {
  ASSIGN_OR_RETURN(writer_, Conn::Open(path_, /*writer=*/true));
  {
    ASSIGN_OR_RETURN(Stmt * s, writer_->Prepare("PRAGMA journal_mode=WAL"));
    ASSIGN_OR_RETURN(bool row, s->Step());
    std::string mode = row ? s->Text(0) : "";
    if (mode != "wal") {
      return absl::FailedPreconditionError(absl::StrCat(
          "ledger ", path_, ": cannot enable WAL mode (got '", mode, "')"));
    }
  }
  RETURN_IF_ERROR(writer_->Exec("PRAGMA synchronous=FULL"));
  RETURN_IF_ERROR(writer_->Exec("PRAGMA foreign_keys=OFF"));
  // Page cache large enough for the hot part of the tasks table and its
  // indices; temporary b-trees in memory. Checkpoints mostly run on their
  // own thread and connection (CheckpointLoop); the writer finishes one when
  // the WAL reaches kWalWriterCheckpointPages so the WAL restarts (WalHook).
  RETURN_IF_ERROR(writer_->Exec("PRAGMA cache_size=-65536"));
  RETURN_IF_ERROR(writer_->Exec("PRAGMA temp_store=MEMORY"));
  RETURN_IF_ERROR(writer_->Exec("PRAGMA wal_autocheckpoint=0"));
  RETURN_IF_ERROR(Annotate(Migrate(*writer_, clock_->NowMs()), path_));
  {
    ASSIGN_OR_RETURN(
        Stmt * s,
        writer_->Prepare("SELECT value FROM meta WHERE key='fencing_counter'"));
    ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row)
      return absl::DataLossError(
          absl::StrCat(path_, ": meta.fencing_counter missing"));
    absl::MutexLock lock(&token_mu_);
    last_token_ = s->Int(0);
    durable_token_limit_ = last_token_;
  }
  {
    ASSIGN_OR_RETURN(Stmt * s,
                     writer_->Prepare("SELECT sweep_id, spec FROM sweeps"));
    while (true) {
      ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) break;
      v1::SweepSpec spec;
      if (!spec.ParseFromString(s->Text(1))) {
        return absl::DataLossError(absl::StrCat(path_, ": sweep ", s->Text(0),
                                                " has an unparsable spec"));
      }
      policies_[s->Text(0)] = PolicyOf(spec);
    }
  }
  for (int i = 0; i < std::max(1, options_.reader_connections); ++i) {
    ASSIGN_OR_RETURN(auto conn, Conn::Open(path_, /*writer=*/false));
    RETURN_IF_ERROR(conn->Exec("PRAGMA query_only=1"));
    absl::MutexLock lock(&readers_mu_);
    readers_.push_back(std::move(conn));
    free_readers_.push_back(readers_.back().get());
  }
  ASSIGN_OR_RETURN(checkpointer_, Conn::Open(path_, /*writer=*/false));
  sqlite3_wal_hook(writer_->db(), &LedgerImpl::WalHook, this);
  callback_thread_ = std::thread([this] { CallbackLoop(); });
  checkpoint_thread_ = std::thread([this] { CheckpointLoop(); });
  writer_thread_ = std::thread([this] { WriterLoop(); });
  return absl::OkStatus();
}

int64_t LedgerImpl::LeaseMsOf(const v1::SweepSpec& spec) const {
  return PolicyOf(spec).lease_ms;
}

absl::Status LedgerImpl::Close() {
  {
    absl::MutexLock lock(&queue_mu_);
    if (closed_) return absl::OkStatus();
    closed_ = true;
    queue_cv_.SignalAll();
  }
  if (writer_thread_.joinable()) writer_thread_.join();
  {
    absl::MutexLock lock(&callback_mu_);
    callbacks_closed_ = true;
  }
  callback_cv_.SignalAll();
  if (callback_thread_.joinable()) callback_thread_.join();
  {
    absl::MutexLock lock(&checkpoint_mu_);
    checkpoint_closed_ = true;
  }
  checkpoint_cv_.SignalAll();
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
  checkpointer_.reset();
  {
    absl::MutexLock lock(&readers_mu_);
    readers_mu_.Await(absl::Condition(
        +[](LedgerImpl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->readers_mu_) {
          return self->free_readers_.size() == self->readers_.size();
        },
        this));
    free_readers_.clear();
    readers_.clear();
  }
  if (writer_ != nullptr) {
    // Fold the WAL back into the main file so a copied ledger is
    // self-contained.
    writer_->Exec("PRAGMA wal_checkpoint(TRUNCATE)").IgnoreError();
    writer_.reset();
  }
  return health();
}

absl::Status LedgerImpl::health() {
  absl::MutexLock lock(&queue_mu_);
  return broken_;
}

absl::Status LedgerImpl::writable() {
  absl::MutexLock lock(&queue_mu_);
  return write_error_;
}

LedgerStats LedgerImpl::stats() {
  LedgerStats out;
  {
    absl::MutexLock lock(&queue_mu_);
    out = stats_;
  }
  absl::MutexLock lock(&token_mu_);
  out.reserved_token_grants = token_grants_;
  out.reserved_token_misses = token_misses_;
  return out;
}

Policy LedgerImpl::PolicyOf(const v1::SweepSpec& spec) const {
  return EffectivePolicyOf(spec.policy(), options_.policy_defaults);
}

Policy LedgerImpl::PolicyFor(const std::string& sweep_id) const {
  auto it = policies_.find(sweep_id);
  if (it != policies_.end()) return it->second;
  return EffectivePolicyOf(v1::ExecutionPolicy(), options_.policy_defaults);
}

}  // namespace sweepd::ledger_internal

namespace sweepd {

using ledger_internal::LedgerImpl;
using ledger_internal::SqlError;

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(
    const std::string& path, const LedgerOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError("ledger path is empty");
  if (options.clock == nullptr)
    return absl::InvalidArgumentError("LedgerOptions.clock is null");
  auto ledger = std::make_unique<LedgerImpl>(path, options);
  RETURN_IF_ERROR(
      Annotate(ledger->Init(), absl::StrCat("opening ledger ", path)));
  return std::unique_ptr<Ledger>(std::move(ledger));
}

std::string FormatLedgerStats(const LedgerStats& s) {
  const double txns = std::max<int64_t>(1, s.transactions);
  return absl::StrFormat(
      "transactions=%d operations=%d ops/txn=%.1f max_batch_ops=%d "
      "apply_us/txn=%.0f commit_us/txn=%.0f max_commit_us=%d "
      "callback_us/txn=%.0f reserved_token_grants=%d "
      "reserved_token_misses=%d",
      s.transactions, s.operations, s.operations / txns, s.max_batch_ops,
      s.apply_us / txns, s.commit_us / txns, s.max_commit_us,
      s.callback_us / txns, s.reserved_token_grants, s.reserved_token_misses);
}

absl::Status CheckLedgerIntegrity(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqlError(db, rc, absl::StrCat("open ", path));
    sqlite3_close(db);
    return s;
  }
  sqlite3_stmt* stmt = nullptr;
  std::string first;
  rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(stmt, 0);
      first = t != nullptr ? reinterpret_cast<const char*>(t) : "";
    }
  }
  absl::Status status;
  if (rc != SQLITE_ROW) {
    status = SqlError(db, rc, absl::StrCat("integrity_check ", path));
  } else if (first != "ok") {
    status = absl::DataLossError(
        absl::StrCat("integrity_check of ", path, ": ", first));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return status;
}

}  // namespace sweepd
