#!/usr/bin/env python3
"""Test verifier: reads requests two at a time and answers each pair in reverse order; the
score is the sample's length, pass when the sample equals the reference, and a sample "ERR"
gets a per-sample error."""
import json
import sys

pending = []
for line in sys.stdin:
    pending.append(json.loads(line))
    if len(pending) < 2:
        continue
    for r in reversed(pending):
        if r["sample"] == "ERR":
            out = {"id": r["id"], "error": "cannot score ERR"}
        else:
            out = {"id": r["id"], "score": len(r["sample"]), "pass": r["sample"] == r["reference"]}
        print(json.dumps(out), flush=True)
    pending = []
