// Checkpoint editor; see checkpoint_editor.h for the contract.
#include "worker/calib/checkpoint_editor.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_digest_cache.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/model_config.h"
#include "common/model_fingerprint.h"
#include "common/path_confinement.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/calib/durable_file.h"
#include "worker/calib/shard_rewriter.h"

namespace sweepd::calib {
namespace {

using json = nlohmann::json;

constexpr char kIndexFile[] = "model.safetensors.index.json";
constexpr char kOProj[] = "self_attn.o_proj.weight";
constexpr char kQProj[] = "self_attn.q_proj.weight";
constexpr int kMaxThreads = 8;

// Files besides the weights that are copied from the base when present.
constexpr const char* kCopiedFiles[] = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
};

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since)
      .count();
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("realpath ", path));
  }
  return std::string(buf);
}

bool IsUnder(const std::string& path, const std::string& dir) {
  return path == dir ||
         (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
          path[dir.size()] == '/');
}

// The text model's tensor prefix ("model.", "model.language_model.", ...),
// the same rule as the engine's loader.
absl::StatusOr<std::string> DetectPrefix(const Checkpoint& ckpt,
                                         const std::string& dir) {
  for (const char* p :
       {"model.language_model.", "model.", "language_model.model.", ""}) {
    if (ckpt.Find(absl::StrCat(p, "embed_tokens.weight")) != nullptr) return p;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "checkpoint ", dir, " has no embed_tokens.weight under a known prefix"));
}

// A plan with sorted heads, checked against the model.
struct CheckedPlan {
  std::map<int, std::vector<int>> pruned;  // layer -> heads (sorted)
  std::map<int, const OProjHeal*> heals;   // layer -> heal
  std::map<int, std::string> heal_sha256;  // layer -> artifact digest
  std::set<int> written;                   // layers whose edits apply
  std::vector<int> layers;                 // the layer list written
};

absl::StatusOr<CheckedPlan> CheckPlan(const EditPlan& plan,
                                      const ModelConfig& cfg) {
  if (!plan.mode.empty() && plan.mode != "mask") {
    return Invalid("materialize.mode",
                   absl::StrCat("'", plan.mode,
                                "' is not supported (only \"mask\": shapes "
                                "unchanged, pruned heads zeroed)"));
  }
  const int N = cfg.num_hidden_layers;
  const int H = cfg.num_attention_heads;
  auto range = [&](int layer, const std::string& field) -> absl::Status {
    if (layer < 0 || layer >= N) {
      return Invalid(field,
                     absl::StrCat("layer ", layer, " is out of range [0, ", N,
                                  ") (the model has ", N, " layers)"));
    }
    return absl::OkStatus();
  };
  CheckedPlan out;
  for (size_t i = 0; i < plan.pruned.size(); ++i) {
    const HeadPrune& p = plan.pruned[i];
    const std::string field = absl::StrCat("materialize.pruned[", i, "]");
    RETURN_IF_ERROR(range(p.layer, field + ".layer"));
    if (out.pruned.count(p.layer)) {
      return Invalid(field + ".layer",
                     absl::StrCat("layer ", p.layer, " is listed twice"));
    }
    if (p.heads.empty()) {
      return Invalid(field + ".heads", "a non-empty list of heads is required");
    }
    std::set<int> heads;
    for (size_t j = 0; j < p.heads.size(); ++j) {
      const int h = p.heads[j];
      const std::string hf = absl::StrCat(field, ".heads[", j, "]");
      if (h < 0 || h >= H) {
        return Invalid(hf, absl::StrCat("head ", h, " is out of range [0, ", H,
                                        ") of layer ", p.layer,
                                        " (num_attention_heads ", H, ")"));
      }
      if (!heads.insert(h).second) {
        return Invalid(hf, absl::StrCat("head ", h, " is listed twice"));
      }
    }
    if (static_cast<int>(heads.size()) == H) {
      return Invalid(field + ".heads",
                     absl::StrCat("all ", H, " heads of layer ", p.layer,
                                  " would be pruned"));
    }
    out.pruned[p.layer] = std::vector<int>(heads.begin(), heads.end());
  }
  for (size_t i = 0; i < plan.heals.size(); ++i) {
    const OProjHeal& h = plan.heals[i];
    const std::string field = absl::StrCat("materialize.heals[", i, "]");
    RETURN_IF_ERROR(range(h.layer, field + ".layer"));
    if (out.heals.count(h.layer)) {
      return Invalid(field + ".layer",
                     absl::StrCat("layer ", h.layer, " has two heals"));
    }
    out.heals[h.layer] = &h;
    std::string digest = h.sha256;
    if (digest.empty()) {
      absl::StatusOr<std::string> d = Sha256File(h.file);
      if (!d.ok()) {
        return absl::Status(d.status().code(),
                            absl::StrCat(field, " (layer ", h.layer,
                                         "): ", d.status().message()));
      }
      digest = *d;
    }
    out.heal_sha256[h.layer] = digest;
  }
  if (plan.layers.has_value()) {
    std::set<int> layers;
    for (size_t i = 0; i < plan.layers->size(); ++i) {
      const int L = (*plan.layers)[i];
      RETURN_IF_ERROR(range(L, absl::StrCat("materialize.layers[", i, "]")));
      layers.insert(L);
    }
    if (layers.empty()) {
      return Invalid("materialize.layers",
                     "an empty selection (omit it to write every layer)");
    }
    out.written = layers;
  } else {
    for (int L = 0; L < N; ++L) out.written.insert(L);
  }
  out.layers.assign(out.written.begin(), out.written.end());
  return out;
}

// The identity of an edit: what decides the output's bytes.
json EditIdentity(const CheckedPlan& plan, const std::string& base_fp,
                  bool all_layers) {
  json pruned = json::array();
  for (const auto& [layer, heads] : plan.pruned) {
    pruned.push_back({{"layer", layer}, {"heads", heads}});
  }
  json heals = json::array();
  for (const auto& [layer, heal] : plan.heals) {
    heals.push_back({{"layer", layer},
                     {"sha256", plan.heal_sha256.at(layer)},
                     {"tensor", heal->tensor.empty() ? std::string(kOProj)
                                                     : heal->tensor}});
  }
  json id = {{"format", kManifestFormat},
             {"mode", "mask"},
             {"base_fingerprint", base_fp},
             {"pruned", pruned},
             {"heals", heals}};
  if (all_layers) {
    id["layers"] = "all";
  } else {
    id["layers"] = plan.layers;
  }
  return id;
}

absl::StatusOr<std::string> EncodeFloats(const std::vector<float>& v,
                                         StDtype dtype) {
  std::string out;
  switch (dtype) {
    case StDtype::kF32:
      out.assign(reinterpret_cast<const char*>(v.data()), v.size() * 4);
      return out;
    case StDtype::kBF16: {
      out.resize(v.size() * 2);
      for (size_t i = 0; i < v.size(); ++i) {
        const uint16_t b = FloatToBf16(v[i]);
        std::memcpy(&out[i * 2], &b, 2);
      }
      return out;
    }
    case StDtype::kF64: {
      out.resize(v.size() * 8);
      for (size_t i = 0; i < v.size(); ++i) {
        const double d = v[i];
        std::memcpy(&out[i * 8], &d, 8);
      }
      return out;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("a healed weight cannot be written as ",
                       StDtypeName(dtype), " (F32, BF16 and F64 can)"));
  }
}

bool IsFloat(StDtype d) {
  return d == StDtype::kF32 || d == StDtype::kBF16 || d == StDtype::kF16 ||
         d == StDtype::kF64;
}

// The edited bytes of one layer's q_proj and o_proj (name -> bytes; only
// tensors whose bytes differ from the base are kept by the caller).
absl::Status EditLayer(const Checkpoint& ckpt, const std::string& prefix,
                       const ModelConfig& cfg, int L,
                       const std::vector<int>* heads, const OProjHeal* heal,
                       int heal_index,
                       std::map<std::string, std::string>* edited) {
  const std::string lp = absl::StrCat(prefix, "layers.", L, ".");
  const int H = cfg.num_attention_heads;
  const int64_t hd = cfg.layers[L].head_dim;
  const int64_t hidden = cfg.hidden_size;
  ASSIGN_OR_RETURN(const TensorView* q, ckpt.Get(lp + kQProj));
  ASSIGN_OR_RETURN(const TensorView* o, ckpt.Get(lp + kOProj));
  const std::vector<int64_t> q_shape = {H * hd, hidden};
  const std::vector<int64_t> o_shape = {hidden, H * hd};
  for (const auto& [t, want] :
       {std::make_pair(q, q_shape), std::make_pair(o, o_shape)}) {
    if (t->shape != want) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t->name, "' has shape ", ShapeText(t->shape),
                       ", config.json implies ", ShapeText(want), " (", H,
                       " heads of ", hd, ", hidden ", hidden, ")"));
    }
    if (!IsFloat(t->dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t->name, "' has dtype ",
                       StDtypeName(t->dtype), ", not a floating-point type"));
    }
  }
  if (heads != nullptr) {
    const size_t elem = StDtypeSize(q->dtype);
    std::string bytes(reinterpret_cast<const char*>(q->data), q->nbytes);
    const size_t head_bytes = static_cast<size_t>(hd * hidden) * elem;
    for (int h : *heads) std::memset(&bytes[h * head_bytes], 0, head_bytes);
    (*edited)[q->name] = std::move(bytes);
  }
  if (heads == nullptr && heal == nullptr) return absl::OkStatus();
  std::string o_bytes;
  if (heal != nullptr) {
    const std::string field =
        absl::StrCat("materialize.heals[", heal_index, "] (layer ", L, ")");
    const std::string tname = heal->tensor.empty() ? kOProj : heal->tensor;
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(heal->file);
    if (!file.ok()) return Annotate(file.status(), field);
    const TensorView* t = (*file)->Find(tname);
    if (t == nullptr) {
      std::vector<std::string> names;
      for (const TensorView& v : (*file)->tensors()) names.push_back(v.name);
      return Invalid(field, absl::StrCat("the artifact has no tensor '", tname,
                                         "' (it holds: ",
                                         absl::StrJoin(names, ", "), ")"));
    }
    if (t->shape != o->shape) {
      return Invalid(field,
                     absl::StrCat("tensor '", tname, "' has shape ",
                                  ShapeText(t->shape), ", the checkpoint's '",
                                  o->name, "' is ", ShapeText(o->shape)));
    }
    absl::StatusOr<std::vector<float>> values = TensorToFloat(*t);
    if (!values.ok()) return Annotate(values.status(), field);
    if (heads != nullptr) {
      const int64_t cols = H * hd;
      for (int h : *heads) {
        for (int64_t r = 0; r < hidden; ++r) {
          for (int64_t c = h * hd; c < (h + 1) * hd; ++c) {
            if ((*values)[r * cols + c] != 0.0f) {
              return Invalid(
                  field,
                  absl::StrCat("column ", c, " (head ", h, ") of '", tname,
                               "' is ", (*values)[r * cols + c], " at row ", r,
                               ", but head ", h,
                               " is pruned: the heal must leave the pruned "
                               "heads' columns zero (was it fitted for "
                               "another head set?)"));
            }
          }
        }
      }
    }
    absl::StatusOr<std::string> encoded = EncodeFloats(*values, o->dtype);
    if (!encoded.ok()) return Annotate(encoded.status(), field);
    o_bytes = *std::move(encoded);
  } else {
    o_bytes.assign(reinterpret_cast<const char*>(o->data), o->nbytes);
  }
  if (heads != nullptr) {
    const size_t elem = StDtypeSize(o->dtype);
    const int64_t cols = H * hd;
    for (int64_t r = 0; r < hidden; ++r) {
      for (int h : *heads) {
        std::memset(&o_bytes[(r * cols + h * hd) * elem], 0, hd * elem);
      }
    }
  }
  (*edited)[o->name] = std::move(o_bytes);
  return absl::OkStatus();
}

// The identity of every *.safetensors file in `dir`, by name (files that
// cannot be stat'ed are left out).
absl::StatusOr<std::map<std::string, FileIdentity>> WeightFileIdentities(
    const std::string& dir) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir));
  std::map<std::string, FileIdentity> out;
  for (const std::string& n : names) {
    if (!absl::EndsWith(n, ".safetensors")) continue;
    absl::StatusOr<FileIdentity> id = StatFileIdentity(JoinPath(dir, n));
    if (id.ok()) out[n] = *std::move(id);
  }
  return out;
}

// Removes earlier attempts' temp directories next to `out_dir`.
void RemoveStalePartials(const std::string& parent, const std::string& name) {
  absl::StatusOr<std::vector<std::string>> entries = ListDir(parent);
  if (!entries.ok()) return;
  const std::string stem = absl::StrCat(".", name, ".partial.");
  for (const std::string& e : *entries) {
    if (absl::StartsWith(e, stem)) (void)RemoveAll(JoinPath(parent, e));
  }
}

// A complete previous result of the same edit in `out_dir`, or the reason it
// is not one.
absl::StatusOr<MaterializeResult> ReusePrevious(const std::string& out_dir,
                                                const std::string& digest) {
  const std::string mpath = JoinPath(out_dir, kManifestFile);
  if (!PathExists(mpath)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "materialize.out_dir: ", out_dir,
        " exists and is not empty, and has no ", kManifestFile,
        " (not a materialized checkpoint; choose another out_dir or remove "
        "it)"));
  }
  absl::StatusOr<json> m = ReadJsonFile(mpath);
  if (!m.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("materialize.out_dir: ", out_dir,
                     " holds an unreadable manifest: ", m.status().message()));
  }
  if (m->value("edit_digest", "") != digest) {
    return absl::FailedPreconditionError(absl::StrCat(
        "materialize.out_dir: ", out_dir,
        " already holds a checkpoint materialized from a different edit "
        "(edit_digest ",
        m->value("edit_digest", "?"), ", this task's is ", digest,
        "); choose another out_dir or remove it"));
  }
  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<ModelFingerprint> fp = FingerprintModelDir(out_dir);
  if (!fp.ok() || fp->hex != m->value("fingerprint", "")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "materialize.out_dir: ", out_dir,
        " holds this edit's manifest but its files do not match it (",
        fp.ok() ? absl::StrCat("fingerprint ", fp->hex, ", manifest says ",
                               m->value("fingerprint", "?"))
                : std::string(fp.status().message()),
        "); remove it to rewrite"));
  }
  MaterializeResult r;
  r.fingerprint = fp->hex;
  r.fingerprint_seconds = Seconds(started);
  r.base_fingerprint = (*m)["base"].value("fingerprint", "");
  r.tensors_total = m->value("num_tensors", 0);
  if (m->contains("changed_tensors") && (*m)["changed_tensors"].is_array()) {
    for (const json& n : (*m)["changed_tensors"]) {
      if (n.is_string()) r.changed_tensors.push_back(n.get<std::string>());
    }
  }
  r.reused = true;
  return r;
}

}  // namespace

absl::StatusOr<MaterializeResult> MaterializeCheckpoint(
    const MaterializeRequest& request) {
  if (request.out_dir.empty()) {
    return Invalid("materialize.out_dir", "required");
  }
  ASSIGN_OR_RETURN(std::string base_real, RealPath(request.base_dir));
  ASSIGN_OR_RETURN(ModelConfig cfg,
                   ModelConfig::FromFile(JoinPath(base_real, "config.json")));
  // The weight files' identities before they are mapped: the copies and the
  // digests must read the files that were mapped (shard_rewriter.h).
  using Identities = std::map<std::string, FileIdentity>;
  ASSIGN_OR_RETURN(Identities base_identities, WeightFileIdentities(base_real));
  ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt,
                   Checkpoint::Open(base_real));
  ASSIGN_OR_RETURN(CheckedPlan plan, CheckPlan(request.plan, cfg));
  ASSIGN_OR_RETURN(std::string prefix, DetectPrefix(*ckpt, base_real));
  const int threads =
      request.threads > 0
          ? request.threads
          : std::min<int>(kMaxThreads,
                          std::max(1u, std::thread::hardware_concurrency()));

  // The output's place: a fresh sibling temp directory, renamed at the end.
  const std::string name = BaseName(request.out_dir);
  if (name.empty() || name == "." || name == "..") {
    return Invalid(
        "materialize.out_dir",
        absl::StrCat("'", request.out_dir, "' does not name a directory"));
  }
  const std::string parent = DirName(request.out_dir);
  RETURN_IF_ERROR(MakeDirs(parent));
  ASSIGN_OR_RETURN(std::string parent_real, RealPath(parent));
  const std::string out_real = JoinPath(parent_real, name);
  if (IsUnder(out_real, base_real) || IsUnder(base_real, out_real)) {
    return Invalid(
        "materialize.out_dir",
        absl::StrCat("'", request.out_dir,
                     "' overlaps the base model directory ", base_real));
  }

  // The base's fingerprint: given, or needed now to judge an existing output,
  // or else computed from the digests the write pass takes of the base files.
  std::string base_fp = request.base_fingerprint;
  struct stat st;
  if (::lstat(out_real.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "materialize.out_dir: ", out_real, " exists and is not a directory"));
    }
    ASSIGN_OR_RETURN(std::vector<std::string> entries, ListDir(out_real));
    if (!entries.empty()) {
      if (base_fp.empty()) {
        ASSIGN_OR_RETURN(base_fp, ComputeModelFingerprint(base_real));
      }
      const json identity =
          EditIdentity(plan, base_fp, !request.plan.layers.has_value());
      return ReusePrevious(out_real, Sha256Hex(identity.dump()));
    }
  }

  // The edits, in memory (q_proj / o_proj of the edited layers only), one
  // layer per thread; only bytes that really differ from the base are kept.
  std::map<std::string, std::string> edited;
  {
    std::map<int, int> heal_index;
    for (size_t i = 0; i < request.plan.heals.size(); ++i)
      heal_index[request.plan.heals[i].layer] = static_cast<int>(i);
    std::set<int> touched;
    for (const auto& [L, heads] : plan.pruned) touched.insert(L);
    for (const auto& [L, heal] : plan.heals) touched.insert(L);
    std::vector<int> layers;
    for (int L : touched) {
      if (plan.written.count(L)) layers.push_back(L);
    }
    std::vector<std::map<std::string, std::string>> per_layer(layers.size());
    std::vector<absl::Status> status(layers.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < layers.size();) {
        const int L = layers[i];
        auto p = plan.pruned.find(L);
        auto h = plan.heals.find(L);
        status[i] = EditLayer(*ckpt, prefix, cfg, L,
                              p == plan.pruned.end() ? nullptr : &p->second,
                              h == plan.heals.end() ? nullptr : h->second,
                              h == plan.heals.end() ? -1 : heal_index.at(L),
                              &per_layer[i]);
        for (auto it = per_layer[i].begin(); it != per_layer[i].end();) {
          const TensorView* t = ckpt->Find(it->first);
          if (t->nbytes == it->second.size() &&
              std::memcmp(t->data, it->second.data(), t->nbytes) == 0) {
            it = per_layer[i].erase(it);
          } else {
            ++it;
          }
        }
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads && static_cast<size_t>(t) < layers.size();
         ++t) {
      pool.emplace_back(work);
    }
    work();
    for (std::thread& th : pool) th.join();
    // The first error in layer order, as a sequential pass would report it.
    for (const absl::Status& s : status) RETURN_IF_ERROR(s);
    for (auto& m : per_layer) edited.merge(m);
  }

  RemoveStalePartials(parent_real, name);
  ASSIGN_OR_RETURN(
      std::string tmp,
      MakeTempDir(JoinPath(parent_real, absl::StrCat(".", name, ".partial."))));
  // Removes the temp directory unless it was renamed into place.
  struct TmpGuard {
    std::string path;
    ~TmpGuard() {
      if (!path.empty()) (void)RemoveAll(path);
    }
  } guard{tmp};

  // Weights: every base file rewritten at the same offsets, with the digests
  // of every tensor and file taken on the way (shard_rewriter.h).
  const auto& files = ckpt->files();
  ShardRewriteRequest rewrite;
  rewrite.replaced = &edited;
  rewrite.out_dir = tmp;
  rewrite.base_file_digests = base_fp.empty();
  rewrite.threads = threads;
  for (const auto& file : files) {
    rewrite.base_files.push_back(file.get());
    auto id = base_identities.find(BaseName(file->path()));
    if (id == base_identities.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("base file ", file->path(),
                       " was not a readable file before the base was opened "
                       "(changed while it was being materialized?)"));
    }
    rewrite.base_identities.push_back(id->second);
  }
  ASSIGN_OR_RETURN(ShardRewriteResult written, RewriteShards(rewrite));
  uint64_t bytes_written = 0;
  for (const RewrittenShard& f : written.files) bytes_written += f.size;
  // The base files must still be the ones that were read.
  for (const auto& file : files) {
    absl::StatusOr<FileIdentity> now = StatFileIdentity(file->path());
    if (!now.ok() || *now != base_identities.at(BaseName(file->path()))) {
      return absl::FailedPreconditionError(absl::StrCat(
          "base file ", file->path(),
          " changed while it was being materialized; run the task again once "
          "it is complete"));
    }
  }

  // The index and the side files, byte for byte.
  std::vector<std::string> copied;
  for (const char* n : kCopiedFiles) copied.push_back(n);
  copied.push_back(kIndexFile);
  for (const std::string& n : copied) {
    const std::string from = JoinPath(base_real, n);
    if (!PathExists(from)) continue;
    if (!request.model_roots.empty()) {
      RETURN_IF_ERROR(
          ConfinedRealPath(from, request.model_roots, "base model file")
              .status());
    }
    const std::string to = JoinPath(tmp, n);
    RETURN_IF_ERROR(CopyFile(from, to));
    RETURN_IF_ERROR(FsyncPath(to, /*directory=*/false));
    ASSIGN_OR_RETURN(uint64_t size, FileSize(to));
    bytes_written += size;
  }

  if (base_fp.empty()) {
    ModelFingerprintOptions options;
    for (size_t f = 0; f < files.size(); ++f) {
      const std::string n = BaseName(files[f]->path());
      options.known_digests[n] = {base_identities.at(n),
                                  written.files[f].base_sha256};
    }
    ASSIGN_OR_RETURN(base_fp, ComputeModelFingerprint(base_real, options));
  }
  const json identity =
      EditIdentity(plan, base_fp, !request.plan.layers.has_value());
  const std::string digest = Sha256Hex(identity.dump());

  MaterializeResult result;
  result.base_fingerprint = base_fp;
  result.bytes_written = bytes_written;
  for (const RewrittenShard& f : written.files) {
    result.tensors_total += static_cast<int>(f.tensor_sha256.size());
  }
  for (const auto& [n, bytes] : edited) result.changed_tensors.push_back(n);
  {
    // The weight files' digests were taken as they were written: only the
    // small files are read.
    const auto started = std::chrono::steady_clock::now();
    ModelFingerprintOptions options;
    for (const RewrittenShard& f : written.files) {
      options.known_digests[f.name] = {f.identity, f.sha256};
    }
    ASSIGN_OR_RETURN(ModelFingerprint fp, FingerprintModelDir(tmp, options));
    result.fingerprint = fp.hex;
    result.fingerprint_seconds = Seconds(started);
  }

  // The manifest.
  json tensors = json::object();
  for (size_t f = 0; f < files.size(); ++f) {
    const std::vector<TensorView>& views = files[f]->tensors();
    for (size_t i = 0; i < views.size(); ++i) {
      const TensorView& t = views[i];
      const bool changed = edited.count(t.name) > 0;
      json e = {{"file", written.files[f].name},
                {"dtype", StDtypeName(t.dtype)},
                {"shape", t.shape},
                {"sha256", written.files[f].tensor_sha256[i]},
                {"changed", changed}};
      if (changed) e["base_sha256"] = written.replaced_base_sha256.at(t.name);
      tensors[t.name] = std::move(e);
    }
  }
  json pruned = json::array();
  for (const auto& [L, heads] : plan.pruned) {
    pruned.push_back({{"layer", L},
                      {"heads", heads},
                      {"written", plan.written.count(L) > 0}});
  }
  json heals = json::array();
  for (const auto& [L, heal] : plan.heals) {
    // The heal's statistics travel in its artifact's safetensors metadata
    // (residuals, lambda, solver: whatever the heal job recorded).
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> heal_file =
        SafetensorsFile::Open(heal->file);
    if (!heal_file.ok()) {
      return Annotate(heal_file.status(),
                      absl::StrCat("materialize.heals (layer ", L, ")"));
    }
    json metadata = json::object();
    for (const auto& [k, v] : (*heal_file)->metadata()) metadata[k] = v;
    heals.push_back({{"layer", L},
                     {"artifact",
                      {{"path", heal->artifact_path},
                       {"sha256", plan.heal_sha256.at(L)},
                       {"tensor", heal->tensor.empty() ? std::string(kOProj)
                                                       : heal->tensor}}},
                     {"metadata", std::move(metadata)},
                     {"written", plan.written.count(L) > 0}});
  }
  json manifest = {
      {"format", kManifestFormat},
      {"mode", "mask"},
      {"base",
       {{"path",
         request.base_label.empty() ? request.base_dir : request.base_label},
        {"fingerprint", base_fp}}},
      {"edit_digest", digest},
      {"edit", identity},
      {"fingerprint", result.fingerprint},
      {"layers_written", plan.layers},
      {"pruned", pruned},
      {"heals", heals},
      {"canary", {{"status", "pending"}}},
      {"num_tensors", result.tensors_total},
      {"changed_tensors", result.changed_tensors},
      {"tensors", tensors},
  };
  RETURN_IF_ERROR(
      WriteFileDurably(JoinPath(tmp, kManifestFile), manifest.dump(2) + "\n"));
  RETURN_IF_ERROR(FsyncPath(tmp, /*directory=*/true));
  if (std::rename(tmp.c_str(), out_real.c_str()) != 0) {
    const int e = errno;
    if (e == ENOTEMPTY || e == EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat("materialize.out_dir: ", out_real,
                       " was filled by someone else while this task wrote it"));
    }
    return absl::InternalError(
        absl::StrCat("rename ", tmp, " -> ", out_real, ": ", std::strerror(e)));
  }
  guard.path.clear();
  RETURN_IF_ERROR(FsyncPath(parent_real, /*directory=*/true));
  return result;
}

}  // namespace sweepd::calib
