"""Sweep specs: a dict, a YAML/JSON file or text -> sweepd.v1.SweepSpec, converted exactly as
`sweepctl submit` converts them (client/spec_loader.cc):

* YAML plain scalars are typed like yaml-cpp's in the C++ loader: decimal and 0x integers,
  floats, true/false (True, TRUE), null/~ and .inf/.nan; everything else, quoted scalars and
  `!!str` stay strings (so `yes` and `on` are strings, unlike PyYAML's default).
* Every key is checked against the SweepSpec descriptor (proto or json name); an unknown
  key fails with its path and a close-match suggestion.
* Conveniences: a bare scalar where a sweepd.v1.Value is expected is wrapped
  (`values: [1, 0.5, "x", true]`), a bare selector where a LayerSet is expected is wrapped
  (`skip: "3-5"`, `skip: 3`), an integer given for a string field becomes its decimal text,
  an integral float or a numeric string is accepted for an integer field.

Errors raise SpecError with the same text as the C++ loader."""
import copy
import json
import math
import os
import re

import yaml
from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format

from sweepd.errors import SpecError

_FD = _descriptor.FieldDescriptor
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_UINT32_MAX, _INT64_MAX, _UINT64_MAX = 2**32 - 1, 2**63 - 1, 2**64 - 1

# ---- YAML with the C++ loader's scalar typing -------------------------------------------

_PLAIN = "?"  # tag given to untagged plain scalars (yaml-cpp's non-specific tag)


class _Loader(yaml.SafeLoader):
    """Composes nodes only; resolves no implicit types (the typing is ours)."""

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else "tag:yaml.org,2002:str"
        return super().resolve(kind, value, implicit)


_DECIMAL = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$")


class _Text(str):
    """An out-of-range integer literal: left as text for the type check to report."""


def _type_plain(s):
    if s in ("", "~", "null", "Null", "NULL"):
        return None
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if _DECIMAL.match(s):
        v = int(s)
        if -(2**63) <= v <= _UINT64_MAX:
            return v
        return s
    if s.startswith("0x") and len(s) > 2:
        try:
            v = int(s[2:], 16)
            if v <= _UINT64_MAX:
                return v
        except ValueError:
            pass
    if _FLOAT.match(s):
        return float(s)
    if s in (".inf", ".Inf", ".INF", "+.inf"):
        return "Infinity"
    if s in ("-.inf", "-.Inf", "-.INF"):
        return "-Infinity"
    if s in (".nan", ".NaN", ".NAN"):
        return "NaN"
    return s


def _yaml_error(source, mark, message):
    return SpecError(f"{source}: YAML error at line {mark.line + 1}, column {mark.column + 1}: {message}")


def _child(path, key):
    return key if not path else f"{path}.{key}"


def _where(path):
    return path if path else "top level"


def _node_to_value(node, path, source, marks):
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _PLAIN:
            return _type_plain(node.value)
        if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
            typed = _type_plain(node.value)
            if isinstance(typed, bool) or not isinstance(typed, (int, float)):
                raise _yaml_error(source, node.start_mark, f"'{node.value}' is not a {node.tag}")
            return typed
        if node.tag == "tag:yaml.org,2002:null":
            return None
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_node_to_value(item, f"{path}[{i}]", source, marks) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _yaml_error(source, key_node.start_mark, "mapping keys must be scalars")
            key = key_node.value
            if key in out:
                raise _yaml_error(source, key_node.start_mark, f"duplicate key '{key}' at {_where(path)}")
            child = _child(path, key)
            marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _node_to_value(value_node, child, source, marks)
        return out
    return None


def _parse_yaml(text, source, marks):
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise SpecError(f"{source}: YAML error at line {mark.line + 1}, column {mark.column + 1}: {e.problem}")
    if root is None:
        return None
    return _node_to_value(root, "", source, marks)


# ---- The descriptor check (client/spec_loader.cc SpecChecker) ----------------------------


def _edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            subst = prev[j - 1] + (0 if a[i - 1].lower() == b[j - 1].lower() else 1)
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, subst)
        prev = cur
    return prev[len(b)]


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _type_name(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if _is_int(v):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _dump(v):
    """nlohmann::json::dump() of v (compact), for error messages."""
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "null"
        r = repr(v)
        return r
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _brief(v):
    s = _dump(v)
    return s[:37] + "..." if len(s) > 40 else s


def _is_map(f):
    return (
        f.type == _FD.TYPE_MESSAGE
        and f.message_type.GetOptions().map_entry
        and f.label == _FD.LABEL_REPEATED
    )


def _default_json(f):
    t = f.cpp_type
    if t == _FD.CPPTYPE_STRING:
        return ""
    if t == _FD.CPPTYPE_BOOL:
        return False
    if t == _FD.CPPTYPE_MESSAGE:
        return {}
    return 0


class _Checker:
    def __init__(self, source, marks):
        self.source = source
        self.marks = marks

    def location(self, path):
        if path in self.marks:
            line, col = self.marks[path]
            return f" [{self.source}:{line}:{col}]"
        return f" [{self.source}]"

    def invalid(self, path, message):
        return SpecError(f"{_where(path)}: {message}{self.location(path)}")

    def mismatch(self, path, expected, got):
        return self.invalid(path, f"expected {expected}, got {_type_name(got)} {_brief(got)}")

    @staticmethod
    def find_field(d, key):
        f = d.fields_by_name.get(key)
        if f is not None:
            return f
        for f in d.fields:
            if f.json_name == key:
                return f
        return None

    def unknown(self, d, key, path):
        best, best_distance = "", None
        for f in d.fields:
            for name in (f.name, f.json_name):
                dist = _edit_distance(key, name)
                if best_distance is None or dist < best_distance:
                    best, best_distance = f.name, dist
        if best and best_distance <= max(2, len(key) // 3):
            hint = f" (did you mean '{best}'?)"
        else:
            hint = " (known fields: " + ", ".join(f.name for f in d.fields) + ")"
        return SpecError(f"unknown field '{key}' at {_where(path)}{hint}{self.location(_child(path, key))}")

    def check_message(self, j, d, path):
        """Checks (and normalizes in place) the mapping j against descriptor d; returns it."""
        if j is None:
            return j
        if not isinstance(j, dict):
            raise self.mismatch(path, "a mapping of fields", j)
        oneof_used, seen = {}, {}
        # nlohmann::json objects iterate keys in sorted order; so does this check, so the
        # first error found is the C++ loader's.
        for key in sorted(j.keys()):
            f = self.find_field(d, key)
            if f is None:
                raise self.unknown(d, key, path)
            child = _child(path, key)
            if f.full_name in seen:
                raise self.invalid(child, f"field given twice, as '{seen[f.full_name]}' and '{key}'")
            seen[f.full_name] = key
            oneof = f.containing_oneof
            if oneof is not None and j[key] is not None:
                if oneof.name in oneof_used:
                    names = ", ".join(x.name for x in oneof.fields)
                    raise self.invalid(
                        child,
                        f"both '{oneof_used[oneof.name]}' and '{key}' are set; {_where(path)} takes only one of {names}",
                    )
                oneof_used[oneof.name] = key
            j[key] = self.check_field(j[key], f, child)
        return j

    def check_field(self, v, f, path):
        if v is None:
            return v
        if _is_map(f):
            if not isinstance(v, dict):
                raise self.mismatch(path, "a mapping", v)
            key_field = f.message_type.fields_by_name["key"]
            value_field = f.message_type.fields_by_name["value"]
            for k in sorted(v.keys()):
                entry = f"{path}[{k}]"
                self.check_map_key(str(k), key_field, entry)
                if v[k] is None:
                    # protobuf's JSON parser (C++) reads a null map value as the default.
                    v[k] = _default_json(value_field)
                    continue
                v[k] = self.check_singular(v[k], value_field, entry)
            return v
        if f.label == _FD.LABEL_REPEATED:
            if not isinstance(v, list):
                raise self.mismatch(path, "a list", v)
            return [self.check_singular(x, f, f"{path}[{i}]") for i, x in enumerate(v)]
        return self.check_singular(v, f, path)

    def check_map_key(self, key, f, path):
        if f.cpp_type == _FD.CPPTYPE_STRING:
            return
        if f.cpp_type == _FD.CPPTYPE_BOOL:
            if key in ("true", "false"):
                return
            raise self.invalid(path, "map key must be true or false")
        try:
            int(key)
        except ValueError:
            raise self.invalid(path, f"map key '{key}' is not an integer")

    def check_integer(self, v, f, path):
        is_signed = f.cpp_type in (_FD.CPPTYPE_INT32, _FD.CPPTYPE_INT64)
        is_32 = f.cpp_type in (_FD.CPPTYPE_INT32, _FD.CPPTYPE_UINT32)
        expected = "an integer" if is_signed else "a non-negative integer"
        if isinstance(v, float):
            if math.isnan(v) or math.isinf(v) or math.floor(v) != v or abs(v) > 9e15:
                raise self.mismatch(path, expected, v)
            v = int(v)
        if isinstance(v, str):
            if re.match(r"^[-+]?[0-9]+$", v.strip()) and -(2**63) <= int(v) <= _UINT64_MAX:
                v = int(v)
            else:
                raise self.mismatch(path, expected, v)
        if not _is_int(v):
            raise self.mismatch(path, expected, v)
        if v > _INT64_MAX:
            limit = (_INT32_MAX if is_signed else _UINT32_MAX) if is_32 else (_INT64_MAX if is_signed else _UINT64_MAX)
            if v > limit:
                raise self.invalid(path, f"{v} is out of range")
            return v
        if not is_signed and v < 0:
            raise self.mismatch(path, expected, v)
        if is_32 and is_signed and (v < _INT32_MIN or v > _INT32_MAX):
            raise self.invalid(path, f"{v} is out of range for int32")
        if is_32 and not is_signed and v > _UINT32_MAX:
            raise self.invalid(path, f"{v} is out of range for uint32")
        return v

    def check_singular(self, v, f, path):
        if v is None:
            return v
        t = f.cpp_type
        if t == _FD.CPPTYPE_MESSAGE:
            md = f.message_type
            primitive = isinstance(v, (bool, int, float, str))
            if md.full_name == "sweepd.v1.Value" and primitive:
                if isinstance(v, bool):
                    v = {"bool_value": v}
                elif _is_int(v):
                    v = {"int_value": v}
                elif isinstance(v, float):
                    v = {"double_value": v}
                else:
                    v = {"string_value": v}
            elif md.full_name == "sweepd.v1.LayerSet" and (isinstance(v, str) or _is_int(v)):
                v = {"layers": v if isinstance(v, str) else str(v)}
            return self.check_message(v, md, path)
        if t == _FD.CPPTYPE_STRING:
            if isinstance(v, str):
                return v
            if _is_int(v):
                return str(v)
            raise self.mismatch(path, "a string", v)
        if t in (_FD.CPPTYPE_INT32, _FD.CPPTYPE_INT64, _FD.CPPTYPE_UINT32, _FD.CPPTYPE_UINT64):
            return self.check_integer(v, f, path)
        if t in (_FD.CPPTYPE_DOUBLE, _FD.CPPTYPE_FLOAT):
            if (_is_int(v) or isinstance(v, float)) and not isinstance(v, bool):
                return v
            if v in ("NaN", "Infinity", "-Infinity"):
                return v
            raise self.mismatch(path, "a number", v)
        if t == _FD.CPPTYPE_BOOL:
            if isinstance(v, bool):
                return v
            raise self.mismatch(path, "true or false", v)
        if t == _FD.CPPTYPE_ENUM:
            e = f.enum_type
            if _is_int(v):
                return v
            if isinstance(v, str) and v in e.values_by_name:
                return v
            names = ", ".join(x.name for x in e.values)
            raise self.mismatch(path, f"one of {names}", v)
        return v


# ---- Public API ---------------------------------------------------------------------------


def _to_proto(doc, source, marks):
    from sweepd.v1 import spec_pb2

    if doc is None:
        raise SpecError(f"{source}: empty spec")
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: the spec must be a mapping of fields, got {_type_name(doc)}")
    doc = _Checker(source, marks).check_message(doc, spec_pb2.SweepSpec.DESCRIPTOR, "")
    spec = spec_pb2.SweepSpec()
    try:
        json_format.ParseDict(doc, spec, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        raise SpecError(f"{source}: {e}")
    return spec


def parse_spec(text, fmt="auto", source="<spec>"):
    """YAML or JSON text -> SweepSpec. fmt: "auto" (JSON if it starts with '{'), "yaml", "json"."""
    if fmt == "auto":
        fmt = "json" if text.lstrip(" \t\r\n").startswith("{") else "yaml"
    marks = {}
    if fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{source}: JSON error at line {e.lineno}, column {e.colno}: {e.msg}")
    else:
        doc = _parse_yaml(text, source, marks)
    return _to_proto(doc, source, marks)


def load_spec_file(path):
    """A .yaml/.yml/.json file -> SweepSpec (format by extension, else auto)."""
    path = os.fspath(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}")
    lower = path.lower()
    fmt = "yaml" if lower.endswith((".yaml", ".yml")) else "json" if lower.endswith(".json") else "auto"
    return parse_spec(text, fmt, path)


def to_spec(spec):
    """A SweepSpec, a dict (the YAML schema as Python values), a path or YAML text -> SweepSpec."""
    from sweepd.v1 import spec_pb2

    if isinstance(spec, spec_pb2.SweepSpec):
        return spec
    if isinstance(spec, dict):
        return _to_proto(copy.deepcopy(spec), "<dict>", {})
    if isinstance(spec, (str, os.PathLike)):
        if isinstance(spec, str) and ("\n" in spec or spec.lstrip().startswith("{")):
            return parse_spec(spec)
        return load_spec_file(spec)
    raise TypeError(f"spec must be a SweepSpec, a dict or a path, got {type(spec).__name__}")
