#!/usr/bin/env python3
"""Example sweepd verifier: compares the final number of a sample with the reference's.

sweepd's `command` verifier kind (docs/GENERATION.md, "Verifiers") starts this program once and
keeps it running. It writes one JSON request per line on stdin:

    {"id": 0, "prompt": "...", "sample": "...", "reference": "...", "category": "..."}

and reads one JSON response per line on stdout, in any order, matched by "id":

    {"id": 0, "score": 1.0, "pass": true}      or      {"id": 0, "error": "why"}

Flush after every response: sweepd waits for them with a deadline. Python 3 standard library
only. Usage in a sweep spec: command: ["python3", "examples/verifiers/numeric_verifier.py",
"--tolerance", "1e-6"].
"""
import argparse
import json
import re
import sys
from fractions import Fraction

NUMBER = re.compile(
    r"(?<![\w.])(-?)(\d{1,3}(?:,\d{3})+|\d+)?(\.\d+)?(?:[eE]([+-]?\d+))?(?:/(\d+))?")


def numbers(text):
    """Every number in text: integers, decimals, 1,234 separators, a/b, 1e-3, negatives."""
    out = []
    for m in NUMBER.finditer(text):
        sign, whole, frac, exp, den = m.groups()
        if whole is None and frac is None:
            continue
        value = float((whole or "0").replace(",", "") + (frac or "") +
                      (("e" + exp) if exp else ""))
        if den and frac is None and exp is None and int(den) != 0:
            value = float(Fraction(int((whole or "0").replace(",", "")), int(den)))
        out.append(-value if sign else value)
    return out


def answer(text):
    """The committed answer: last \\boxed{...}, else the text after '####', else the last number."""
    boxed = text.rfind("\\boxed{")
    if boxed >= 0:
        found = numbers(text[boxed + 7:].split("}", 1)[0])
        if found:
            return found[-1]
    marker = text.rfind("####")
    if marker >= 0:
        found = numbers(text[marker + 4:])
        if found:
            return found[0]
    found = numbers(text)
    return found[-1] if found else None


def main():
    parser = argparse.ArgumentParser(description="sweepd example numeric verifier (JSONL)")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        want = answer(request.get("reference", ""))
        if want is None:
            response = {"id": request["id"], "error": "the reference holds no number"}
        else:
            got = answer(request.get("sample", ""))
            ok = got is not None and abs(got - want) <= args.tolerance
            response = {"id": request["id"], "score": 1.0 if ok else 0.0, "pass": ok}
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
