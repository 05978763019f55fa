"""sweepd.Client against a live sweepd and two workers (conftest.cluster)."""
import io
import math
import os
import subprocess

import grpc
import pandas as pd
import pytest

import sweepd

from conftest import binary


def synthetic(name, tasks, min_ms=5, max_ms=15, failure_rate=0.0, permanent=0.0, attempts=10):
    return {
        "name": name,
        "synthetic": {"tasks": tasks, "min_ms": min_ms, "max_ms": max_ms,
                      "failure_rate": failure_rate, "permanent_failure_rate": permanent},
        "grid": {"axes": [{"seeds": {"values": [1, 2]}}]},
        "policy": {"max_attempts": attempts, "retry_backoff_ms": 10},
    }


def sweepctl(cluster, *args):
    done = subprocess.run([binary("client/sweepctl"), "--coordinator", cluster.address, *args],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_submit_watch_and_results_match_sweepctl_csv(cluster, client):
    spec = synthetic("py-results", 30, failure_rate=0.1, permanent=0.1)
    sweep = client.submit(spec)
    assert sweep.sweep_id.startswith("sw-")
    assert sweep.total_tasks == 60 and not sweep.already_existed

    bar = io.StringIO()
    final = client.watch(sweep.sweep_id, file=bar)
    c = final.counts
    assert c.done + c.failed == 60 and c.failed > 0  # some permanent failures
    assert "60/60" in bar.getvalue()  # tqdm drew the bar to the end

    frame = client.results(sweep.sweep_id)
    csv = sweepctl(cluster, "results", sweep.sweep_id, "--format", "csv")
    expected = pd.read_csv(io.StringIO(csv), dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(expected.columns)
    assert len(frame) == len(expected)
    frame = frame.sort_values(["task_key", "metric"]).reset_index(drop=True)
    expected = expected.sort_values(["task_key", "metric"]).reset_index(drop=True)
    for column in frame.columns:
        if column == "value":
            continue
        assert frame[column].astype(str).tolist() == expected[column].tolist(), column
    for got, want in zip(frame["value"], expected["value"]):
        if want == "":
            assert math.isnan(got)
        else:
            assert got == pytest.approx(float(want), rel=1e-9)
    failed = frame[frame["state"] == "failed"]
    assert len(failed) == c.failed and (failed["metric"] == "").all() and (failed["error"] != "").all()
    assert set(frame[frame["state"] == "done"]["metric"]) >= {"value", "index"}


def test_submit_is_idempotent_across_dict_yaml_text_path_and_proto(client, tmp_path):
    spec = synthetic("py-idem", 4)
    first = client.submit(spec)
    proto = sweepd.to_spec(spec)
    path = tmp_path / "idem.yaml"
    path.write_text("name: py-idem\nsynthetic: {tasks: 4, min_ms: 5, max_ms: 15, failure_rate: 0.0,"
                    " permanent_failure_rate: 0.0}\ngrid:\n  axes:\n    - seeds: {values: [1, 2]}\n"
                    "policy: {max_attempts: 10, retry_backoff_ms: 10}\n")
    for again in (proto, str(path), path.read_text()):
        s = client.submit(again)
        assert s.sweep_id == first.sweep_id and s.already_existed


def test_errors_carry_the_servers_code_and_message(client):
    with pytest.raises(sweepd.SweepdError) as e:
        client.status("sw-0000000000000000")
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert "sw-0000000000000000" in e.value.message
    with pytest.raises(sweepd.SweepdError) as e:
        client.submit({"name": "no-job"})
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message  # the planner names what is wrong
    with pytest.raises(sweepd.SpecError, match="did you mean 'tasks'"):
        client.submit({"name": "typo", "synthetic": {"taskz": 3}})


def test_unreachable_coordinator_is_unavailable():
    with sweepd.Client("127.0.0.1:1", timeout=2) as c:
        with pytest.raises(sweepd.SweepdError) as e:
            c.sweeps()
    assert e.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_a_token_needs_tls():
    with pytest.raises(ValueError, match="plaintext"):
        sweepd.Client("127.0.0.1:1", token="secret")


def test_cancel_stops_a_long_sweep(client):
    sweep = client.submit(synthetic("py-cancel", 400, min_ms=100, max_ms=200))
    cancelled = client.cancel(sweep.sweep_id)
    assert cancelled > 0
    status = client.status(sweep.sweep_id)
    assert sweepd.results.sweep_state_name(status.state) == "cancelled"
    assert status.counts.cancelled == cancelled
    sweeps = client.sweeps()
    assert sweeps.set_index("sweep_id").loc[sweep.sweep_id, "state"] == "cancelled"


def test_workers_lists_both_workers(client):
    workers = client.workers()
    assert sorted(workers["name"]) == ["py-worker-0", "py-worker-1"]
    assert (workers["device_kind"] == "cpu").all()
    assert (~workers["draining"]).all()


def test_report_writes_the_html_report(client, tmp_path):
    sweep = client.submit(synthetic("py-report", 3))
    client.watch(sweep.sweep_id, progress=False)
    out = client.report(sweep.sweep_id, tmp_path / "report.html", sweepctl=binary("client/sweepctl"))
    html = open(out).read()
    assert "<html" in html and "py-report" in html
