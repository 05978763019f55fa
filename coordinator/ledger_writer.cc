// LedgerImpl: the writer thread (group commit), the callback thread, WAL
// checkpoints and fencing-token blocks.
#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "coordinator/ledger_impl.h"
#include "coordinator/ledger_schema.h"

namespace sweepd::ledger_internal {

using v1::TaskState;

namespace {

// SQLITE_FULL and the I/O errors: the disk, not the ledger, is at fault, and
// a later commit may succeed.
bool IsDiskError(int extended_rc) {
  const int rc = extended_rc & 0xff;
  return rc == SQLITE_FULL || rc == SQLITE_IOERR;
}

absl::Status DiskError(sqlite3* db, int rc, const std::string& path) {
  const std::string errstr = sqlite3_errstr(rc);
  const std::string errmsg = sqlite3_errmsg(db);
  return absl::UnavailableError(absl::StrCat(
      "ledger ", path, " cannot commit: ",
      (rc & 0xff) == SQLITE_FULL ? "disk full" : "I/O error", " (", errstr,
      errmsg == errstr ? "" : "; " + errmsg,
      "); sweepd refuses leases and submits and serves reads until writes "
      "succeed again"));
}

}  // namespace

std::optional<int64_t> LedgerImpl::TakeReservedTokens(int n) {
  if (n <= 0) return std::nullopt;
  absl::MutexLock lock(&token_mu_);
  const int64_t block = std::max<int64_t>(1, options_.token_block);
  if (last_token_ + n > durable_token_limit_) {
    want_token_block_ = true;  // the next transaction persists a block
    ++token_misses_;
    return std::nullopt;
  }
  ++token_grants_;
  const int64_t first = last_token_ + 1;
  last_token_ += n;
  if (durable_token_limit_ - last_token_ < block / 2) want_token_block_ = true;
  return first;
}

void LedgerImpl::Barrier(Callback<bool> done) {
  Enqueue<bool>([]() -> absl::StatusOr<bool> { return true; }, std::move(done));
}

absl::Status LedgerImpl::Flush() {
  absl::Notification n;
  absl::Status result;
  Barrier([&](absl::StatusOr<bool> r) {
    result = r.status();
    n.Notify();
  });
  n.WaitForNotification();
  return result;
}

void LedgerImpl::WriterLoop() {
  while (true) {
    std::vector<WriteOp> batch;
    {
      absl::MutexLock lock(&queue_mu_);
      while (!closed_ && queue_.empty()) {
        if (write_error_.ok()) {
          queue_cv_.Wait(&queue_mu_);
          continue;
        }
        // No space (or I/O errors): look again now and then, so the ledger
        // recovers by itself even when every caller refuses to write.
        if (queue_cv_.WaitWithTimeout(
                &queue_mu_,
                absl::Milliseconds(options_.write_probe_interval_ms)) &&
            queue_.empty() && !closed_) {
          queue_mu_.Unlock();
          ProbeWrite();
          queue_mu_.Lock();
        }
      }
      if (queue_.empty() && closed_) {
        writer_exited_ = true;
        return;
      }
      while (!queue_.empty() &&
             static_cast<int>(batch.size()) < options_.max_batch_ops) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    RunBatch(batch);
  }
}

void LedgerImpl::RunBatch(std::vector<WriteOp>& batch) {
  using SteadyClock = std::chrono::steady_clock;
  auto micros = [](SteadyClock::time_point a, SteadyClock::time_point b) {
    return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count();
  };
  const auto t_start = SteadyClock::now();
  auto t_commit = t_start;
  auto t_committed = t_start;
  std::vector<absl::Status> statuses(batch.size());
  bool any_apply = false;
  for (auto& op : batch) any_apply |= (op.apply != nullptr);
  absl::Status commit = absl::OkStatus();
  int64_t token_limit = 0;  // fencing_counter written by this transaction
  // The SQLite error of a failed operation or commit when it was the disk's
  // (SQLITE_FULL, SQLITE_IOERR*): the whole batch then fails, nothing of it
  // is kept, and the ledger is not writable until a commit succeeds.
  int disk_rc = SQLITE_OK;
  if (any_apply) {
    touched_sweeps_.clear();
    tasks_done_.clear();
    commit = writer_->Exec("BEGIN IMMEDIATE");
    if (commit.ok()) {
      for (size_t i = 0; i < batch.size(); ++i) {
        if (batch[i].apply == nullptr) continue;
        if (sqlite3_get_autocommit(writer_->db())) {
          // SQLite rolled the transaction back itself (it does so on some
          // I/O errors): nothing may run outside it.
          disk_rc = SQLITE_IOERR;
          commit = absl::AbortedError("the transaction was rolled back");
          break;
        }
        if (batch[i].single_statement) {
          op_tasks_done_.clear();
          statuses[i] = batch[i].apply();
          if (!statuses[i].ok() &&
              IsDiskError(sqlite3_extended_errcode(writer_->db()))) {
            disk_rc = sqlite3_extended_errcode(writer_->db());
            commit = statuses[i];
            break;
          }
          if (statuses[i].ok()) {
            for (const std::string& w : op_tasks_done_) tasks_done_[w]++;
          }
          continue;
        }
        absl::Status sp = writer_->Run("SAVEPOINT op");
        if (!sp.ok()) {
          statuses[i] = sp;
          continue;
        }
        op_tasks_done_.clear();
        statuses[i] = batch[i].apply();
        if (!statuses[i].ok() &&
            IsDiskError(sqlite3_extended_errcode(writer_->db()))) {
          disk_rc = sqlite3_extended_errcode(writer_->db());
          commit = statuses[i];
          break;
        }
        if (statuses[i].ok()) {
          statuses[i] = writer_->Run("RELEASE op");
        } else {
          writer_->Exec("ROLLBACK TO op").IgnoreError();
          writer_->Exec("RELEASE op").IgnoreError();
        }
        if (statuses[i].ok()) {
          for (const std::string& w : op_tasks_done_) tasks_done_[w]++;
        }
      }
      if (commit.ok()) commit = UpdateSweepStates();
      if (commit.ok()) commit = FlushTasksDone();
      if (commit.ok()) {
        // Persist the token high-water mark: every token issued inside this
        // transaction (LeaseTasks) is covered, and when leases are being
        // granted from the mirror, a fresh block of tokens is reserved ahead.
        absl::MutexLock lock(&token_mu_);
        if (want_token_block_) {
          token_limit =
              last_token_ + std::max<int64_t>(1, options_.token_block);
          want_token_block_ = false;
        } else if (last_token_ > durable_token_limit_) {
          token_limit = last_token_;
        }
      }
      if (commit.ok() && token_limit > 0) {
        commit = SetFencingCounter(token_limit);
      }
      t_commit = SteadyClock::now();
      if (commit.ok()) commit = writer_->Exec("COMMIT");
      t_committed = SteadyClock::now();
    }
    if (!commit.ok()) {
      if (disk_rc == SQLITE_OK &&
          IsDiskError(sqlite3_extended_errcode(writer_->db()))) {
        disk_rc = sqlite3_extended_errcode(writer_->db());
      }
      const absl::Status disk = DiskError(writer_->db(), disk_rc, path_);
      if (!sqlite3_get_autocommit(writer_->db())) {
        writer_->Exec("ROLLBACK").IgnoreError();
      }
      absl::MutexLock lock(&queue_mu_);
      if (disk_rc != SQLITE_OK && sqlite3_get_autocommit(writer_->db())) {
        // Rolled back cleanly: stay open, refuse work, probe for space.
        if (write_error_.ok()) {
          SWEEPD_LOG(ERROR) << disk << " (" << commit << ")";
        }
        write_error_ = disk;
        commit = disk;
      } else {
        SWEEPD_LOG(ERROR) << "ledger " << path_
                          << ": commit failed, writer stops: " << commit;
        broken_ = absl::UnavailableError(
            absl::StrCat("ledger commit failed: ", commit.message()));
        commit = broken_;
      }
    } else {
      if (token_limit > 0) {
        absl::MutexLock lock(&token_mu_);
        durable_token_limit_ = std::max(durable_token_limit_, token_limit);
      }
      absl::MutexLock lock(&queue_mu_);
      if (any_apply && !write_error_.ok()) {
        SWEEPD_LOG(INFO) << "ledger " << path_ << " commits again";
        write_error_ = absl::OkStatus();
      }
      stats_.transactions++;
      stats_.operations += static_cast<int64_t>(batch.size());
      stats_.max_batch_ops =
          std::max<int64_t>(stats_.max_batch_ops, batch.size());
      stats_.apply_us += micros(t_start, t_commit);
      stats_.commit_us += micros(t_commit, t_committed);
      stats_.max_commit_us = std::max<int64_t>(stats_.max_commit_us,
                                               micros(t_commit, t_committed));
    }
    if (commit.ok() && options_.commit_observer) {
      options_.commit_observer(micros(t_start, t_committed) / 1e6,
                               static_cast<int64_t>(batch.size()));
    }
  }
  // Callbacks run on the callback thread, in order, while this thread
  // starts the next transaction.
  CallbackBatch done;
  done.finish.reserve(batch.size());
  done.statuses.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    done.finish.push_back(std::move(batch[i].finish));
    done.statuses.push_back(commit.ok() ? statuses[i] : commit);
  }
  {
    absl::MutexLock lock(&callback_mu_);
    callback_queue_.push_back(std::move(done));
  }
  callback_cv_.Signal();
}

void LedgerImpl::ProbeWrite() {
  absl::Status s = writer_->Exec("BEGIN IMMEDIATE");
  if (s.ok()) {
    s = writer_->Exec(absl::StrCat(
        "INSERT OR REPLACE INTO meta(key, value) VALUES('write_probe_ms', ",
        clock_->NowMs(), ")"));
  }
  if (s.ok()) s = writer_->Exec("COMMIT");
  if (!s.ok()) {
    if (!sqlite3_get_autocommit(writer_->db())) {
      writer_->Exec("ROLLBACK").IgnoreError();
    }
    return;
  }
  absl::MutexLock lock(&queue_mu_);
  if (!write_error_.ok()) {
    SWEEPD_LOG(INFO) << "ledger " << path_ << " commits again (probe)";
    write_error_ = absl::OkStatus();
  }
}

void LedgerImpl::CallbackLoop() {
  while (true) {
    CallbackBatch batch;
    {
      absl::MutexLock lock(&callback_mu_);
      while (!callbacks_closed_ && callback_queue_.empty()) {
        callback_cv_.Wait(&callback_mu_);
      }
      if (callback_queue_.empty()) return;
      batch = std::move(callback_queue_.front());
      callback_queue_.pop_front();
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < batch.finish.size(); ++i) {
      batch.finish[i](batch.statuses[i]);
    }
    const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - t0)
                           .count();
    absl::MutexLock lock(&queue_mu_);
    stats_.callback_us += us;
  }
}

int LedgerImpl::WalHook(void* self, sqlite3* db, const char*, int pages) {
  auto* ledger = static_cast<LedgerImpl*>(self);
  // Only a checkpoint that backfills every frame lets the next transaction
  // restart the WAL from its beginning, and under a steady write load the
  // background checkpointer never catches up with the writer. So the writer
  // finishes the job itself at kWalWriterCheckpointPages: by then the
  // checkpointer has copied most frames and only the rest is copied here.
  // (A PASSIVE checkpoint that finds the checkpointer busy returns at once;
  // the next commit tries again.)
  if (pages >= kWalWriterCheckpointPages) {
    sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                              nullptr);
  } else if (pages >= kWalCheckpointPages) {
    {
      absl::MutexLock lock(&ledger->checkpoint_mu_);
      ledger->checkpoint_wanted_ = true;
    }
    ledger->checkpoint_cv_.Signal();
  }
  return SQLITE_OK;
}

void LedgerImpl::CheckpointLoop() {
  while (true) {
    {
      absl::MutexLock lock(&checkpoint_mu_);
      while (!checkpoint_closed_ && !checkpoint_wanted_) {
        checkpoint_cv_.Wait(&checkpoint_mu_);
      }
      if (checkpoint_closed_) return;
      checkpoint_wanted_ = false;
    }
    int rc =
        sqlite3_wal_checkpoint_v2(checkpointer_->db(), nullptr,
                                  SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      SWEEPD_LOG(WARNING) << "ledger " << path_ << ": checkpoint failed: "
                          << sqlite3_errmsg(checkpointer_->db());
    }
  }
}

absl::Status LedgerImpl::SetFencingCounter(int64_t value) {
  ASSIGN_OR_RETURN(
      Stmt * s,
      writer_->Prepare("UPDATE meta SET value=? WHERE key='fencing_counter'"));
  return s->Bind(value).Run();
}

int64_t LedgerImpl::NextTokenInTransaction() {
  absl::MutexLock lock(&token_mu_);
  return ++last_token_;
}

}  // namespace sweepd::ledger_internal
