"""examples/python/layer_study.py end to end: the demo's layer study on the tiny generated
model, run from Python against a live sweepd and two model workers; it writes the PNG chart."""
import os
import struct
import subprocess
import sys
import tempfile

import pytest

from conftest import SOURCE_DIR, Cluster, binary


@pytest.fixture(scope="module")
def model_cluster():
    with tempfile.TemporaryDirectory(prefix="sweepd-py-study-") as workdir:
        models = os.path.join(workdir, "models")
        model = os.path.join(models, "gemma4-tiny")
        subprocess.run([binary("worker/sweep-worker"), "make-model", "--config",
                        os.path.join(SOURCE_DIR, "configs", "models", "gemma4-tiny.json"),
                        "--seed", "1", "--out", model], check=True, capture_output=True)
        c = Cluster(workdir,
                    sweepd_args=["--model-root", models, "--data-root",
                                 os.path.join(SOURCE_DIR, "configs", "data")],
                    worker_args=["--model", model])
        try:
            yield c
        finally:
            c.stop()


def test_layer_study_example_writes_its_chart(model_cluster, tmp_path):
    png = tmp_path / "layer_study.png"
    csv = tmp_path / "results.csv"
    done = subprocess.run(
        [sys.executable, os.path.join(SOURCE_DIR, "examples", "python", "layer_study.py"),
         "--coordinator", model_cluster.address, "--out", str(png), "--csv", str(csv),
         "--no-progress"],
        capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    # Six layers of the tiny model, each skipped once.
    for layer in range(6):
        assert f"skip layer {layer:2d}:" in done.stdout
    assert "state: done" in done.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (700, 350)
    # Kept as a test artifact next to the build.
    artifacts = os.path.join(os.environ.get("SWEEPD_BUILD_DIR", ""), "test-artifacts")
    if os.path.isdir(os.path.dirname(artifacts)):
        os.makedirs(artifacts, exist_ok=True)
        with open(os.path.join(artifacts, "layer_study.png"), "wb") as f:
            f.write(data)
