// materialize_bench: the materialize job's checkpoint edit
// (calib::MaterializeCheckpoint, the code the executor and `sweep-worker
// materialize` run) on a random base checkpoint in Hugging Face layout, against
// the obvious baseline in the same run: a plain copy of the base's files (the
// bytes `cp -r` moves, each file fsynced as the edit fsyncs its files).
//
// The base is the --config shape (e.g. the 31B) cut to --layers layers (the
// first N layer types of the config; when none of them is a full-attention
// layer the last one is made one, so both kinds are edited), random bf16
// weights (a fast hash fill, not the model's initialisation) in shards of
// --shard-gb, with MakeRandomModel's tensor names and shapes; its
// bytes are printed (the whole 61 GB 31B base does not fit a 64 GiB disk
// twice). The edit: --prune-frac of the heads of every layer of
// --edit-layers pruned (q_proj rows and o_proj columns zero) and o_proj
// healed (a random float32 heal with the pruned columns zero, converted to the
// base dtype) on every --heal-every'th edited layer. Prints the edit's time
// (hashing every tensor for the manifest and fingerprinting the output
// included; the output's fingerprint pass also alone: the weight files'
// digests are taken while they are written, worker/calib/shard_rewriter.h,
// so it reads only the small files), bytes written, bytes
// re-encoded (changed tensors) vs copied, and the copy's time and bytes.
//
//   materialize_bench --config configs/models/gemma4-31b.json [--layers 4]
//                     [--edit-layers all|0-1|...] [--dir DIR] [--keep]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/layer_selector.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/calib/checkpoint_editor.h"

namespace sweepd {
namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}
using json = nlohmann::json;

absl::Status Fail(const std::string& what) { return absl::InternalError(what); }

// Bytes of every regular file under `dir` (not recursive: a checkpoint is
// flat).
uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  auto names = ListDir(dir);
  if (!names.ok()) return 0;
  for (const std::string& n : *names) {
    auto size = FileSize(dir + "/" + n);
    if (size.ok()) total += *size;
  }
  return total;
}

// Fills `n` bf16 values with a fast counter-based hash (SplitMix64 of the
// index and `salt`): sign and 7 mantissa bits random, magnitude in [2^-7,
// 2^-6). I/O benchmark data, not a model's initialisation.
void FillBf16(uint16_t* out, size_t n, uint64_t salt, int threads) {
  auto fill = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ULL ^ salt;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      z ^= z >> 31;
      out[i] = static_cast<uint16_t>((z & 0x807F) | 0x3C00);
    }
  };
  std::vector<std::thread> pool;
  const size_t per = (n + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const size_t b = std::min(n, t * per), e = std::min(n, b + per);
    if (b < e) pool.emplace_back(fill, b, e);
  }
  for (std::thread& t : pool) t.join();
}

// A base checkpoint of `cfg` in Hugging Face layout (the tensor names and
// shapes engine::MakeRandomModel writes, bf16, shards of at most
// `shard_bytes` plus the index), filled by FillBf16 (MakeRandomModel's
// initialisation is too slow for tens of GB), with `config_path` copied as
// config.json.
absl::Status WriteBase(const ModelConfig& cfg, const std::string& config_path,
                       const std::string& dir, uint64_t shard_bytes) {
  RETURN_IF_ERROR(MakeDirs(dir));
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  const int threads = std::max(
      1, std::min(16, static_cast<int>(std::thread::hardware_concurrency())));
  uint64_t salt = 1;
  auto add = [&](const std::string& name,
                 const std::vector<int64_t>& shape) -> absl::Status {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    std::vector<uint16_t> v(n);
    FillBf16(v.data(), n, ++salt * 0xD1B54A32D192ED03ULL, threads);
    return writer.Add("model." + name, StDtype::kBF16, shape, v.data(), n * 2);
  };
  const int64_t hidden = cfg.hidden_size, I = cfg.intermediate_size;
  RETURN_IF_ERROR(add("embed_tokens.weight", {cfg.vocab_size, hidden}));
  RETURN_IF_ERROR(add("norm.weight", {hidden}));
  for (int L = 0; L < cfg.num_hidden_layers; ++L) {
    const LayerConfig& lc = cfg.layers[L];
    const int64_t q =
        static_cast<int64_t>(cfg.num_attention_heads) * lc.head_dim;
    const int64_t kv = static_cast<int64_t>(lc.num_kv_heads) * lc.head_dim;
    const std::string p = absl::StrCat("layers.", L, ".");
    RETURN_IF_ERROR(add(p + "self_attn.q_proj.weight", {q, hidden}));
    RETURN_IF_ERROR(add(p + "self_attn.k_proj.weight", {kv, hidden}));
    if (!lc.k_eq_v) {
      RETURN_IF_ERROR(add(p + "self_attn.v_proj.weight", {kv, hidden}));
    }
    RETURN_IF_ERROR(add(p + "self_attn.o_proj.weight", {hidden, q}));
    RETURN_IF_ERROR(add(p + "self_attn.q_norm.weight", {lc.head_dim}));
    RETURN_IF_ERROR(add(p + "self_attn.k_norm.weight", {lc.head_dim}));
    for (const char* n :
         {"input_layernorm", "post_attention_layernorm",
          "pre_feedforward_layernorm", "post_feedforward_layernorm"}) {
      RETURN_IF_ERROR(add(absl::StrCat(p, n, ".weight"), {hidden}));
    }
    RETURN_IF_ERROR(add(p + "layer_scalar", {1}));
    RETURN_IF_ERROR(add(p + "mlp.gate_proj.weight", {I, hidden}));
    RETURN_IF_ERROR(add(p + "mlp.up_proj.weight", {I, hidden}));
    RETURN_IF_ERROR(add(p + "mlp.down_proj.weight", {hidden, I}));
  }
  RETURN_IF_ERROR(writer.WriteCheckpoint(dir, shard_bytes));
  return CopyFile(config_path, dir + "/config.json");
}

// The baseline: every file of `from` copied to `to` and fsynced.
absl::StatusOr<uint64_t> CopyDir(const std::string& from,
                                 const std::string& to) {
  RETURN_IF_ERROR(MakeDirs(to));
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(from));
  uint64_t bytes = 0;
  for (const std::string& n : names) {
    RETURN_IF_ERROR(CopyFile(from + "/" + n, to + "/" + n));
    const int fd = ::open((to + "/" + n).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) return Fail("fsync " + to + "/" + n);
    ::close(fd);
    ASSIGN_OR_RETURN(uint64_t size, FileSize(to + "/" + n));
    bytes += size;
  }
  return bytes;
}

int Main(int argc, char** argv) {
  CLI::App app("materialize_bench");
  std::string config = "configs/models/gemma4-tiny.json";
  std::string dir_parent = "/tmp", edit_layers = "all";
  int layers = 4, heal_every = 1, threads = 0;
  double prune_frac = 0.125, shard_gb = 5.0;
  bool keep = false;
  app.add_option("--config", config, "model config.json (the shape)");
  app.add_option("--layers", layers, "layers of the base checkpoint");
  app.add_option("--edit-layers", edit_layers,
                 "layer selector of the layers written with edits");
  app.add_option("--prune-frac", prune_frac, "heads pruned per edited layer");
  app.add_option("--heal-every", heal_every,
                 "heal o_proj on every n-th edited layer (0 = none)");
  app.add_option("--shard-gb", shard_gb, "base shard size (GB)");
  app.add_option("--threads", threads,
                 "editor jobs at once (0 = hardware threads, <= 8)");
  app.add_option("--dir", dir_parent, "where the temp directory goes");
  app.add_flag("--keep", keep, "keep the base, output and copy");
  CLI11_PARSE(app, argc, argv);
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "materialize_bench: %s\n", s.ToString().c_str());
    return 1;
  };

  // The cut config.
  json cj;
  {
    std::ifstream in(config);
    if (!in) return fail(absl::NotFoundError("cannot read " + config));
    cj = json::parse(in, nullptr, false);
    if (cj.is_discarded()) return fail(absl::InvalidArgumentError(config));
  }
  json& tc = cj.contains("text_config") ? cj["text_config"] : cj;
  const int base_layers = tc.value("num_hidden_layers", 0);
  if (layers < 1 || layers > base_layers) {
    std::fprintf(stderr, "materialize_bench: --layers must be in [1, %d]\n",
                 base_layers);
    return 2;
  }
  tc["num_hidden_layers"] = layers;
  if (tc.contains("layer_types")) {
    json types = json::array();
    bool full = false;
    for (int L = 0; L < layers; ++L) {
      types.push_back(tc["layer_types"][L]);
      full = full || types.back() == "full_attention";
    }
    if (!full && layers >= 2) types[layers - 1] = "full_attention";
    tc["layer_types"] = types;
  }
  auto tmp = MakeTempDir(dir_parent + "/materialize_bench.");
  if (!tmp.ok()) return fail(tmp.status());
  const std::string dir = *tmp;
  const std::string cut_config = dir + "/config.json";
  std::ofstream(cut_config) << cj.dump(2) << "\n";
  auto cfg = ModelConfig::FromFile(cut_config);
  if (!cfg.ok()) return fail(cfg.status());

  // The base.
  const std::string base = dir + "/base";
  auto t0 = std::chrono::steady_clock::now();
  if (absl::Status s = WriteBase(*cfg, cut_config, base,
                                 static_cast<uint64_t>(shard_gb * 1e9));
      !s.ok()) {
    return fail(s);
  }
  const double make_s = Seconds(t0);
  const uint64_t base_bytes = DirBytes(base);
  std::string kinds;
  for (const auto& l : cfg->layers) {
    absl::StrAppend(&kinds, kinds.empty() ? "" : ",",
                    l.kind == LayerKind::kFull ? "full" : "sliding");
  }
  std::printf(
      "base %s cut to %d layers (%s), bf16, %.4g GB in %zu files, written in "
      "%.1f s\n",
      config.c_str(), layers, kinds.c_str(), base_bytes / 1e9,
      ListDir(base).ok() ? ListDir(base)->size() : 0, make_s);

  // The edit: pruned heads (the first prune_frac of each layer) and heals.
  auto selected = ParseLayerSelector(edit_layers, layers, "--edit-layers");
  if (!selected.ok()) return fail(selected.status());
  const int H = cfg->num_attention_heads;
  const int pruned_heads = std::max(1, static_cast<int>(H * prune_frac));
  calib::MaterializeRequest req;
  req.base_dir = base;
  req.out_dir = dir + "/out";
  req.threads = threads;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  int healed = 0;
  for (size_t i = 0; i < selected->size(); ++i) {
    const int L = (*selected)[i];
    calib::HeadPrune p;
    p.layer = L;
    for (int h = 0; h < pruned_heads; ++h) p.heads.push_back(h);
    req.plan.pruned.push_back(p);
    if (heal_every <= 0 || i % heal_every != 0) continue;
    const int64_t hd = cfg->layers[L].head_dim;
    const int64_t D = H * hd;
    std::vector<float> w(static_cast<size_t>(cfg->hidden_size) * D);
    for (int64_t r = 0; r < cfg->hidden_size; ++r) {
      for (int64_t c = 0; c < D; ++c) {
        w[r * D + c] = c < pruned_heads * hd ? 0.0f : normal(rng);
      }
    }
    SafetensorsWriter writer;
    if (absl::Status s = writer.Add("self_attn.o_proj.weight", StDtype::kF32,
                                    {cfg->hidden_size, D}, w.data(),
                                    w.size() * sizeof(float));
        !s.ok()) {
      return fail(s);
    }
    calib::OProjHeal heal;
    heal.layer = L;
    heal.file = absl::StrCat(dir, "/heal", L, ".safetensors");
    if (absl::Status s = writer.WriteFile(heal.file); !s.ok()) return fail(s);
    req.plan.heals.push_back(heal);
    ++healed;
  }
  req.plan.layers = *selected;

  t0 = std::chrono::steady_clock::now();
  auto result = calib::MaterializeCheckpoint(req);
  if (!result.ok()) return fail(result.status());
  const double edit_s = Seconds(t0);
  // Re-encoded = the changed tensors' bytes; the rest was copied raw.
  auto out_ckpt = Checkpoint::Open(req.out_dir);
  if (!out_ckpt.ok()) return fail(out_ckpt.status());
  uint64_t tensor_bytes = 0, changed_bytes = 0;
  for (const std::string& name : (*out_ckpt)->names()) {
    tensor_bytes += (*out_ckpt)->Find(name)->nbytes;
  }
  for (const std::string& name : result->changed_tensors) {
    changed_bytes += (*out_ckpt)->Find(name)->nbytes;
  }
  std::printf(
      "materialize layers=%s pruned_heads_per_layer=%d healed_layers=%d "
      "seconds=%.2f fingerprint_seconds=%.2f bytes_written=%.4g GB "
      "tensors_changed=%zu/%d reencoded=%.4g GB copied=%.4g GB "
      "(%.2f%% re-encoded)\n",
      edit_layers.c_str(), pruned_heads, healed, edit_s,
      result->fingerprint_seconds, result->bytes_written / 1e9,
      result->changed_tensors.size(), result->tensors_total,
      changed_bytes / 1e9, (tensor_bytes - changed_bytes) / 1e9,
      tensor_bytes > 0 ? 100.0 * changed_bytes / tensor_bytes : 0.0);

  t0 = std::chrono::steady_clock::now();
  auto copied = CopyDir(base, dir + "/copy");
  if (!copied.ok()) return fail(copied.status());
  const double copy_s = Seconds(t0);
  std::printf("baseline copy (cp -r + fsync) seconds=%.2f bytes=%.4g GB\n",
              copy_s, *copied / 1e9);
  std::printf(
      "ratio materialize/copy %.2f (materialize %.2f GB/s, copy %.2f GB/s)\n",
      edit_s / copy_s, result->bytes_written / 1e9 / edit_s,
      *copied / 1e9 / copy_s);
  if (keep) {
    std::printf("kept %s\n", dir.c_str());
  } else {
    (void)RemoveAll(dir);
  }
  return 0;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) { return sweepd::Main(argc, argv); }
