#!/usr/bin/env python3
"""The demo's layer study from Python: submits configs/sweeps/layer_study.yaml (probe +
single-layer skip ablation of every layer + the derived drop-plan stage), follows it with a
progress bar, reads the tidy results into pandas, computes each layer's skip ablation delta
(ppl_delta_pct = 100 * (ppl / ppl_baseline - 1), perplexity over all shards as
exp(sum nll_sum / sum tokens), category "all"; docs/METRICS.md) and plots it as a bar chart.

    # sweepd and workers running as in scripts/demo.sh (model gemma4-tiny, data configs/data)
    python3 examples/python/layer_study.py --coordinator 127.0.0.1:7070 --out layer_study.png

Needs the `sweepd` package (pip install -e python/; docs/PYTHON.md) and Debian's
python3-matplotlib (drawn with the Agg backend: no display needed)."""
import argparse
import math
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import sweepd  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def layer_deltas(results):
    """Per skipped layer: ppl_delta_pct of the eval tasks against the baseline (the stage-0
    grid: interventions "baseline" and "skip:L"; derived drop-plan tasks are left out)."""
    # Eval tasks only: probe tasks report `tokens` too (tokens in the BI means), not nll_sum.
    eval_keys = set(results.loc[results["metric"] == "nll_sum", "task_key"])
    evals = results[results["task_key"].isin(eval_keys) & (results["category"] == "all")
                    & results["metric"].isin(["nll_sum", "tokens"])]
    sums = evals.pivot_table(index=["interventions", "dataset"], columns="metric", values="value",
                             aggfunc="sum").reset_index()
    totals = sums.groupby("interventions")[["nll_sum", "tokens"]].sum()
    ppl = (totals["nll_sum"] / totals["tokens"]).apply(math.exp)
    baseline = ppl["baseline"]
    rows = []
    for name, value in ppl.items():
        m = re.fullmatch(r"skip:(\d+)", name)
        if m:
            rows.append((int(m.group(1)), 100.0 * (value / baseline - 1.0)))
    return sorted(rows), baseline


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", default=None, help="HOST:PORT (default $SWEEPD_COORDINATOR)")
    parser.add_argument("--spec", default=os.path.join(ROOT, "configs", "sweeps", "layer_study.yaml"))
    parser.add_argument("--out", default="layer_study.png", help="the chart (PNG)")
    parser.add_argument("--csv", default=None, help="also write the tidy results here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    with sweepd.Client(args.coordinator) as client:
        sweep = client.submit(args.spec)
        print(f"sweep {sweep.sweep_id}: {sweep.total_tasks} tasks"
              + (" (already submitted)" if sweep.already_existed else ""))
        final = client.watch(sweep.sweep_id, progress=not args.no_progress)
        print("state:", sweepd.results.sweep_state_name(final.state))
        results = client.results(sweep.sweep_id)
    if args.csv:
        results.to_csv(args.csv, index=False)
    deltas, baseline = layer_deltas(results)
    if not deltas:
        print("no skip ablations in the results", file=sys.stderr)
        return 1
    print(f"baseline perplexity {baseline:.3f}")
    for layer, delta in deltas:
        print(f"  skip layer {layer:2d}: {delta:+8.2f} %")

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    layers = [l for l, _ in deltas]
    values = [d for _, d in deltas]
    ax.bar(layers, values, color=["#c0392b" if v > 0 else "#27ae60" for v in values])
    ax.set_xlabel("skipped layer")
    ax.set_ylabel("perplexity delta (%)")
    ax.set_title(f"Single-layer skip ablation ({final.name}, baseline ppl {baseline:.2f})")
    ax.set_xticks(layers)
    ax.axhline(0, color="black", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(args.out)
    print("chart:", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
