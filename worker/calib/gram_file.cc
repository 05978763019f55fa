#include "worker/calib/gram_file.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sweepd::calib {
namespace {

absl::Status Invalid(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// The tensor `name` of `file` as `dtype` with `shape`; nullptr when absent
// and optional.
absl::StatusOr<const TensorView*> Expect(const SafetensorsFile& file,
                                         const std::string& name, StDtype dtype,
                                         const std::vector<int64_t>& shape,
                                         bool optional) {
  const TensorView* t = file.Find(name);
  if (t == nullptr) {
    if (optional) return nullptr;
    return Invalid(file.path(),
                   absl::StrCat("Gram has no tensor '", name, "'"));
  }
  if (t->dtype != dtype) {
    return Invalid(
        file.path(),
        absl::StrCat("Gram tensor '", name, "' is ", StDtypeName(t->dtype),
                     ", expected ", StDtypeName(dtype)));
  }
  if (!shape.empty() && t->shape != shape) {
    return Invalid(file.path(), absl::StrCat("Gram tensor '", name,
                                             "' has the wrong shape"));
  }
  return t;
}

std::vector<double> Doubles(const TensorView& t) {
  std::vector<double> out(t.numel());
  std::memcpy(out.data(), t.data, out.size() * sizeof(double));
  return out;
}

std::string Describe(const Gram& g) {
  auto it = g.metadata.find("point");
  const std::string point = it != g.metadata.end() ? it->second : "?";
  auto sh = g.metadata.find("shard");
  return absl::StrCat(point, sh != g.metadata.end() ? " shard " : "",
                      sh != g.metadata.end() ? sh->second : "");
}

}  // namespace

absl::StatusOr<ArtifactInfo> PutSafetensors(ArtifactStore* store,
                                            const std::string& name,
                                            const SafetensorsWriter& writer) {
  std::string tmpl = absl::StrCat(store->root(), "/tmp/safetensors-XXXXXX");
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("creating a temp file like ", tmpl, " failed"));
  }
  ::close(fd);
  absl::Status written = writer.WriteFile(tmpl);
  absl::StatusOr<ArtifactInfo> info =
      written.ok() ? store->PutFile(name, tmpl)
                   : absl::StatusOr<ArtifactInfo>(written);
  ::unlink(tmpl.c_str());
  return info;
}

absl::StatusOr<ArtifactInfo> PutGram(ArtifactStore* store,
                                     const std::string& name,
                                     const Gram& gram) {
  if (static_cast<int64_t>(gram.xtx.size()) != gram.d * gram.d ||
      static_cast<int64_t>(gram.xty.size()) != gram.d * gram.e) {
    return absl::InternalError(
        absl::StrCat("Gram ", name, ": sums do not match d and e"));
  }
  SafetensorsWriter w;
  RETURN_IF_ERROR(w.Add("xtx", StDtype::kF64, {gram.d, gram.d}, gram.xtx.data(),
                        gram.xtx.size() * sizeof(double)));
  if (gram.e > 0) {
    RETURN_IF_ERROR(w.Add("xty", StDtype::kF64, {gram.d, gram.e},
                          gram.xty.data(), gram.xty.size() * sizeof(double)));
    RETURN_IF_ERROR(w.Add("yy", StDtype::kF64, {1}, &gram.yy, sizeof(double)));
  }
  const int64_t count = gram.count;
  RETURN_IF_ERROR(w.Add("count", StDtype::kI64, {1}, &count, sizeof(count)));
  for (const auto& [k, v] : gram.metadata) w.SetMetadata(k, v);
  w.SetMetadata("tokens", absl::StrCat(gram.count));
  return PutSafetensors(store, name, w);
}

absl::StatusOr<Gram> ReadGramFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                   SafetensorsFile::Open(path));
  Gram g;
  g.metadata = file->metadata();
  ASSIGN_OR_RETURN(const TensorView* xtx,
                   Expect(*file, "xtx", StDtype::kF64, {}, false));
  if (xtx->shape.size() != 2 || xtx->shape[0] != xtx->shape[1]) {
    return Invalid(path, "Gram tensor 'xtx' must be square [d, d]");
  }
  g.d = xtx->shape[0];
  g.xtx = Doubles(*xtx);
  ASSIGN_OR_RETURN(const TensorView* xty,
                   Expect(*file, "xty", StDtype::kF64, {}, true));
  if (xty != nullptr) {
    if (xty->shape.size() != 2 || xty->shape[0] != g.d) {
      return Invalid(path, "Gram tensor 'xty' must be [d, e]");
    }
    g.e = xty->shape[1];
    g.xty = Doubles(*xty);
    ASSIGN_OR_RETURN(const TensorView* yy,
                     Expect(*file, "yy", StDtype::kF64, {1}, false));
    g.yy = Doubles(*yy)[0];
  }
  ASSIGN_OR_RETURN(const TensorView* count,
                   Expect(*file, "count", StDtype::kI64, {1}, false));
  std::memcpy(&g.count, count->data, sizeof(int64_t));
  return g;
}

absl::Status AddGram(const Gram& b, Gram* a) {
  if (a->d != b.d || a->e != b.e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Grams of different shapes: ", Describe(*a), " is [", a->d, ", ", a->e,
        "], ", Describe(b), " is [", b.d, ", ", b.e, "]"));
  }
  for (size_t i = 0; i < a->xtx.size(); ++i) a->xtx[i] += b.xtx[i];
  for (size_t i = 0; i < a->xty.size(); ++i) a->xty[i] += b.xty[i];
  a->yy += b.yy;
  a->count += b.count;
  return absl::OkStatus();
}

}  // namespace sweepd::calib
