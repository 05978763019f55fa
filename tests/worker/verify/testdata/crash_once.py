#!/usr/bin/env python3
"""Test verifier: in its first life (no STATE_FILE yet) answers one request, says "boom" on
stderr and exits with status 3; afterwards answers every request with score 0.5."""
import json
import os
import sys

state = sys.argv[1]
first_life = not os.path.exists(state)
if first_life:
    open(state, "w").close()
for n, line in enumerate(sys.stdin):
    request = json.loads(line)
    if first_life and n == 1:
        sys.stderr.write("boom\n")
        sys.exit(3)
    print(json.dumps({"id": request["id"], "score": 0.5}), flush=True)
