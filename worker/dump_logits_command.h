// `sweep-worker dump-logits`: runs one engine forward and writes the token ids
// and softcapped logits as safetensors, for comparisons outside the engine:
// the logits of a materialized checkpoint against the base's masked forward
// (both through this engine), and transformers' forward of a materialized
// checkpoint against them (tests/golden/check_materialized.py;
// docs/CALIBRATION.md, "Checking a materialized checkpoint").
//
//   sweep-worker dump-logits --model DIR --out FILE
//       [--mask L:H,H,...]... [--replace-layer L:FILE]... [--batch B]
//       [--seq S] [--token-seed N]
//       [--tokens FILE] [--dtype float32|bfloat16] [--tp N]
//
// Tokens: B x S ids drawn uniformly from the vocabulary with std::mt19937
// seeded by --token-seed (default 5), BOS (config.json bos_token_id) first in
// every row; defaults B 2, S 24, at most 65536 tokens. --tokens FILE takes
// them instead from the "input_ids" tensor (I64 or I32 [B, S]) of a
// safetensors file (an earlier dump, a golden fixture's expected.safetensors),
// as they are (no BOS added); it excludes --batch, --seq and --token-seed.
// --mask adds a mask_heads intervention (the masked forward of the base);
// --replace-layer L:FILE a replace_layer intervention whose weights are the
// tensors of the safetensors FILE (names relative to the layer, e.g. a heal
// artifact's "self_attn.o_proj.weight"), so --mask + --replace-layer dump the
// masked-and-healed forward of the base. FILE holds "input_ids" I64 [B, S] and
// "logits" F32 [B, S, V] (the layout of the golden fixtures'
// expected.safetensors), metadata {model, interventions, dtype, tokens}. Exit
// status: 0 success, 1 runtime error (a model that does not load, a mask the
// model rejects, an unwritable FILE), 2 usage error. Thread-safe (no shared
// state besides the streams).
#ifndef SWEEPD_WORKER_DUMP_LOGITS_COMMAND_H_
#define SWEEPD_WORKER_DUMP_LOGITS_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace sweepd {

int RunDumpLogitsCommand(const std::vector<std::string>& args,
                         std::ostream& out, std::ostream& err);

// Entry point for sweep-worker's dispatch table (argv[0] = "dump-logits").
int DumpLogitsMain(int argc, char** argv);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_DUMP_LOGITS_COMMAND_H_
