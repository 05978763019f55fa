#include "worker/engine/model_generator.h"

#include <ATen/ATen.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "common/tokenizer_gen.h"
#include "worker/engine/random_init.h"

namespace sweepd::engine {
namespace {

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
    out << text;
    if (!out.good())
      return absl::InternalError(absl::StrCat("write failed: ", tmp));
  }
  return RenamePath(tmp, path);
}

absl::Status AddTensor(SafetensorsWriter* writer, const std::string& name,
                       const std::vector<int64_t>& shape, uint64_t seed,
                       double init_range, bool bf16) {
  const int64_t rows = shape.size() >= 2 ? shape[0] : 1;
  const int64_t cols = shape.size() >= 2 ? shape[1] : shape[0];
  at::Tensor t =
      RandomWeightSlice(name, shape, 0, rows, 0, cols, seed, init_range,
                        InitStyle::kGenerator, at::kCPU, at::kFloat);
  const std::string full = "model." + name;
  if (bf16) {
    at::Tensor b = t.to(at::kBFloat16).contiguous();
    return writer->Add(full, StDtype::kBF16, shape, b.data_ptr(),
                       b.numel() * 2);
  }
  return writer->Add(full, StDtype::kF32, shape, t.data_ptr(), t.numel() * 4);
}

}  // namespace

absl::Status MakeRandomModel(const std::string& config_path, uint64_t seed,
                             const std::string& out_dir,
                             const MakeModelOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig cfg, ModelConfig::FromFile(config_path));
  if (options.dtype != "float32" && options.dtype != "bfloat16") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--dtype must be float32 or bfloat16, got '", options.dtype, "'"));
  }
  const bool bf16 = options.dtype == "bfloat16";
  RETURN_IF_ERROR(MakeDirs(out_dir));

  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  writer.SetMetadata("sweepd_generator_seed", std::to_string(seed));
  const double r = cfg.initializer_range;
  const int64_t hidden = cfg.hidden_size;
  try {
    RETURN_IF_ERROR(AddTensor(&writer, "embed_tokens.weight",
                              {cfg.vocab_size, hidden}, seed, r, bf16));
    RETURN_IF_ERROR(AddTensor(&writer, "norm.weight", {hidden}, seed, r, bf16));
    for (int L = 0; L < cfg.num_hidden_layers; ++L) {
      const LayerConfig& lc = cfg.layers[L];
      const int64_t q =
          static_cast<int64_t>(cfg.num_attention_heads) * lc.head_dim;
      const int64_t kv = static_cast<int64_t>(lc.num_kv_heads) * lc.head_dim;
      const int64_t I = cfg.intermediate_size;
      const std::string p = absl::StrCat("layers.", L, ".");
      RETURN_IF_ERROR(AddTensor(&writer, p + "self_attn.q_proj.weight",
                                {q, hidden}, seed, r, bf16));
      RETURN_IF_ERROR(AddTensor(&writer, p + "self_attn.k_proj.weight",
                                {kv, hidden}, seed, r, bf16));
      if (!lc.k_eq_v) {
        RETURN_IF_ERROR(AddTensor(&writer, p + "self_attn.v_proj.weight",
                                  {kv, hidden}, seed, r, bf16));
      }
      RETURN_IF_ERROR(AddTensor(&writer, p + "self_attn.o_proj.weight",
                                {hidden, q}, seed, r, bf16));
      RETURN_IF_ERROR(AddTensor(&writer, p + "self_attn.q_norm.weight",
                                {lc.head_dim}, seed, r, bf16));
      RETURN_IF_ERROR(AddTensor(&writer, p + "self_attn.k_norm.weight",
                                {lc.head_dim}, seed, r, bf16));
      for (const char* n :
           {"input_layernorm", "post_attention_layernorm",
            "pre_feedforward_layernorm", "post_feedforward_layernorm"}) {
        RETURN_IF_ERROR(AddTensor(&writer, absl::StrCat(p, n, ".weight"),
                                  {hidden}, seed, r, bf16));
      }
      RETURN_IF_ERROR(
          AddTensor(&writer, p + "layer_scalar", {1}, seed, r, bf16));
      RETURN_IF_ERROR(AddTensor(&writer, p + "mlp.gate_proj.weight",
                                {I, hidden}, seed, r, bf16));
      RETURN_IF_ERROR(AddTensor(&writer, p + "mlp.up_proj.weight", {I, hidden},
                                seed, r, bf16));
      RETURN_IF_ERROR(AddTensor(&writer, p + "mlp.down_proj.weight",
                                {hidden, I}, seed, r, bf16));
    }
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("generating weights: libtorch error: ", e.what()));
  }
  if (options.shard_bytes > 0) {
    RETURN_IF_ERROR(writer.WriteCheckpoint(out_dir, options.shard_bytes));
  } else {
    RETURN_IF_ERROR(writer.WriteFile(out_dir + "/model.safetensors"));
  }
  RETURN_IF_ERROR(WriteTextFile(out_dir + "/config.json", cfg.ToJson()));
  if (options.write_tokenizer) {
    ASSIGN_OR_RETURN(std::string tok, GenerateTokenizerJson(cfg.vocab_size));
    RETURN_IF_ERROR(WriteTextFile(out_dir + "/tokenizer.json", tok));
  }
  return absl::OkStatus();
}

}  // namespace sweepd::engine
