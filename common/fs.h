// File-system helpers on plain POSIX calls (stat, mkdir, nftw, rename, ...),
// used instead of the C++17 standard filesystem library everywhere in sweepd:
// libtorch (PyTorch 2.x) exports its own copy of that library's symbols, and in
// a binary that links it our calls can bind to that copy and crash (remove_all
// did, in tests and jobs_bench). Paths are plain std::string; nothing is owned
// or cached between calls. Every function is stateless and thread-safe
// (RemoveAll keeps its walk state in thread-local storage); calls on the same
// paths from several threads race only as the underlying system calls do.
#ifndef SWEEPD_COMMON_FS_H_
#define SWEEPD_COMMON_FS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sweepd {

// True if `path` names anything (symlinks followed, like stat(2)).
bool PathExists(const std::string& path);

// True if `path` is a directory (symlinks followed).
bool IsDirectory(const std::string& path);

// `a` + "/" + `b`, with no doubled separator; `b` alone if `a` is empty or `b`
// is absolute (the rules of the standard library's path::operator/).
std::string JoinPath(const std::string& a, const std::string& b);

// The last component of `path` ("c" for "a/b/c", "" for "a/b/").
std::string BaseName(const std::string& path);

// The directory part of `path`, as dirname(3): "a/b" for "a/b/c", "." for "c",
// "/" for "/c".
std::string DirName(const std::string& path);

// mkdir -p: creates `path` and missing parents (mode 0777 before umask). OK if
// `path` already is a directory. Fails if it or a parent exists but is not a
// directory, or mkdir fails; the message names `path` (and the component, if
// another one failed) and the errno text. PERMISSION_DENIED for EACCES/EPERM,
// FAILED_PRECONDITION when a component is not a directory, INTERNAL otherwise.
absl::Status MakeDirs(const std::string& path);

// rm -rf: removes `path` and, if it is a directory, everything under it, depth
// first, without following symlinks (a link is removed, its target is left
// alone). OK if `path` does not exist. On failure the message names the entry
// that could not be removed.
absl::Status RemoveAll(const std::string& path);

// rename(2) `from` to `to` (atomic within one file system, replaces an existing
// file). On failure the message is "rename <from> -> <to>: <errno text>";
// NOT_FOUND for ENOENT, INTERNAL otherwise.
absl::Status RenamePath(const std::string& from, const std::string& to);

// Copies the bytes of regular file `from` to `to`, replacing `to` if it exists;
// a new file gets `from`'s permission bits. NOT_FOUND if `from` does not
// exist, FAILED_PRECONDITION if it is not a regular file, INTERNAL otherwise;
// the message names both paths.
absl::Status CopyFile(const std::string& from, const std::string& to);

// Size in bytes of the file at `path` (symlinks followed). NOT_FOUND if it does
// not exist, FAILED_PRECONDITION if it is a directory.
absl::StatusOr<uint64_t> FileSize(const std::string& path);

// Names of the entries of directory `path` (not "." or ".."), sorted. NOT_FOUND
// if `path` does not exist, FAILED_PRECONDITION if it is not a directory,
// INTERNAL for other errors.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path);

// Creates a fresh, private directory named `path_prefix` followed by six random
// characters (mkdtemp(3)), e.g. MakeTempDir("/tmp/foo.") -> "/tmp/foo.a1B2c3";
// returns its path. The caller owns the directory (remove it with RemoveAll).
absl::StatusOr<std::string> MakeTempDir(const std::string& path_prefix);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_FS_H_
