#!/usr/bin/python3
"""Writes tests/calib/heal_fixture.json: random ridge-heal problems and their numpy
reference solutions, independent of the C++ code (docs/CALIBRATION.md, "Heal").

Run once and commit the output (needs python3-numpy, the Debian package):
    /usr/bin/python3 tests/calib/make_heal_fixture.py > tests/calib/heal_fixture.json

Each problem: X per calibration shard [n_i, D] (D = heads * head_dim, head-major), the
held-out X, the base o_proj weight W [hidden, D], optionally an explicit target Y per
shard (else Y = X Wᵀ), the removed heads and ridge_rel. The reference solves the ridge
problem as an augmented least-squares system with np.linalg.lstsq,
    [X_k; sqrt(λ) I] O′_kᵀ = [Y; 0],  λ = ridge_rel · mean(diag X_kᵀX_k),
which never forms the normal equations the C++ code solves, and reports the relative
residuals ‖X_k O′_kᵀ − Y‖² / ‖Y‖² computed from the rows themselves.
"""
import json
import sys

import numpy as np


def problem(rng, name, heads, head_dim, hidden, shard_rows, heldout_rows, removed,
            ridge_rel, target=False, zero_head=None, solver="cholesky"):
    D = heads * head_dim
    W = rng.standard_normal((hidden, D))
    # Correlated columns (a random mixing), as attention outputs are.
    mix = np.eye(D) + 0.3 * rng.standard_normal((D, D))

    def rows(n):
        x = rng.standard_normal((n, D)) @ mix
        if zero_head is not None:
            x[:, zero_head * head_dim:(zero_head + 1) * head_dim] = 0.0
        return x

    shards = [rows(n) for n in shard_rows]
    heldout = rows(heldout_rows)

    def ys(x):
        y = x @ W.T
        if target:
            y = y + 0.1 * rng.standard_normal(y.shape)
        return y

    shard_y = [ys(x) for x in shards]
    heldout_y = ys(heldout)
    X = np.concatenate(shards)
    Y = np.concatenate(shard_y)
    kept = [c for h in range(heads) if h not in removed
            for c in range(h * head_dim, (h + 1) * head_dim)]
    Xk = X[:, kept]
    lam = ridge_rel * float(np.mean(np.sum(Xk * Xk, axis=0)))
    if lam > 0:
        A = np.concatenate([Xk, np.sqrt(lam) * np.eye(len(kept))])
        B = np.concatenate([Y, np.zeros((len(kept), hidden))])
    else:
        A, B = Xk, Y
    Z, *_ = np.linalg.lstsq(A, B, rcond=None)  # O′_kᵀ, minimum norm
    O = np.zeros((hidden, D))
    O[:, kept] = Z.T

    def rel(x, y):
        r = x[:, kept] @ Z - y
        return float(np.sum(r * r) / np.sum(y * y))

    out = {
        "name": name,
        "heads": heads,
        "head_dim": head_dim,
        "hidden": hidden,
        "removed": removed,
        "ridge_rel": ridge_rel,
        "target": target,
        "solver": solver,
        "w": W.ravel().tolist(),
        "shards": [x.ravel().tolist() for x in shards],
        "heldout": heldout.ravel().tolist(),
        "lambda": lam,
        "weight": O.ravel().tolist(),
        "residual_calibration": rel(X, Y),
        "residual_heldout": rel(heldout, heldout_y),
    }
    if target:
        out["shard_y"] = [y.ravel().tolist() for y in shard_y]
        out["heldout_y"] = heldout_y.ravel().tolist()
    return out


def main():
    rng = np.random.default_rng(20261207)
    problems = [
        problem(rng, "ridge", heads=4, head_dim=4, hidden=8,
                shard_rows=[40, 30, 26], heldout_rows=32, removed=[1],
                ridge_rel=0.01),
        problem(rng, "target", heads=4, head_dim=3, hidden=6,
                shard_rows=[25, 25], heldout_rows=20, removed=[0, 3],
                ridge_rel=0.05, target=True),
        # λ = 0 and a head whose output is always zero: G_kk is singular, Cholesky
        # fails, the eigensolver's pseudo-inverse gives lstsq's minimum-norm solution.
        problem(rng, "singular", heads=4, head_dim=4, hidden=5,
                shard_rows=[30, 34], heldout_rows=16, removed=[3],
                ridge_rel=0.0, zero_head=2, solver="eigh"),
    ]
    json.dump({"generator": "tests/calib/make_heal_fixture.py",
               "numpy": np.__version__, "problems": problems},
              sys.stdout, indent=None)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
