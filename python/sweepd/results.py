"""Tidy result rows, the same as `sweepctl results --format csv` (client/ctl_format.cc): one
row per metric of a task (a task without metrics gives one row with an empty metric and its
error), label keys as sorted columns between `metric` and `value`."""
import math

import pandas as pd

BASE_COLUMNS = ["sweep_id", "task_key", "index", "state", "interventions", "params", "seed", "dataset", "metric"]


def _short_enum(name, prefix):
    return (name[len(prefix):] if name.startswith(prefix) else name).lower()


def task_state_name(state):
    from sweepd.v1 import task_pb2

    return _short_enum(task_pb2.TaskState.Name(state), "TASK_STATE_")


def sweep_state_name(state):
    from sweepd.v1 import coordinator_pb2

    return _short_enum(coordinator_pb2.SweepState.Name(state), "SWEEP_STATE_")


def _value_text(v):
    kind = v.WhichOneof("kind")
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return "%g" % v.double_value
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    return ""


def intervention_summary(iset):
    """"skip:3+mask_heads:4[0,1]"; "baseline" when empty (ctl_format.cc InterventionSummary)."""
    parts = []
    for iv in iset.interventions:
        op = iv.WhichOneof("op")
        if op == "skip":
            parts.append("skip:" + iv.skip.layers)
        elif op == "zero":
            parts.append("zero:" + iv.zero.layers)
        elif op == "reinit":
            parts.append(f"reinit:{iv.reinit.layers}@seed={iv.reinit.seed}")
        elif op == "mask_heads":
            parts.append(f"mask_heads:{iv.mask_heads.layer}[" + ",".join(str(h) for h in iv.mask_heads.heads) + "]")
    return "+".join(parts) if parts else "baseline"


def params_summary(spec):
    return ",".join(f"{name}={_value_text(spec.params[name])}" for name in sorted(spec.params))


def tidy_rows(record, sweep_id=""):
    """One TaskRecord -> list of row dicts (labels under "labels")."""
    spec = record.spec
    base = {
        "sweep_id": record.sweep_id or sweep_id,
        "task_key": record.task_key,
        "index": spec.index,
        "state": task_state_name(record.state),
        "interventions": intervention_summary(spec.interventions),
        "params": params_summary(spec),
        "seed": spec.seed,
        "dataset": f"{spec.data.dataset.name}#{spec.data.shard_index}" if spec.HasField("data") else "",
        "metric": "",
        "labels": {},
        "value": math.nan,
        "error": record.error,
    }
    rows = []
    for m in record.result.metrics:
        row = dict(base)
        row["metric"] = m.name
        row["labels"] = dict(m.labels)
        row["value"] = m.value
        rows.append(row)
    return rows or [base]


def rows_to_frame(rows):
    """Row dicts -> DataFrame with sweepctl's CSV columns (missing value = NaN, missing
    label = "")."""
    label_keys = sorted({k for r in rows for k in r["labels"]})
    columns = BASE_COLUMNS + label_keys + ["value", "error"]
    data = []
    for r in rows:
        row = [r[c] for c in BASE_COLUMNS]
        row += [r["labels"].get(k, "") for k in label_keys]
        row += [r["value"], r["error"]]
        data.append(row)
    frame = pd.DataFrame(data, columns=columns)
    if not data:
        return frame
    frame["index"] = frame["index"].astype("int64")
    frame["seed"] = frame["seed"].astype("uint64")
    frame["value"] = frame["value"].astype("float64")
    return frame
