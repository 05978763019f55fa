#include "common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sweepd {
namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

// State of the RemoveAll walk in progress on this thread (nftw's callback takes
// no user data).
struct RemoveWalk {
  int err = 0;
  std::string failed_path;
};
thread_local RemoveWalk* t_remove_walk = nullptr;

int RemoveWalkEntry(const char* path, const struct stat* /*st*/, int type,
                    struct FTW* /*ftw*/) {
  // FTW_DEPTH: a directory (FTW_DP, or FTW_DNR if it could not be read) comes
  // after its contents. Everything else (files, symlinks, FTW_NS entries) is
  // unlinked.
  const int rc =
      (type == FTW_DP || type == FTW_DNR) ? ::rmdir(path) : ::unlink(path);
  if (rc != 0 && errno != ENOENT) {
    t_remove_walk->err = errno;
    t_remove_walk->failed_path = path;
    return 1;  // stop the walk
  }
  return 0;
}

absl::Status CopyError(const std::string& from, const std::string& to,
                       const std::string& what, const std::string& path,
                       int err) {
  const std::string message =
      absl::StrCat("cannot copy ", from, " to ", to, ": ", what, " ", path,
                   ": ", ErrnoText(err));
  if (err == ENOENT && path == from) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string JoinPath(const std::string& a, const std::string& b) {
  if (a.empty() || (!b.empty() && b.front() == '/')) return b;
  if (a.back() == '/') return a + b;
  return absl::StrCat(a, "/", b);
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string DirName(const std::string& path) {
  size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') --end;  // trailing slashes
  const size_t slash = path.rfind('/', end - 1);
  if (end == 0 || slash == std::string::npos) return ".";
  size_t dir_end = slash;
  while (dir_end > 0 && path[dir_end - 1] == '/') --dir_end;
  return dir_end == 0 ? "/" : path.substr(0, dir_end);
}

absl::Status MakeDirs(const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("cannot create directory: empty path");
  }
  if (IsDirectory(path)) return absl::OkStatus();
  // Each prefix ending before a '/', then the whole path.
  for (size_t end = path.find('/', 1);; end = path.find('/', end + 1)) {
    const std::string component =
        end == std::string::npos ? path : path.substr(0, end);
    if (::mkdir(component.c_str(), 0777) != 0) {
      const int err = errno;
      // EEXIST, or e.g. EROFS/EACCES on a directory that is already there.
      if (!IsDirectory(component)) {
        const std::string where =
            component == path ? "" : absl::StrCat(" (at ", component, ")");
        if (err == EEXIST || err == ENOTDIR) {
          return absl::FailedPreconditionError(
              absl::StrCat("cannot create directory ", path, ": ", component,
                           " exists and is not a directory"));
        }
        const std::string message = absl::StrCat(
            "cannot create directory ", path, ": ", ErrnoText(err), where);
        if (err == EACCES || err == EPERM) {
          return absl::PermissionDeniedError(message);
        }
        return absl::InternalError(message);
      }
    }
    if (end == std::string::npos) break;
  }
  return absl::OkStatus();
}

absl::Status RemoveAll(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::InternalError(
        absl::StrCat("cannot remove ", path, ": ", ErrnoText(errno)));
  }
  RemoveWalk walk;
  RemoveWalk* const outer = t_remove_walk;
  t_remove_walk = &walk;
  const int rc = ::nftw(path.c_str(), RemoveWalkEntry, /*nopenfd=*/32,
                        FTW_DEPTH | FTW_PHYS);
  const int nftw_errno = errno;
  t_remove_walk = outer;
  if (rc == 0) return absl::OkStatus();
  if (walk.err != 0) {
    return absl::InternalError(absl::StrCat("cannot remove ", path, ": ",
                                            walk.failed_path, ": ",
                                            ErrnoText(walk.err)));
  }
  return absl::InternalError(
      absl::StrCat("cannot remove ", path, ": ", ErrnoText(nftw_errno)));
}

absl::Status RenamePath(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    const int err = errno;
    const std::string message =
        absl::StrCat("rename ", from, " -> ", to, ": ", ErrnoText(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    return absl::InternalError(message);
  }
  return absl::OkStatus();
}

absl::Status CopyFile(const std::string& from, const std::string& to) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return CopyError(from, to, "opening", from, errno);
  struct stat st;
  if (::fstat(in, &st) != 0) {
    const int err = errno;
    ::close(in);
    return CopyError(from, to, "reading", from, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(in);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot copy ", from, " to ", to, ": ", from,
                     " is not a regular file"));
  }
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                         st.st_mode & 0777);
  if (out < 0) {
    const int err = errno;
    ::close(in);
    return CopyError(from, to, "creating", to, err);
  }
  char buffer[1 << 16];
  absl::Status status;
  while (status.ok()) {
    const ssize_t n = ::read(in, buffer, sizeof(buffer));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      status = CopyError(from, to, "reading", from, errno);
    } else if (!WriteAll(out, buffer, static_cast<size_t>(n))) {
      status = CopyError(from, to, "writing", to, errno);
    }
  }
  ::close(in);
  if (::close(out) != 0 && status.ok()) {
    status = CopyError(from, to, "closing", to, errno);
  }
  return status;
}

absl::StatusOr<uint64_t> FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    const std::string message =
        absl::StrCat("cannot stat ", path, ": ", ErrnoText(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    return absl::InternalError(message);
  }
  if (S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is a directory, not a file"));
  }
  return static_cast<uint64_t>(st.st_size);
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    const int err = errno;
    const std::string message =
        absl::StrCat("cannot list directory ", path, ": ", ErrnoText(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == ENOTDIR) return absl::FailedPreconditionError(message);
    return absl::InternalError(message);
  }
  std::vector<std::string> names;
  while (true) {
    errno = 0;
    const struct dirent* entry = ::readdir(dir);
    if (entry == nullptr) break;
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  const int err = errno;
  ::closedir(dir);
  if (err != 0) {
    return absl::InternalError(
        absl::StrCat("cannot list directory ", path, ": ", ErrnoText(err)));
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<std::string> MakeTempDir(const std::string& path_prefix) {
  const std::string pattern = path_prefix + "XXXXXX";
  std::string path = pattern;  // mkdtemp fills in the X's, also on failure
  if (::mkdtemp(path.data()) == nullptr) {
    return absl::InternalError(absl::StrCat(
        "cannot create temporary directory ", pattern, ": ", ErrnoText(errno)));
  }
  return path;
}

}  // namespace sweepd
