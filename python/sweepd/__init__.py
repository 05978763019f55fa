"""sweepd: the Python client of the sweepd sweep coordinator (docs/PYTHON.md)."""
from sweepd.client import Client, Submitted
from sweepd.errors import SpecError, SweepdError
from sweepd.results import intervention_summary, params_summary
from sweepd.spec import load_spec_file, parse_spec, to_spec

__all__ = ["Client", "Submitted", "SweepdError", "SpecError", "load_spec_file", "parse_spec", "to_spec",
           "intervention_summary", "params_summary"]
