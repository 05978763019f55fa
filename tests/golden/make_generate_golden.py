#!/usr/bin/env python3
"""Greedy generation fixtures: transformers' generate() on the committed golden models.

    python3 tests/golden/make_generate_golden.py --fixtures tests/golden/fixtures

For every fixture directory (tiny_fp32_kv, tiny_bf16, tiny_sharded) loads the checkpoint with
transformers' Gemma4ForCausalLM in float32 on CPU (eager attention), runs
model.generate(do_sample=False) from three prompts (BOS first) for 40 new tokens — far past each
model's sliding window — and writes <fixture>/generate.json:

    {"max_new_tokens": 40, "cases": [{"prompt": [...], "tokens": [...]}, ...], "versions": {...}}

golden_generate_test (tests/golden/golden_generate_test.cc) decodes the same prompts greedily with
the engine's decode session (float32) and expects the same tokens. Needs torch and transformers
with Gemma 4; no internet, no GPU.
"""
import argparse
import json
import os
import sys

PROMPTS = [
    [2, 17, 301, 45, 9],
    [2, 400, 12],
    [2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
]
MAX_NEW = 40


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", required=True)
    args = parser.parse_args()
    import torch
    import transformers
    try:
        from transformers import Gemma4ForCausalLM
    except ImportError:
        from transformers.models.gemma4.modeling_gemma4 import Gemma4ForCausalLM
    torch.manual_seed(0)
    for name in sorted(os.listdir(args.fixtures)):
        path = os.path.join(args.fixtures, name)
        if not os.path.isfile(os.path.join(path, "config.json")):
            continue
        try:
            model = Gemma4ForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                      attn_implementation="eager")
        except TypeError:
            model = Gemma4ForCausalLM.from_pretrained(path, torch_dtype=torch.float32,
                                                      attn_implementation="eager")
        model.eval()
        cases = []
        for prompt in PROMPTS:
            ids = torch.tensor([prompt])
            with torch.no_grad():
                out = model.generate(ids, attention_mask=torch.ones_like(ids),
                                     do_sample=False, max_new_tokens=MAX_NEW,
                                     min_new_tokens=MAX_NEW, pad_token_id=0,
                                     eos_token_id=None)
            cases.append({"prompt": prompt, "tokens": out[0, len(prompt):].tolist()})
            print(f"{name}: prompt {prompt[:4]}... -> {cases[-1]['tokens'][:8]}...", flush=True)
        doc = {"max_new_tokens": MAX_NEW, "cases": cases,
               "versions": {"torch": torch.__version__,
                            "transformers": transformers.__version__}}
        with open(os.path.join(path, "generate.json"), "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
