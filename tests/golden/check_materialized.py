#!/usr/bin/env python3
"""Checks a materialized checkpoint with Hugging Face transformers (docs/CALIBRATION.md).

transformers' forward of the materialized checkpoint (fp32, eager attention, CPU unless
--device says otherwise) on the `input_ids` of an engine logits dump must equal the dump's
`logits` within --atol (default 1e-4, the issue's bound). The dump is the engine's
masked(-and-healed) forward of the BASE, written by

    sweep-worker materialize --base BASE --out OUT --prune 1:0,2 ...
    sweep-worker dump-logits --model BASE --mask 1:0,2 ... --out base_masked.safetensors
    python3 tests/golden/check_materialized.py --model OUT --engine-logits base_masked.safetensors

(or `dump-logits --model OUT` for the engine's forward of the materialized checkpoint itself,
e.g. for a healed checkpoint while the engine has no replace_layer intervention). With --base,
transformers' forward of the unedited base is also run and must differ from the dump by more
than --atol (the edit matters). Also checks that the manifest's changed_tensors are exactly
the tensors whose bytes differ from the base's (when --base is given).

Needs torch, transformers (with Gemma 4), numpy, safetensors. Prints each step; exits 1 with
`ERROR:` on a mismatch, 0 when everything holds.
"""

import argparse
import json
import os
import sys


def fail(msg):
    print(f"ERROR: {msg}", flush=True)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the materialized checkpoint directory")
    ap.add_argument("--engine-logits", required=True, help="a `sweep-worker dump-logits` file")
    ap.add_argument("--base", help="the base checkpoint (optional extra checks)")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    try:
        import numpy as np
        import torch
        from safetensors import safe_open
        from safetensors.numpy import load_file
    except ImportError as e:
        fail(f"missing dependency: {e}. Needs torch, transformers, numpy, safetensors.")
    try:
        from transformers import Gemma4ForCausalLM
    except ImportError:
        try:
            from transformers.models.gemma4.modeling_gemma4 import Gemma4ForCausalLM
        except ImportError as e:
            fail(f"transformers has no Gemma 4 ({e})")

    def load(path):
        try:
            m = Gemma4ForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                  attn_implementation="eager")
        except TypeError:  # older transformers spell it torch_dtype
            m = Gemma4ForCausalLM.from_pretrained(path, torch_dtype=torch.float32,
                                                  attn_implementation="eager")
        return m.eval().to(args.device)

    def forward(model, ids):
        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(ids).to(args.device), use_cache=False)
        return out.logits.float().cpu().numpy()

    dump = load_file(args.engine_logits)
    for key in ("input_ids", "logits"):
        if key not in dump:
            fail(f"{args.engine_logits} has no tensor '{key}' (not a dump-logits file?)")
    ids, want = dump["input_ids"].astype(np.int64), dump["logits"].astype(np.float32)
    print(f"engine dump: input_ids {list(ids.shape)}, logits {list(want.shape)}", flush=True)

    manifest_path = os.path.join(args.model, "sweepd_manifest.json")
    if not os.path.exists(manifest_path):
        fail(f"{args.model} has no sweepd_manifest.json (not a materialized checkpoint)")
    with open(manifest_path) as f:
        manifest = json.load(f)
    print(f"manifest: pruned {manifest['pruned']}, changed {len(manifest['changed_tensors'])} "
          f"of {manifest['num_tensors']} tensors", flush=True)

    got = forward(load(args.model), ids)
    if got.shape != want.shape:
        fail(f"transformers' logits have shape {list(got.shape)}, the dump's {list(want.shape)}")
    diff = float(np.max(np.abs(got.astype(np.float64) - want)))
    print(f"transformers(materialized) vs engine dump: max abs diff {diff:.3e} "
          f"(atol {args.atol:.1e})", flush=True)
    if not diff <= args.atol:
        fail(f"max abs logit difference {diff:.3e} exceeds {args.atol:.1e}")

    if args.base:
        base_diff = float(np.max(np.abs(forward(load(args.base), ids).astype(np.float64) - want)))
        print(f"transformers(base) vs engine dump: max abs diff {base_diff:.3e}", flush=True)
        if not base_diff > args.atol:
            fail("the unedited base gives the same logits: the edit does not matter here")

        def tensors(d):
            idx = os.path.join(d, "model.safetensors.index.json")
            files = (sorted(set(json.load(open(idx))["weight_map"].values()))
                     if os.path.exists(idx) else ["model.safetensors"])
            out = {}
            for fn in files:
                with safe_open(os.path.join(d, fn), framework="np") as f:
                    for k in f.keys():
                        out[k] = f.get_tensor(k)
            return out

        a, b = tensors(args.model), tensors(args.base)
        if set(a) != set(b):
            fail(f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
        changed = sorted(k for k in a if a[k].tobytes() != b[k].tobytes())
        if changed != manifest["changed_tensors"]:
            fail(f"manifest changed_tensors {manifest['changed_tensors']} != actual {changed}")
        print(f"manifest lists exactly the {len(changed)} changed tensors", flush=True)
    print("OK", flush=True)


if __name__ == "__main__":
    main()
