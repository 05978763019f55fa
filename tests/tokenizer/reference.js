#!/usr/bin/env node
// Reference encoder/decoder for sweepd's tokenizer cross-check (tests/tokenizer/).
//
//   node reference.js --tokenizer tokenizer.json [--config tokenizer_config.json]
//                     --in strings.json --out result.json
//
// strings.json is a JSON array of strings. result.json is an array with, per string,
//   {"ids": [...], "ids_bos": [...], "decoded": "..."}
// where ids = encode(s, add_special_tokens=false), ids_bos = encode(s, add_special_tokens=true)
// and decoded = decode(ids) with special tokens kept and no clean-up of spaces.
// The tokenizer is transformers.js' (fork @lenml/tokenizers), an implementation independent
// of ours. Without --config a Gemma-like config is used (for generated tiny tokenizers).
"use strict";
const fs = require("fs");

// transformers.js' ByteFallback decoder uses `new TextDecoder()`, which silently drops a
// U+FEFF (BOM) at the start of each byte-fallback run. Hugging Face `tokenizers` (Rust,
// String::from_utf8) keeps it, and so do we; make the reference keep it too. This is the
// only change made to the reference's behaviour (docs/TOKENIZER.md).
const BaseTextDecoder = globalThis.TextDecoder;
globalThis.TextDecoder = class extends BaseTextDecoder {
  constructor(label = "utf-8", options = {}) {
    super(label, { ...options, ignoreBOM: true });
  }
};
const { TokenizerLoader } = require("@lenml/tokenizers");

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
      throw new Error(`bad argument list near '${argv[i]}'`);
    }
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ["tokenizer", "in", "out"]) {
    if (!args[required]) throw new Error(`--${required} is required`);
  }
  return args;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const tokenizerJSON = JSON.parse(fs.readFileSync(args.tokenizer, "utf8"));
  const tokenizerConfig = args.config
    ? JSON.parse(fs.readFileSync(args.config, "utf8"))
    : {
        tokenizer_class: "GemmaTokenizer",
        bos_token: "<bos>",
        eos_token: "<eos>",
        pad_token: "<pad>",
        unk_token: "<unk>",
        add_bos_token: true,
        add_eos_token: false,
      };
  // Compare raw decoder output: no English clean-up heuristics.
  tokenizerConfig.clean_up_tokenization_spaces = false;
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });

  const strings = JSON.parse(fs.readFileSync(args.in, "utf8"));
  const results = strings.map((s) => {
    const ids = tok.encode(s, { add_special_tokens: false });
    const ids_bos = tok.encode(s, { add_special_tokens: true });
    const decoded =
      ids.length === 0
        ? ""
        : tok.decode(ids, {
            skip_special_tokens: false,
            clean_up_tokenization_spaces: false,
          });
    return { ids, ids_bos, decoded };
  });
  fs.writeFileSync(args.out, JSON.stringify(results));
}

main();
