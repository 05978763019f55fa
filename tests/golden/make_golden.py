#!/usr/bin/env python3
"""Writes the golden fixtures for sweepd's engine tests from Hugging Face transformers.

For each tiny Gemma 4 text config below this script
  1. builds `Gemma4ForCausalLM` with fixed seeds, re-initialises every weight with a scale that
     makes each part of the model matter (random norm weights, random non-unit `layer_scalar`),
  2. saves it with `save_pretrained` (fp32 single file, bf16 single file, or fp32 sharded with
     `model.safetensors.index.json`) and loads it back with `from_pretrained`, checking that every
     tensor survived the round trip,
  3. runs the reloaded model on fixed token ids (eager attention, no cache) and records logits,
     every entry of `hidden_states`, per-token next-token NLL and the probe reference metrics
     (block influence, residual norm, logit-lens rank) computed independently in numpy float64,
  4. writes `<out>/<name>/` (config.json + safetensors exactly as transformers saved them) and
     `<out>/<name>/expected.safetensors`, then `<out>/VERSIONS.json`.

Regenerate (GPU machine image: transformers 5.x, torch 2.x, numpy, safetensors; no internet):
    python3 tests/golden/make_golden.py --out tests/golden/fixtures

The tensor layout of expected.safetensors is documented in tests/golden/README.md.
Everything runs on CPU in fp32/bf16 by default, so results do not depend on TF32 or GPU kernels.
"""

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile

# ---------------------------------------------------------------------------------------------
# Fixture definitions. Together they cover: sliding and full layers with different head_dim,
# K = V full layers (no v_proj) and full layers with v_proj, proportional RoPE with
# partial_rotary_factor 0.25 on full layers, KV heads < heads, a final logit softcap that bites,
# random non-unit layer_scalar, sequences longer than the sliding window, one bf16 checkpoint,
# fp32 checkpoints and one sharded checkpoint. KV heads of 1 or 2 force KV-head replication at
# TP = 2 / 4 (heads are 4 or 8, divisible by 4).
# ---------------------------------------------------------------------------------------------
VOCAB = 512

FIXTURES = [
    {
        # fp32, single file. Full layers: K = V with ONE global KV head (TP=2/4 replicate it),
        # global_head_dim 32 vs sliding head_dim 16.
        "name": "tiny_fp32_kv",
        "seed": 1234,
        "save_dtype": "float32",
        "sharded": False,
        "batch": 2,
        "seq": 24,
        "config": dict(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention",
                         "full_attention"],
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            global_head_dim=32,
            num_global_key_value_heads=1,
            attention_k_eq_v=True,
            sliding_window=8,
            final_logit_softcapping=3.0,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                   "rope_theta": 1000000.0},
            },
        ),
    },
    {
        # bf16, single file. Full layers WITHOUT K = V (they have v_proj) and the sliding KV head
        # count on them; global_head_dim 64 vs sliding 32; six layers in Gemma's 5:1 pattern
        # shortened to 2:1.
        "name": "tiny_bf16",
        "seed": 5678,
        "save_dtype": "bfloat16",
        "sharded": False,
        "batch": 2,
        "seq": 20,
        "config": dict(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=6,
            layer_types=["sliding_attention", "sliding_attention", "full_attention",
                         "sliding_attention", "sliding_attention", "full_attention"],
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            global_head_dim=64,
            num_global_key_value_heads=None,
            attention_k_eq_v=False,
            sliding_window=6,
            final_logit_softcapping=4.0,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                   "rope_theta": 1000000.0},
            },
        ),
    },
    {
        # fp32, sharded (index json). Eight heads, K = V full layers with 2 global KV heads
        # (TP=4 replicates), sliding KV 4; a low full-layer theta so RoPE errors show at short
        # range.
        "name": "tiny_sharded",
        "seed": 91011,
        "save_dtype": "float32",
        "sharded": True,
        "batch": 2,
        "seq": 16,
        "config": dict(
            vocab_size=VOCAB,
            hidden_size=48,
            intermediate_size=80,
            num_hidden_layers=5,
            layer_types=["sliding_attention", "full_attention", "sliding_attention",
                         "sliding_attention", "full_attention"],
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=8,
            global_head_dim=16,
            num_global_key_value_heads=2,
            attention_k_eq_v=True,
            sliding_window=5,
            final_logit_softcapping=2.5,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                   "rope_theta": 100.0},
            },
        ),
    },
]

# Settings shared by every fixture: no per-layer inputs, no KV sharing, no MoE, tied embeddings.
COMMON_CONFIG = dict(
    hidden_activation="gelu_pytorch_tanh",
    rms_norm_eps=1e-6,
    max_position_embeddings=256,
    tie_word_embeddings=True,
    attention_bias=False,
    attention_dropout=0.0,
    hidden_size_per_layer_input=0,
    vocab_size_per_layer_input=VOCAB,
    num_kv_shared_layers=0,
    enable_moe_block=False,
    use_double_wide_mlp=False,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=2,
    initializer_range=0.02,
    use_cache=False,
)

MAX_TOTAL_BYTES = 10 * 1024 * 1024
SHARD_SIZE = "60KB"  # small enough that tiny_sharded is split into several files


def log(msg):
    print(f"[make_golden] {msg}", flush=True)


def fail(msg):
    print(f"[make_golden] ERROR: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def require(cond, msg):
    if not cond:
        fail(msg)


def import_stack():
    try:
        import numpy as np
        import safetensors
        import torch
        import transformers
        from safetensors.numpy import save_file
    except ImportError as e:  # pragma: no cover - environment problem
        fail(f"missing dependency: {e}. Needs torch, transformers (with gemma4), numpy, "
             "safetensors.")
    try:
        from transformers import Gemma4ForCausalLM, Gemma4TextConfig
    except ImportError:
        try:
            from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig
            from transformers.models.gemma4.modeling_gemma4 import Gemma4ForCausalLM
        except ImportError as e:
            fail(f"transformers {transformers.__version__} has no Gemma 4 ({e})")
    return np, torch, transformers, safetensors, save_file, Gemma4ForCausalLM, Gemma4TextConfig


def build_config(Gemma4TextConfig, spec):
    kwargs = dict(COMMON_CONFIG)
    kwargs.update(spec["config"])
    if kwargs.get("num_global_key_value_heads") is None:
        kwargs.pop("num_global_key_value_heads")
    cfg = Gemma4TextConfig(**kwargs)
    # Eager attention: the plain softmax(QK^T + mask) V reference, same on every machine.
    try:
        cfg._attn_implementation = "eager"
    except Exception as e:  # the reloaded model asks for eager explicitly anyway
        log(f"note: could not preset eager attention on the config ({e})")
    require(list(cfg.layer_types) == spec["config"]["layer_types"],
            f"{spec['name']}: config changed layer_types to {cfg.layer_types}")
    return cfg


def expected_layer_shapes(spec):
    """(head_dim, kv_heads, has_v_proj) per layer, as the fixture intends."""
    c = spec["config"]
    out = []
    for t in c["layer_types"]:
        if t == "sliding_attention":
            out.append((c["head_dim"], c["num_key_value_heads"], True))
        else:
            k_eq_v = c["attention_k_eq_v"]
            kv = c["num_global_key_value_heads"] if k_eq_v else c["num_key_value_heads"]
            out.append((c["global_head_dim"], kv, not k_eq_v))
    return out


def check_structure(model, spec):
    """Fails unless transformers built the attention shapes the fixture asks for."""
    c = spec["config"]
    layers = model.model.layers
    require(len(layers) == c["num_hidden_layers"], "wrong number of decoder layers")
    for i, (hd, kv, has_v) in enumerate(expected_layer_shapes(spec)):
        attn = layers[i].self_attn
        q_out = attn.q_proj.out_features
        k_out = attn.k_proj.out_features
        v_proj = getattr(attn, "v_proj", None)
        require(q_out == c["num_attention_heads"] * hd,
                f"{spec['name']} layer {i}: q_proj out {q_out} != heads*{hd}")
        require(k_out == kv * hd, f"{spec['name']} layer {i}: k_proj out {k_out} != {kv}*{hd}")
        require((v_proj is not None) == has_v,
                f"{spec['name']} layer {i}: v_proj {'missing' if has_v else 'present'}")
        require(hasattr(layers[i], "layer_scalar"), f"layer {i} has no layer_scalar buffer")
        require(getattr(layers[i], "hidden_size_per_layer_input", 0) in (0, None),
                f"layer {i} has per-layer inputs enabled")
    require(model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(),
            "lm_head is not tied to embed_tokens")


def randomize(model, torch, seed):
    """Re-initialises every weight so that each component changes the output measurably."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                # Attention scaling is 1.0; q/k norm weights near 0.4 keep the softmax soft
                # enough that bf16 rounding does not flip which keys win (a chaotic model makes
                # bf16 comparisons meaningless), while still being random and non-unit.
                p.copy_(0.4 * (1.0 + 0.3 * torch.randn(p.shape, generator=g)))
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("embed_tokens.weight"):
                # x sqrt(hidden) in the model: residual entries of about 2, LM-head logits of
                # about 2 -- the small softcaps of the fixtures (2.5 to 4) then bend them.
                p.copy_(0.25 * torch.randn(p.shape, generator=g))
            elif p.dim() == 2:
                fan_in = p.shape[1]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            else:
                fail(f"unexpected parameter {name} with shape {tuple(p.shape)}")
        scalars = []
        for layer in model.model.layers:
            v = 0.5 + torch.rand((), generator=g).item()  # in [0.5, 1.5), never 1
            layer.layer_scalar.fill_(v)
            scalars.append(v)
    return scalars


def load_pretrained(Gemma4ForCausalLM, torch, path, dtype):
    try:
        model = Gemma4ForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager")
    except TypeError:  # older transformers spell it torch_dtype
        model = Gemma4ForCausalLM.from_pretrained(path, torch_dtype=dtype,
                                                  attn_implementation="eager")
    model.eval()
    return model


def run_forward(model, torch, input_ids, device):
    """Returns (logits, hidden_states tuple, layer inputs, layer outputs) from one forward."""
    layer_in, layer_out = {}, {}
    handles = []

    def make_hook(idx):
        def hook(module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, (tuple, list)) else output
            layer_in[idx] = x.detach().clone()
            layer_out[idx] = y.detach().clone()
        return hook

    for i, layer in enumerate(model.model.layers):
        handles.append(layer.register_forward_hook(make_hook(i), with_kwargs=True))
    try:
        with torch.no_grad():
            out = model(input_ids=input_ids.to(device), output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    n = len(model.model.layers)
    require(len(layer_in) == n and len(layer_out) == n, "forward hooks did not see every layer")
    return out.logits, out.hidden_states, layer_in, layer_out


def check_hidden_states_mapping(model, torch, hs, layer_in, layer_out, name):
    """Verifies the documented mapping of transformers' hidden_states:

    hidden_states[0]   = input of layer 0 (scaled embeddings)       = resid_in[0]
    hidden_states[L]   = output of layer L-1 = input of layer L      (1 <= L <= N-1)
    hidden_states[N]   = final_norm(output of layer N-1)  -- transformers' capture_outputs
                         replaces the last recorded layer output with last_hidden_state, which
                         is taken AFTER model.norm. resid_out[N-1] is therefore not in
                         hidden_states; it is stored separately as `last_layer_output`.
    Returns "after_final_norm" or "before_final_norm" for the last entry (fails otherwise).
    """
    n = len(layer_in)
    require(len(hs) == n + 1, f"{name}: {len(hs)} hidden_states for {n} layers (expected N+1)")
    require(torch.equal(hs[0], layer_in[0]), f"{name}: hidden_states[0] != input of layer 0")
    for L in range(1, n):
        require(torch.equal(hs[L], layer_out[L - 1]),
                f"{name}: hidden_states[{L}] != output of layer {L - 1}")
        require(torch.equal(hs[L], layer_in[L]), f"{name}: hidden_states[{L}] != input of layer {L}")
    with torch.no_grad():
        normed = model.model.norm(layer_out[n - 1])
    if torch.equal(hs[n], normed):
        return "after_final_norm"
    if torch.equal(hs[n], layer_out[n - 1]):
        return "before_final_norm"
    fail(f"{name}: hidden_states[{n}] is neither the last layer output nor its final norm")


def probe_reference(np, hs_in, hs_out, ids, embed, norm_w, eps, softcap):
    """numpy float64 reference of the probe metrics.

    hs_in, hs_out: [N, B, S, H] float64 (resid_in[L], resid_out[L]); ids [B, S];
    embed [V, H] float64 (tied LM head); norm_w [H] float64.
    Returns bi, resid_norm [N, B, S]; lens_rank int64 [N, B, S] (-1 at the last position, which
    has no next token); lens_gap [N, B, S] = min over v != target of |z_v - z_target| (how close
    the nearest competitor is: ranks are only comparable where this exceeds the tolerance), and
    lens_logits of the last layer [B, S, V] for a self-check against transformers' logits.
    """
    n, b, s, h = hs_in.shape
    dot = np.sum(hs_in * hs_out, axis=-1)
    nin = np.linalg.norm(hs_in, axis=-1)
    nout = np.linalg.norm(hs_out, axis=-1)
    bi = 1.0 - dot / (nin * nout)
    resid_norm = nout
    lens_rank = np.full((n, b, s), -1, dtype=np.int64)
    lens_gap = np.full((n, b, s), np.inf, dtype=np.float64)
    last_logits = None
    for L in range(n):
        x = hs_out[L]
        normed = x * (np.mean(x * x, axis=-1, keepdims=True) + eps) ** -0.5 * norm_w
        z = normed @ embed.T  # [B, S, V]
        if softcap is not None:
            z = np.tanh(z / softcap) * softcap
        if L == n - 1:
            last_logits = z
        for bi_ in range(b):
            for t in range(s - 1):
                target = ids[bi_, t + 1]
                zt = z[bi_, t, target]
                row = z[bi_, t]
                lens_rank[L, bi_, t] = int(np.sum(row > zt))
                others = np.delete(row, target)
                lens_gap[L, bi_, t] = float(np.min(np.abs(others - zt)))
    return bi, resid_norm, lens_rank, lens_gap, last_logits


def next_token_nll(np, logits64, ids):
    """-log softmax(logits[b, t])[ids[b, t+1]] in float64; shape [B, S-1]."""
    m = logits64.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.sum(np.exp(logits64 - m), axis=-1, keepdims=True)))[..., 0]
    b, s, _ = logits64.shape
    out = np.zeros((b, s - 1), dtype=np.float64)
    for i in range(b):
        for t in range(s - 1):
            out[i, t] = lse[i, t] - logits64[i, t, ids[i, t + 1]]
    return out


def make_fixture(stack, spec, out_dir, device):
    np, torch, transformers, _, save_file, Gemma4ForCausalLM, Gemma4TextConfig = stack
    name = spec["name"]
    log(f"--- {name}: seed {spec['seed']}, save dtype {spec['save_dtype']}, "
        f"{'sharded' if spec['sharded'] else 'single file'}")
    torch.manual_seed(spec["seed"])
    cfg = build_config(Gemma4TextConfig, spec)
    model = Gemma4ForCausalLM(cfg)
    model.eval()
    check_structure(model, spec)
    scalars = randomize(model, torch, spec["seed"] + 1)
    log(f"{name}: layer_scalar = {[round(v, 4) for v in scalars]}")
    dtype = torch.bfloat16 if spec["save_dtype"] == "bfloat16" else torch.float32
    model = model.to(dtype)
    for layer, v in zip(model.model.layers, scalars):  # the buffer must survive the cast
        require(abs(float(layer.layer_scalar.float()[0]) - v) < 1e-2, "layer_scalar lost")

    model_dir = os.path.join(out_dir, name)
    if os.path.exists(model_dir):
        shutil.rmtree(model_dir)
    save_kwargs = {"safe_serialization": True}
    if spec["sharded"]:
        save_kwargs["max_shard_size"] = SHARD_SIZE
    model.save_pretrained(model_dir, **save_kwargs)
    files = sorted(os.listdir(model_dir))
    log(f"{name}: saved {files}")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if spec["sharded"]:
        require(os.path.exists(index), f"{name}: save_pretrained wrote no index ({files})")
        with open(index) as f:
            shards = set(json.load(f)["weight_map"].values())
        require(len(shards) >= 2, f"{name}: only {len(shards)} shard(s); lower SHARD_SIZE")
    else:
        require(os.path.exists(os.path.join(model_dir, "model.safetensors")),
                f"{name}: no model.safetensors ({files})")
        require(not os.path.exists(index), f"{name}: unexpected index json")
    # Drop anything that is not the model itself (e.g. generation_config.json stays harmless).
    saved = {}
    from safetensors import safe_open
    for fn in os.listdir(model_dir):
        if fn.endswith(".safetensors"):
            with safe_open(os.path.join(model_dir, fn), framework="pt") as f:
                for k in f.keys():
                    saved[k] = f.get_tensor(k)
    for i in range(len(scalars)):
        key = f"model.layers.{i}.layer_scalar"
        require(key in saved, f"{name}: checkpoint lacks {key} (keys: {sorted(saved)[:8]}...)")
    require("lm_head.weight" not in saved or torch.equal(saved["lm_head.weight"],
                                                         saved["model.embed_tokens.weight"]),
            f"{name}: untied lm_head in checkpoint")
    want_st = "BF16" if dtype == torch.bfloat16 else "F32"
    for k, v in saved.items():
        require(v.dtype == dtype, f"{name}: {k} saved as {v.dtype}, expected {want_st}")

    # The reference is computed by the model as transformers loads it from disk.
    reloaded = load_pretrained(Gemma4ForCausalLM, torch, model_dir, dtype).to(device)
    check_structure(reloaded, spec)
    orig_sd = model.state_dict()
    for k, v in reloaded.state_dict().items():
        require(k in orig_sd, f"{name}: reloaded model has unknown tensor {k}")
        require(torch.equal(v.cpu().float(), orig_sd[k].cpu().float()),
                f"{name}: {k} changed on save/load")

    g = torch.Generator().manual_seed(spec["seed"] + 2)
    B, S = spec["batch"], spec["seq"]
    require(S > spec["config"]["sliding_window"], f"{name}: sequence not longer than the window")
    input_ids = torch.randint(3, VOCAB, (B, S), generator=g, dtype=torch.int64)
    input_ids[:, 0] = 2  # <bos>
    # Row 0 continues a short random prompt greedily with the model itself, so its next tokens
    # are the model's top-1 at the last layer (logit-lens ranks reach 0 there and at some
    # earlier layers); the other rows stay random (ranks far from 0).
    prompt = 4
    with torch.no_grad():
        for t in range(prompt - 1, S - 1):
            step = reloaded(input_ids=input_ids[:1, : t + 1].to(device), use_cache=False).logits
            input_ids[0, t + 1] = int(step[0, t].float().argmax())
    logits, hs, layer_in, layer_out = run_forward(reloaded, torch, input_ids, device)
    last_mode = check_hidden_states_mapping(reloaded, torch, hs, layer_in, layer_out, name)
    log(f"{name}: hidden_states has {len(hs)} entries; last entry is {last_mode}")
    n = len(layer_in)

    ids = input_ids.numpy()
    logits64 = logits.double().cpu().numpy()
    nll = next_token_nll(np, logits64, ids)
    hs_in = np.stack([layer_in[L].double().cpu().numpy() for L in range(n)])
    hs_out = np.stack([layer_out[L].double().cpu().numpy() for L in range(n)])
    embed = reloaded.model.embed_tokens.weight.detach().double().cpu().numpy()
    norm_w = reloaded.model.norm.weight.detach().double().cpu().numpy()
    eps = float(cfg.rms_norm_eps)
    softcap = cfg.final_logit_softcapping
    bi, resid_norm, lens_rank, lens_gap, last_lens = probe_reference(
        np, hs_in, hs_out, ids, embed, norm_w, eps, softcap)

    # Self-checks of the numpy path against the model's own modules.
    with torch.no_grad():
        module_norm = reloaded.model.norm(layer_out[n - 1]).double().cpu().numpy()
    x = hs_out[n - 1]
    np_norm = x * (np.mean(x * x, axis=-1, keepdims=True) + eps) ** -0.5 * norm_w
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    err = float(np.max(np.abs(np_norm - module_norm)) / max(1.0, np.max(np.abs(module_norm))))
    require(err < tol, f"{name}: numpy final norm differs from model.norm by {err}")
    err = float(np.max(np.abs(last_lens - logits64)))
    log(f"{name}: numpy lens logits of the last layer vs transformers logits: max |diff| {err:.3g}")
    require(err < (1e-3 if dtype == torch.float32 else 1.0),
            f"{name}: numpy logit lens at the last layer does not reproduce the logits ({err})")
    top1 = float(np.mean(lens_rank[n - 1][:, :-1] == 0))
    log(f"{name}: last-layer lens top-1 rate {top1:.3f}; mean BI per layer "
        f"{np.round(bi.mean(axis=(1, 2)), 4).tolist()}")
    require(np.all(np.isfinite(logits64)) and np.all(np.isfinite(bi)), f"{name}: non-finite")
    require(np.all(bi > 1e-6), f"{name}: a layer does not change the residual (BI ~ 0)")

    scalars = [float(layer.layer_scalar.float().reshape(-1)[0]) for layer in reloaded.model.layers]
    tensors = {
        "input_ids": ids.astype(np.int64),
        "logits": logits.float().cpu().numpy().astype(np.float32),
        "nll": nll.astype(np.float32),
        "last_layer_output": layer_out[n - 1].float().cpu().numpy().astype(np.float32),
        "layer_scalar": np.array(scalars, dtype=np.float32),
        "bi": bi.astype(np.float32),
        "resid_norm": resid_norm.astype(np.float32),
        "lens_rank": lens_rank,
        "lens_gap": lens_gap.astype(np.float32),
    }
    for K, h in enumerate(hs):
        tensors[f"hidden_states.{K}"] = h.float().cpu().numpy().astype(np.float32)

    extra = {}
    if dtype == torch.bfloat16:
        # The same bf16 weights computed in fp32: lets the engine's fp32 path be checked tightly
        # on a bf16 checkpoint (bf16 -> fp32 is exact).
        m32 = load_pretrained(Gemma4ForCausalLM, torch, model_dir, torch.float32).to(device)
        l32, hs32, _, _ = run_forward(m32, torch, input_ids, device)
        tensors["logits_f32compute"] = l32.float().cpu().numpy().astype(np.float32)
        tensors["nll_f32compute"] = next_token_nll(np, l32.double().cpu().numpy(), ids).astype(
            np.float32)
        agree = float(np.mean(np.argmax(l32.cpu().numpy(), -1) == np.argmax(logits64, -1)))
        diff = float(np.max(np.abs(l32.double().cpu().numpy() - logits64)))
        log(f"{name}: bf16 vs fp32 compute of the same weights: argmax agreement {agree:.3f}, "
            f"max |logit diff| {diff:.3g}")
        extra["bf16_vs_f32_argmax_agreement"] = f"{agree:.6f}"
        extra["bf16_vs_f32_max_abs_logit_diff"] = f"{diff:.6g}"

    c = spec["config"]
    metadata = {
        "name": name,
        "compute_dtype": spec["save_dtype"],
        "checkpoint_dtype": want_st,
        "sharded": "true" if spec["sharded"] else "false",
        "num_layers": str(n),
        "layer_types": json.dumps(c["layer_types"]),
        "sliding_window": str(c["sliding_window"]),
        "final_logit_softcapping": str(softcap),
        "num_attention_heads": str(c["num_attention_heads"]),
        "num_key_value_heads": str(c["num_key_value_heads"]),
        "num_global_key_value_heads": str(c.get("num_global_key_value_heads")),
        "hidden_states_last": last_mode,
        "attn_implementation": "eager",
        "device": str(device),
        "seed": str(spec["seed"]),
    }
    metadata.update(extra)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    save_file(tensors, os.path.join(model_dir, "expected.safetensors"), metadata=metadata)
    log(f"{name}: wrote expected.safetensors ({len(tensors)} tensors)")


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="fixtures directory to (re)write")
    parser.add_argument("--device", default="cpu",
                        help="torch device for the forward passes (default cpu: no TF32)")
    parser.add_argument("--only", action="append", default=[],
                        help="regenerate only this fixture (repeatable)")
    args = parser.parse_args()

    stack = import_stack()
    np, torch, transformers, safetensors = stack[0], stack[1], stack[2], stack[3]
    log(f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"numpy {np.__version__}, safetensors {safetensors.__version__}, device {args.device}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_grad_enabled(False)  # reference computations only; lets .numpy() work on weights

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    specs = [s for s in FIXTURES if not args.only or s["name"] in args.only]
    require(specs, f"no fixture matches --only {args.only}")
    # Build into a temp dir next to the output and move into place, so a failure never leaves
    # half-written fixtures behind.
    staging = tempfile.mkdtemp(prefix=".golden-staging-", dir=out)
    try:
        for spec in specs:
            make_fixture(stack, spec, staging, args.device)
        for spec in specs:
            dst = os.path.join(out, spec["name"])
            if os.path.exists(dst):
                shutil.rmtree(dst)
            os.rename(os.path.join(staging, spec["name"]), dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    versions = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
        "device": args.device,
        "command": "python3 tests/golden/make_golden.py " + " ".join(sys.argv[1:]),
        "fixtures": {s["name"]: {"seed": s["seed"], "save_dtype": s["save_dtype"],
                                 "sharded": s["sharded"], "batch": s["batch"], "seq": s["seq"]}
                     for s in FIXTURES},
    }
    with open(os.path.join(out, "VERSIONS.json"), "w") as f:
        json.dump(versions, f, indent=2, sort_keys=True)
        f.write("\n")
    total = dir_bytes(out)
    log(f"fixtures in {out}: {total / 1024:.1f} KiB in all")
    require(total < MAX_TOTAL_BYTES, f"fixtures are {total} bytes, over the 10 MB budget")
    log("done")


if __name__ == "__main__":
    main()
