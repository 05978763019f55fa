// `sweep-worker dump-logits`. See dump_logits_command.h.
#include "worker/dump_logits_command.h"

#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safetensors.h"
#include "worker/engine/engine.h"
#include "worker/materialize_command.h"

namespace sweepd {
namespace {

constexpr char kUsage[] =
    "usage: sweep-worker dump-logits --model DIR --out FILE "
    "[--mask L:H,H,...]... [--replace-layer L:FILE]... [--batch B] [--seq S] "
    "[--token-seed N] "
    "[--tokens FILE] [--dtype float32|bfloat16] [--tp N]\n";

// One forward's tokens; the logits file is tokens x vocab x 4 bytes.
constexpr int64_t kMaxTokens = 1 << 16;

// The "input_ids" tensor (I64 or I32, [B, S]) of a safetensors file.
absl::StatusOr<std::vector<int64_t>> ReadInputIds(const std::string& path,
                                                  int64_t* batch,
                                                  int64_t* seq) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(path);
  if (!f.ok()) return f.status();
  const TensorView* t = (*f)->Find("input_ids");
  if (t == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has no tensor 'input_ids'"));
  }
  if (t->shape.size() != 2 ||
      (t->dtype != StDtype::kI64 && t->dtype != StDtype::kI32)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": 'input_ids' must be I64 or I32 [B, S], is ",
                     StDtypeName(t->dtype), " of rank ", t->shape.size()));
  }
  *batch = t->shape[0];
  *seq = t->shape[1];
  std::vector<int64_t> ids(t->numel());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (t->dtype == StDtype::kI64) {
      std::memcpy(&ids[i], t->data + i * 8, 8);
    } else {
      int32_t v;
      std::memcpy(&v, t->data + i * 4, 4);
      ids[i] = v;
    }
  }
  return ids;
}

}  // namespace

int RunDumpLogitsCommand(const std::vector<std::string>& args,
                         std::ostream& out, std::ostream& err) {
  CLI::App app{"sweep-worker dump-logits"};
  app.set_help_flag();
  app.allow_extras();
  bool help = false;
  std::string model, out_file, tokens_file, dtype = "float32";
  std::vector<std::string> masks, replaces;
  int64_t batch = 2, seq = 24;
  uint32_t token_seed = 5;
  int tp = 1;
  app.add_flag("--help,-h", help);
  app.add_option("--model", model);
  app.add_option("--out", out_file);
  app.add_option("--mask", masks)->take_all();
  app.add_option("--replace-layer", replaces)->take_all();
  const CLI::Option* batch_flag = app.add_option("--batch", batch);
  const CLI::Option* seq_flag = app.add_option("--seq", seq);
  const CLI::Option* seed_flag = app.add_option("--token-seed", token_seed);
  app.add_option("--tokens", tokens_file);
  app.add_option("--dtype", dtype);
  app.add_option("--tp", tp);
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    err << "dump-logits: " << e.what() << "\n" << kUsage;
    return 2;
  }
  if (help) {
    out << kUsage;
    return 0;
  }
  if (!app.remaining().empty()) {
    err << "dump-logits: unknown flag " << app.remaining().front() << "\n"
        << kUsage;
    return 2;
  }
  if (model.empty() || out_file.empty()) {
    err << "dump-logits: --model and --out are required\n" << kUsage;
    return 2;
  }
  if (!tokens_file.empty() &&
      (batch_flag->count() > 0 || seq_flag->count() > 0 ||
       seed_flag->count() > 0)) {
    err << "dump-logits: --tokens takes the tokens (and B, S) from the file; "
           "drop --batch, --seq and --token-seed\n";
    return 2;
  }
  std::vector<int64_t> given;
  if (!tokens_file.empty()) {
    absl::StatusOr<std::vector<int64_t>> ids =
        ReadInputIds(tokens_file, &batch, &seq);
    if (!ids.ok()) {
      err << "dump-logits: --tokens: " << ids.status().message() << "\n";
      return 1;
    }
    given = *std::move(ids);
  }
  if (batch < 1 || seq < 1 || batch > kMaxTokens || seq > kMaxTokens ||
      batch * seq > kMaxTokens) {
    err << "dump-logits: --batch and --seq must be >= 1 with batch x seq <= "
        << kMaxTokens << ", got " << batch << " x " << seq << "\n";
    return 2;
  }
  if (tp < 1) {
    err << "dump-logits: --tp must be >= 1, got " << tp << "\n";
    return 2;
  }
  engine::EngineOptions options;
  options.model_dir = model;
  options.tp_size = tp;
  absl::StatusOr<engine::DType> dt = engine::ParseDType(dtype);
  if (!dt.ok()) {
    err << "dump-logits: --dtype: " << dt.status().message() << "\n";
    return 2;
  }
  options.dtype = *dt;
  engine::ForwardRequest req;
  std::vector<std::string> mask_text;
  for (const std::string& m : masks) {
    int layer;
    std::vector<int> heads;
    if (!ParseLayerHeadsFlag(m, &layer, &heads)) {
      err << "dump-logits: --mask wants L:H,H,..., got '" << m << "'\n";
      return 2;
    }
    req.interventions.push_back(engine::Intervention::MaskHeads(layer, heads));
    mask_text.push_back(absl::StrCat("mask_heads ", m));
  }
  for (const std::string& r : replaces) {
    const size_t colon = r.find(':');
    int layer = -1;
    if (colon == std::string::npos || colon + 1 >= r.size() ||
        !absl::SimpleAtoi(r.substr(0, colon), &layer) || layer < 0) {
      err << "dump-logits: --replace-layer wants L:FILE, got '" << r << "'\n";
      return 2;
    }
    req.interventions.push_back(
        engine::Intervention::ReplaceLayer(layer, r.substr(colon + 1)));
    mask_text.push_back(absl::StrCat("replace_layer ", r));
  }
  absl::StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::Engine::Create(options);
  if (!e.ok()) {
    err << "dump-logits: " << e.status() << "\n";
    return 1;
  }
  const ModelConfig& cfg = (*e)->config();
  req.batch = batch;
  req.seq = seq;
  req.return_logits = true;
  req.tokens.resize(batch * seq);
  if (!given.empty()) {
    for (int64_t i = 0; i < batch * seq; ++i) {
      if (given[i] < 0 || given[i] >= cfg.vocab_size) {
        err << "dump-logits: --tokens: input_ids[" << i / seq << ", " << i % seq
            << "] = " << given[i] << " is outside the vocabulary [0, "
            << cfg.vocab_size << ")\n";
        return 1;
      }
      req.tokens[i] = static_cast<int32_t>(given[i]);
    }
  } else {
    std::mt19937 rng(token_seed);
    for (int64_t i = 0; i < batch * seq; ++i) {
      req.tokens[i] = i % seq == 0
                          ? cfg.bos_token_id
                          : static_cast<int32_t>(rng() % cfg.vocab_size);
    }
  }
  absl::StatusOr<engine::ForwardResult> r = (*e)->Forward(req);
  if (!r.ok()) {
    err << "dump-logits: " << r.status() << "\n";
    return 1;
  }
  std::vector<int64_t> ids(req.tokens.begin(), req.tokens.end());
  SafetensorsWriter w;
  absl::Status s = w.Add("input_ids", StDtype::kI64, {batch, seq}, ids.data(),
                         ids.size() * sizeof(int64_t));
  if (s.ok()) {
    s = w.Add("logits", StDtype::kF32, r->logits.shape, r->logits.data.data(),
              r->logits.data.size() * sizeof(float));
  }
  w.SetMetadata("model", model);
  w.SetMetadata("interventions", absl::StrJoin(mask_text, "; "));
  w.SetMetadata("dtype", dtype);
  w.SetMetadata("tokens", tokens_file.empty()
                              ? absl::StrCat("random, token seed ", token_seed)
                              : tokens_file);
  if (s.ok()) s = w.WriteFile(out_file);
  if (!s.ok()) {
    err << "dump-logits: " << s << "\n";
    return 1;
  }
  out << "wrote " << out_file << " (input_ids [" << batch << ", " << seq
      << "], logits [" << absl::StrJoin(r->logits.shape, ", ") << "])\n";
  return 0;
}

int DumpLogitsMain(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return RunDumpLogitsCommand(args, std::cout, std::cerr);
}

}  // namespace sweepd
