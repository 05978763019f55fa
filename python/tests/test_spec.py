"""The Python spec conversion (sweepd.spec) against the C++ loader (client/spec_loader.cc,
through the spec_dump helper): the same SweepSpec for every shipped example and for the
loader's special conversions, the same error text for bad specs."""
import glob
import os
import subprocess

import pytest

import sweepd
from sweepd.v1 import spec_pb2

from conftest import SOURCE_DIR, binary

EXAMPLES = sorted(glob.glob(os.path.join(SOURCE_DIR, "configs", "sweeps", "*.yaml")))


def cpp_load(path):
    """(SweepSpec, None) or (None, error text) from the C++ loader."""
    done = subprocess.run([binary("tests/python/spec_dump"), path], capture_output=True)
    if done.returncode != 0:
        return None, done.stderr.decode().strip()
    spec = spec_pb2.SweepSpec()
    spec.ParseFromString(done.stdout)
    return spec, None


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_example_converts_as_the_cpp_loader_does(path):
    expected, error = cpp_load(path)
    assert error is None
    got = sweepd.load_spec_file(path)
    assert got == expected
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


SPECIAL = {
    # Bare scalars wrapped into Value (int, float, string, bool) and a quoted number.
    "values": """
name: v
synthetic: {tasks: 3}
grid:
  axes:
    - param: {name: p, values: [1, 0.5, "x", true, "7", 1e3, -2]}
""",
    # LayerSet given as a string or an int; an int for a string field (select: 3).
    "layersets": """
name: l
model: {path: m}
eval:
  base_interventions:
    interventions:
      - skip: "3-5"
      - zero: 4
grid:
  axes:
    - layers: {op: skip, select: 3, include_baseline: true}
""",
    # yes/on stay strings for string fields; json names; hex and numeric strings for ints;
    # integral floats for ints; labels map; .inf for a double.
    "scalars": """
name: on
synthetic: {tasks: "12", minMs: 0x10, max_ms: 20.0, failure_rate: .inf}
labels: {purpose: yes, n: 3}
policy: {maxAttempts: 2}
""",
    # Quoted and explicitly tagged scalars.
    "tags": """
name: !!str 123
synthetic: {tasks: !!int "5"}
labels: {a: '1', b: "true", c: null}
""",
}

BAD = {
    "unknown_field": "name: x\nsynthetic: {tasks: 2}\ngrid:\n  axes:\n    - layers: {op: skip, selct: all}\n",
    "far_unknown": "name: x\nzzzzzzzzzz: 1\n",
    "type": "name: x\nsynthetic: {tasks: many}\n",
    "oneof": "name: x\nsynthetic: {tasks: 2}\neval: {}\n",
    "duplicate": "name: x\nname: y\n",
    "twice": "name: x\nsynthetic: {min_ms: 1, minMs: 2}\n",
    "range": "name: x\nsynthetic: {tasks: 3000000000}\n",
    "negative": "name: x\ngrid:\n  axes:\n    - layers: {op: skip, seed: -1}\n",
    "float_for_int": "name: x\nsynthetic: {tasks: 2.5}\n",
    "bool_for_string": "name: true\n",
    "yes_for_bool": "name: x\ngrid:\n  axes:\n    - layers: {op: skip, include_baseline: yes}\n",
    "not_mapping": "- a\n- b\n",
    "empty": "",
    "enum": "name: x\npolicy: {priority: 1}\nstages:\n  - name: s\n    drop_plan: {k: [1, x]}\n",
}


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_special_conversions_match_the_cpp_loader(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPECIAL[name])
    expected, error = cpp_load(str(path))
    assert error is None, error
    assert sweepd.load_spec_file(path) == expected


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_specs_fail_with_the_cpp_loaders_message(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(BAD[name])
    expected, error = cpp_load(str(path))
    assert expected is None, f"the C++ loader accepted {name}"
    with pytest.raises(sweepd.SpecError) as e:
        sweepd.load_spec_file(path)
    assert str(e.value) == error


def test_a_dict_and_a_proto_are_accepted():
    d = {"name": "d", "synthetic": {"tasks": 2}, "grid": {"axes": [{"seeds": {"values": [1, 2]}}]}}
    spec = sweepd.to_spec(d)
    assert spec.synthetic.tasks == 2
    assert spec.grid.axes[0].seeds.values[1].int_value == 2
    assert sweepd.to_spec(spec) is spec
    assert d["grid"]["axes"][0]["seeds"]["values"] == [1, 2]  # the caller's dict is untouched
    with pytest.raises(sweepd.SpecError, match="unknown field 'taks' at synthetic"):
        sweepd.to_spec({"name": "d", "synthetic": {"taks": 2}})
