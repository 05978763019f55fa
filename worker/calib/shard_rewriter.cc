// Shard rewriter; see shard_rewriter.h for the contract.
#include "worker/calib/shard_rewriter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <set>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/status.h"
#include "worker/calib/durable_file.h"

namespace sweepd::calib {
namespace {

constexpr uint64_t kCopyPieceBytes = 256ull << 20;
constexpr size_t kHashPieceBytes = 64 << 20;
constexpr int kMaxThreads = 8;

// Bytes in memory.
struct Span {
  const char* data = nullptr;
  size_t n = 0;
};

// One contiguous part of a file: the length prefix, the header or a tensor.
struct Segment {
  uint64_t offset = 0;
  uint64_t n = 0;
  const char* out = nullptr;   // the output's bytes
  const char* base = nullptr;  // the base's bytes
  bool replaced = false;
};

// A file being rewritten.
struct FilePlan {
  const SafetensorsFile* base = nullptr;
  std::string out_path;
  std::string length_prefix;  // the 8-byte little-endian header length
  std::vector<Segment> segments;
  uint64_t size = 0;
  int in_fd = -1;
  int out_fd = -1;
};

// Either a range of a file to write, or a digest stream.
struct Job {
  // A write: [offset, offset + n) of `file`; `spans` are its bytes.
  // copy_file_range'd from the base unless `replaced`.
  FilePlan* file = nullptr;
  uint64_t offset = 0;
  uint64_t n = 0;
  bool replaced = false;
  // A digest: `spans` then `rest_spans` fed in order into `hasher` (null = a
  // new one), the result stored in `*digest`. When `fork_spans` is not
  // empty, the state after `spans` is also continued with them into
  // `*fork_digest`, as a job of its own.
  std::unique_ptr<Sha256> hasher;
  std::string* digest = nullptr;
  std::vector<Span> fork_spans;
  std::string* fork_digest = nullptr;
  std::vector<Span> rest_spans;

  std::vector<Span> spans;
  uint64_t bytes = 0;  // scheduling weight
  bool is_write() const { return file != nullptr; }
};

uint64_t SpanBytes(const std::vector<Span>& spans) {
  uint64_t n = 0;
  for (const Span& s : spans) n += s.n;
  return n;
}

// The jobs, shared by the pool: writes in file order on at most `max_writes`
// threads at once (they mostly wait for the kernel and the disk), digests
// longest first on the others. A job may add a follow-up job. Take blocks
// until a job is ready, or returns false once none is left and none is
// running (or one failed).
class JobQueue {
 public:
  explicit JobQueue(int max_writes) : max_writes_(max_writes) {}

  void Add(Job job) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (job.is_write()) {
      writes_.push_back(std::move(job));
    } else {
      digests_.push_back(std::move(job));
    }
  }
  // A write while fewer than max_writes run (the other threads hash
  // meanwhile), else the longest digest; false once nothing is left. A thread
  // waits while only writes are left and max_writes of them run.
  bool Take(Job* job) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &JobQueue::ReadyOrDone));
    if (!status_.ok() || (writes_.empty() && digests_.empty())) return false;
    if (!writes_.empty() &&
        (writes_running_ < max_writes_ || digests_.empty())) {
      *job = std::move(writes_.front());
      writes_.pop_front();
      ++writes_running_;
    } else {
      auto longest = std::max_element(
          digests_.begin(), digests_.end(),
          [](const Job& a, const Job& b) { return a.bytes < b.bytes; });
      *job = std::move(*longest);
      digests_.erase(longest);
    }
    ++running_;
    return true;
  }
  // Ends a job taken by Take, after any follow-up was added.
  void Done(const Job& job, const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --running_;
    if (job.is_write()) --writes_running_;
    if (!status.ok() && status_.ok()) {
      status_ = status;
      failed_.store(true);
    }
  }
  bool failed() const { return failed_.load(); }
  absl::Status status() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  bool ReadyOrDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !status_.ok() || !digests_.empty() || running_ == 0 ||
           (!writes_.empty() && writes_running_ < max_writes_);
  }

  const int max_writes_;
  mutable absl::Mutex mu_;
  std::deque<Job> writes_ ABSL_GUARDED_BY(mu_);
  int writes_running_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Job> digests_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> failed_{false};
};

absl::Status IoError(const std::string& what, const std::string& path,
                     int err) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

// The bytes of [offset, offset + n) of `file`'s output (or base).
std::vector<Span> SpansOf(const FilePlan& file, uint64_t offset, uint64_t n,
                          bool base) {
  std::vector<Span> spans;
  const uint64_t end = offset + n;
  for (const Segment& s : file.segments) {
    const uint64_t a = std::max(offset, s.offset);
    const uint64_t b = std::min(end, s.offset + s.n);
    if (a >= b) continue;
    const char* data = base ? s.base : s.out;
    spans.push_back({data + (a - s.offset), static_cast<size_t>(b - a)});
  }
  return spans;
}

// Writes one range of a file (see Job).
absl::Status RunWrite(const Job& job, std::atomic<bool>* copy_file_range_ok,
                      std::atomic<bool>* used_copy_file_range) {
  FilePlan& file = *job.file;
  uint64_t done = 0;
  if (!job.replaced && copy_file_range_ok->load()) {
    while (done < job.n) {
      loff_t in = static_cast<loff_t>(job.offset + done);
      loff_t out = in;
      const ssize_t r = ::copy_file_range(file.in_fd, &in, file.out_fd, &out,
                                          job.n - done, 0);
      if (r > 0) {
        done += static_cast<uint64_t>(r);
        used_copy_file_range->store(true);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      // Refused (another file system, an old kernel, a file system without
      // it) or a short base file: write the rest from the mapping, which
      // reports a real I/O error again.
      copy_file_range_ok->store(false);
      break;
    }
  }
  if (done < job.n) {
    uint64_t at = job.offset;
    for (const Span& s : job.spans) {
      const uint64_t end = at + s.n;
      if (end > job.offset + done) {
        const uint64_t skip =
            job.offset + done > at ? job.offset + done - at : 0;
        if (!WriteAll(file.out_fd, s.data + skip, s.n - skip, at + skip)) {
          return IoError("writing", file.out_path, errno);
        }
      }
      at = end;
    }
  }
  // Start the writeback now, so that the final fsync has little left to do.
  (void)::sync_file_range(file.out_fd, static_cast<off64_t>(job.offset),
                          static_cast<off64_t>(job.n), SYNC_FILE_RANGE_WRITE);
  return absl::OkStatus();
}

// Feeds `spans` into `*hasher` in pieces, stopping early once a job failed.
void Feed(Sha256* hasher, const std::vector<Span>& spans,
          const JobQueue& queue) {
  for (const Span& s : spans) {
    for (size_t at = 0; at < s.n && !queue.failed(); at += kHashPieceBytes) {
      hasher->Update(
          absl::string_view(s.data + at, std::min(kHashPieceBytes, s.n - at)));
    }
  }
}

// Runs one digest stream (see Job); a fork continues as a new job.
void RunDigest(Job* job, JobQueue* queue) {
  if (job->hasher == nullptr) job->hasher = std::make_unique<Sha256>();
  Feed(job->hasher.get(), job->spans, *queue);
  if (job->fork_digest != nullptr) {
    Job fork;
    fork.hasher = job->hasher->Clone();
    fork.spans = std::move(job->fork_spans);
    fork.digest = job->fork_digest;
    fork.bytes = SpanBytes(fork.spans);
    queue->Add(std::move(fork));
  }
  Feed(job->hasher.get(), job->rest_spans, *queue);
  *job->digest = job->hasher->HexDigest();
}

int ThreadCount(int requested) {
  return requested > 0
             ? requested
             : std::min<int>(kMaxThreads,
                             std::max(1u, std::thread::hardware_concurrency()));
}

// Runs `work(i)` for i in [0, n) on up to `threads` threads.
template <typename Work>
void ParallelFor(size_t n, int threads, Work work) {
  std::atomic<size_t> next{0};
  auto loop = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) work(i);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads && static_cast<size_t>(t) < n; ++t) {
    pool.emplace_back(loop);
  }
  loop();
  for (std::thread& th : pool) th.join();
}

}  // namespace

absl::StatusOr<ShardRewriteResult> RewriteShards(
    const ShardRewriteRequest& request) {
  const std::map<std::string, std::string> no_replacements;
  const std::map<std::string, std::string>& replaced =
      request.replaced != nullptr ? *request.replaced : no_replacements;
  if (!request.base_identities.empty() &&
      request.base_identities.size() != request.base_files.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shard rewrite: ", request.base_identities.size(),
        " base identities for ", request.base_files.size(), " files"));
  }

  ShardRewriteResult result;
  result.files.resize(request.base_files.size());
  std::vector<FilePlan> files(request.base_files.size());
  std::set<std::string> names;
  size_t replaced_found = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const SafetensorsFile& base = *request.base_files[f];
    FilePlan& plan = files[f];
    RewrittenShard& out = result.files[f];
    plan.base = &base;
    out.name = BaseName(base.path());
    if (!names.insert(out.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard rewrite: two base files are named ", out.name));
    }
    plan.out_path = JoinPath(request.out_dir, out.name);
    const absl::string_view header = base.header();
    const uint64_t header_len = header.size();
    plan.length_prefix.assign(8, '\0');
    for (int i = 0; i < 8; ++i) {
      plan.length_prefix[i] = static_cast<char>((header_len >> (8 * i)) & 0xff);
    }
    plan.segments.push_back(
        {0, 8, plan.length_prefix.data(), plan.length_prefix.data(), false});
    plan.segments.push_back(
        {8, header_len, header.data(), header.data(), false});
    uint64_t offset = 8 + header_len;
    const std::vector<TensorView>& tensors = base.tensors();
    out.tensor_sha256.resize(tensors.size());
    for (const TensorView& t : tensors) {
      Segment s;
      s.offset = offset;
      s.n = t.nbytes;
      s.base = reinterpret_cast<const char*>(t.data);
      s.out = s.base;
      if (auto r = replaced.find(t.name); r != replaced.end()) {
        if (r->second.size() != t.nbytes) {
          return absl::InvalidArgumentError(absl::StrCat(
              "shard rewrite: the replacement of tensor '", t.name, "' has ",
              r->second.size(), " bytes, the tensor ", t.nbytes));
        }
        s.out = r->second.data();
        s.replaced = true;
        result.replaced_base_sha256[t.name];  // filled by a job
        ++replaced_found;
      }
      plan.segments.push_back(s);
      offset += t.nbytes;
    }
    plan.size = offset;
    out.size = offset;
  }
  if (replaced_found != replaced.size()) {
    for (const auto& [name, bytes] : replaced) {
      if (!result.replaced_base_sha256.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "shard rewrite: no base file holds the replaced tensor '", name,
            "'"));
      }
    }
  }

  // Open every file; the guard closes them on every path.
  struct Fds {
    std::vector<FilePlan>* files;
    ~Fds() {
      for (FilePlan& p : *files) {
        if (p.in_fd >= 0) ::close(p.in_fd);
        if (p.out_fd >= 0) ::close(p.out_fd);
      }
    }
  } fds_guard{&files};
  for (size_t f = 0; f < files.size(); ++f) {
    FilePlan& plan = files[f];
    const std::string& in_path = plan.base->path();
    plan.in_fd = ::open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (plan.in_fd < 0) return IoError("cannot open", in_path, errno);
    struct stat st;
    if (::fstat(plan.in_fd, &st) != 0) return IoError("stat", in_path, errno);
    const int64_t mtime_ns =
        static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
        st.st_mtim.tv_nsec;
    if (!request.base_identities.empty()) {
      const FileIdentity& want = request.base_identities[f];
      if (want.inode != static_cast<uint64_t>(st.st_ino) ||
          want.device != static_cast<uint64_t>(st.st_dev) ||
          want.size != static_cast<uint64_t>(st.st_size) ||
          want.mtime_ns != mtime_ns) {
        return absl::FailedPreconditionError(absl::StrCat(
            "base file ", in_path,
            " changed while it was being materialized (it is not the file "
            "that was mapped); run the task again once it is complete"));
      }
    }
    if (static_cast<uint64_t>(st.st_size) != plan.size) {
      return absl::FailedPreconditionError(
          absl::StrCat("base file ", in_path, " has ", st.st_size,
                       " bytes, its header and tensors ", plan.size,
                       " (changed while it was being materialized?)"));
    }
    (void)::posix_fadvise(plan.in_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    plan.out_fd = ::open(plan.out_path.c_str(),
                         O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (plan.out_fd < 0) return IoError("cannot create", plan.out_path, errno);
    if (::ftruncate(plan.out_fd, static_cast<off_t>(plan.size)) != 0) {
      return IoError("writing", plan.out_path, errno);
    }
  }

  // The jobs.
  const int threads = ThreadCount(request.threads);
  JobQueue queue(std::max(1, threads / 4));
  for (size_t f = 0; f < files.size(); ++f) {
    FilePlan& plan = files[f];
    RewrittenShard& out = result.files[f];
    // Writes: runs of base bytes (copied) and replaced tensors, in pieces.
    size_t i = 0;
    while (i < plan.segments.size()) {
      const bool is_replaced = plan.segments[i].replaced;
      const uint64_t begin = plan.segments[i].offset;
      uint64_t end = begin + plan.segments[i].n;
      for (++i; !is_replaced && i < plan.segments.size() &&
                !plan.segments[i].replaced;
           ++i) {
        end = plan.segments[i].offset + plan.segments[i].n;
      }
      for (uint64_t at = begin; at < end; at += kCopyPieceBytes) {
        Job w;
        w.file = &plan;
        w.offset = at;
        w.n = std::min(kCopyPieceBytes, end - at);
        w.replaced = is_replaced;
        w.spans = SpansOf(plan, w.offset, w.n, /*base=*/false);
        w.bytes = w.n;
        queue.Add(std::move(w));
      }
    }
    // Digests of the tensors (and of the replaced tensors' base bytes).
    const std::vector<TensorView>& tensors = plan.base->tensors();
    for (size_t t = 0; t < tensors.size(); ++t) {
      const Segment& s = plan.segments[t + 2];
      Job d;
      d.spans = {{s.out, static_cast<size_t>(s.n)}};
      d.digest = &out.tensor_sha256[t];
      d.bytes = s.n;
      queue.Add(std::move(d));
      if (s.replaced) {
        Job b;
        b.spans = {{s.base, static_cast<size_t>(s.n)}};
        b.digest = &result.replaced_base_sha256[tensors[t].name];
        b.bytes = s.n;
        queue.Add(std::move(b));
      }
    }
    // The file's digest; the base file's forks off at the first replacement.
    Job d;
    d.digest = &out.sha256;
    uint64_t first_replaced = plan.size;
    for (const Segment& s : plan.segments) {
      if (s.replaced) {
        first_replaced = s.offset;
        break;
      }
    }
    if (request.base_file_digests && first_replaced < plan.size) {
      // The shared prefix, then the output's rest in a fork and the base's
      // rest here.
      const uint64_t rest = plan.size - first_replaced;
      d.spans = SpansOf(plan, 0, first_replaced, /*base=*/false);
      d.fork_spans = SpansOf(plan, first_replaced, rest, /*base=*/false);
      d.fork_digest = &out.sha256;
      d.rest_spans = SpansOf(plan, first_replaced, rest, /*base=*/true);
      d.digest = &out.base_sha256;
      d.bytes = plan.size + rest;
    } else {
      d.spans = SpansOf(plan, 0, plan.size, /*base=*/false);
      d.bytes = plan.size;
    }
    queue.Add(std::move(d));
  }

  std::atomic<bool> copy_file_range_ok{request.use_copy_file_range};
  std::atomic<bool> used_copy_file_range{false};
  auto worker = [&](size_t) {
    Job job;
    while (queue.Take(&job)) {
      absl::Status status;
      if (job.is_write()) {
        status = RunWrite(job, &copy_file_range_ok, &used_copy_file_range);
      } else {
        RunDigest(&job, &queue);
      }
      queue.Done(job, status);
    }
  };
  ParallelFor(static_cast<size_t>(threads), threads, worker);
  RETURN_IF_ERROR(queue.status());
  result.used_copy_file_range = used_copy_file_range.load();

  // The base file's digest, for a file without replacements: the output's.
  for (size_t f = 0; f < files.size(); ++f) {
    RewrittenShard& out = result.files[f];
    if (request.base_file_digests && out.base_sha256.empty()) {
      out.base_sha256 = out.sha256;
    }
  }

  // fsync every output file (in parallel: each waits for its own writeback).
  std::vector<absl::Status> synced(files.size());
  ParallelFor(files.size(), threads, [&](size_t f) {
    if (::fsync(files[f].out_fd) != 0) {
      synced[f] = IoError("fsync", files[f].out_path, errno);
    }
  });
  for (const absl::Status& s : synced) RETURN_IF_ERROR(s);
  for (size_t f = 0; f < files.size(); ++f) {
    FilePlan& plan = files[f];
    const int fd = plan.out_fd;
    plan.out_fd = -1;
    if (::close(fd) != 0) return IoError("closing", plan.out_path, errno);
    ASSIGN_OR_RETURN(result.files[f].identity, StatFileIdentity(plan.out_path));
  }
  return result;
}

}  // namespace sweepd::calib
