"""Client: the sweepd Coordinator service from Python.

    import sweepd
    c = sweepd.Client("127.0.0.1:7070")
    sweep = c.submit("configs/sweeps/layer_study.yaml")   # or a dict, or a SweepSpec
    c.watch(sweep.sweep_id)                                # tqdm progress bar
    df = c.results(sweep.sweep_id)                         # pandas, sweepctl's CSV columns

Every call carries a deadline (`timeout` seconds). A failed call raises SweepdError with the
server's status code, message and sweepd error reason. Not thread-safe per instance beyond
what grpc channels are (calls from several threads are fine; watch() is one stream)."""
import dataclasses
import os
import shutil
import subprocess

import grpc
import pandas as pd

from sweepd import results as _results
from sweepd.errors import SweepdError, from_rpc_error
from sweepd.spec import to_spec

RESULTS_PAGE_SIZE = 1000


@dataclasses.dataclass
class Submitted:
    sweep_id: str
    total_tasks: int
    already_existed: bool


def _read(value):
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def _credentials(tls):
    """tls: None (plaintext), True (system roots), a grpc.ChannelCredentials, or a dict with
    root_certificates / certificate_chain / private_key given as bytes or file paths."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    if isinstance(tls, dict):
        return grpc.ssl_channel_credentials(
            root_certificates=_read(tls.get("root_certificates") or tls.get("ca")),
            private_key=_read(tls.get("private_key") or tls.get("key")),
            certificate_chain=_read(tls.get("certificate_chain") or tls.get("cert")),
        )
    raise TypeError("tls must be None, True, grpc.ChannelCredentials or a dict")


class Client:
    def __init__(self, address=None, token=None, tls=None, timeout=30.0):
        """address: HOST:PORT (default $SWEEPD_COORDINATOR, else 127.0.0.1:7070). token: sent
        as `authorization: Bearer TOKEN` metadata on every call (sweepd's token roles); only
        with tls (ValueError otherwise). tls: see _credentials."""
        from sweepd.v1 import coordinator_pb2_grpc

        self.address = address or os.environ.get("SWEEPD_COORDINATOR") or "127.0.0.1:7070"
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        creds = _credentials(tls)
        if token and creds is None:
            # As sweepctl and sweep-worker: a bearer token never travels in plaintext.
            raise ValueError("refusing to send a bearer token over plaintext: pass tls=")
        options = [("grpc.max_receive_message_length", 64 << 20)]
        if creds is None:
            self._channel = grpc.insecure_channel(self.address, options=options)
        else:
            self._channel = grpc.secure_channel(self.address, creds, options=options)
        self._stub = coordinator_pb2_grpc.CoordinatorStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request):
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, method) from None

    # ---- Sweeps --------------------------------------------------------------------------

    def submit(self, spec):
        """Submits a sweep (idempotent: the same spec gives the same sweep). spec: a dict in
        the YAML schema, a path to a .yaml/.json spec, YAML text, or a SweepSpec."""
        from sweepd.v1 import coordinator_pb2

        response = self._call("SubmitSweep", coordinator_pb2.SubmitSweepRequest(spec=to_spec(spec)))
        return Submitted(response.sweep_id, response.total_tasks, response.already_existed)

    def status(self, sweep_id):
        """The sweep's SweepStatus (state, counts, spec, waiting work)."""
        from sweepd.v1 import coordinator_pb2

        return self._call("GetSweep", coordinator_pb2.GetSweepRequest(sweep_id=sweep_id))

    def sweeps(self):
        """Every sweep as a DataFrame: sweep_id, name, state, total, pending, leased, done,
        failed, cancelled, created_unix_ms, updated_unix_ms."""
        from sweepd.v1 import coordinator_pb2

        response = self._call("ListSweeps", coordinator_pb2.ListSweepsRequest())
        rows = []
        for s in response.sweeps:
            c = s.counts
            rows.append([s.sweep_id, s.name, _results.sweep_state_name(s.state), c.total, c.pending,
                         c.leased, c.done, c.failed, c.cancelled, s.created_unix_ms, s.updated_unix_ms])
        return pd.DataFrame(rows, columns=["sweep_id", "name", "state", "total", "pending", "leased",
                                           "done", "failed", "cancelled", "created_unix_ms",
                                           "updated_unix_ms"])

    def watch(self, sweep_id, progress=True, file=None):
        """Follows the sweep until it ends (tqdm bar of finished tasks when `progress`) and
        returns its last SweepStatus. The stream has no overall deadline; each event resets
        nothing, so Ctrl-C ends it."""
        from sweepd.v1 import coordinator_pb2

        bar = None
        last = None
        try:
            stream = self._stub.WatchSweep(coordinator_pb2.WatchSweepRequest(sweep_id=sweep_id),
                                           metadata=self._metadata)
            for event in stream:
                last = event.status
                c = last.counts
                finished = c.done + c.failed + c.cancelled
                if progress:
                    if bar is None:
                        from tqdm.auto import tqdm

                        bar = tqdm(total=c.total, desc=last.name or sweep_id, unit="task", file=file)
                    bar.total = c.total
                    bar.n = finished
                    bar.set_postfix(state=_results.sweep_state_name(last.state), failed=c.failed,
                                    running=c.leased, refresh=False)
                    bar.refresh()
        except grpc.RpcError as e:
            raise from_rpc_error(e, "WatchSweep") from None
        finally:
            if bar is not None:
                bar.close()
        return last if last is not None else self.status(sweep_id)

    def cancel(self, sweep_id):
        """Cancels the sweep's unfinished tasks; returns how many were cancelled."""
        from sweepd.v1 import coordinator_pb2

        return self._call("CancelSweep", coordinator_pb2.CancelSweepRequest(sweep_id=sweep_id)).cancelled_tasks

    # ---- Results -------------------------------------------------------------------------

    def records(self, sweep_id, states=()):
        """Every TaskRecord of the sweep (all ListResults pages). states: names ("done") or
        TaskState values; empty = all."""
        from sweepd.v1 import coordinator_pb2, task_pb2

        wanted = [task_pb2.TaskState.Value("TASK_STATE_" + s.upper()) if isinstance(s, str) else s for s in states]
        request = coordinator_pb2.ListResultsRequest(sweep_id=sweep_id, states=wanted,
                                                     page_size=RESULTS_PAGE_SIZE)
        out = []
        while True:
            response = self._call("ListResults", request)
            out.extend(response.tasks)
            if not response.next_page_token:
                return out
            request.page_token = response.next_page_token

    def results(self, sweep_id, states=()):
        """Tidy results as a DataFrame with the columns of `sweepctl results --format csv`."""
        rows = []
        for record in self.records(sweep_id, states):
            rows.extend(_results.tidy_rows(record, sweep_id))
        return _results.rows_to_frame(rows)

    # ---- Workers and reports -------------------------------------------------------------

    def workers(self):
        """Registered workers as a DataFrame (WorkerInfo fields)."""
        from sweepd.v1 import coordinator_pb2

        response = self._call("ListWorkers", coordinator_pb2.ListWorkersRequest())
        columns = ["worker_id", "name", "device_kind", "gpu_count", "tensor_parallel",
                   "model_fingerprint", "last_seen_unix_ms", "active_leases", "draining", "tasks_done"]
        return pd.DataFrame([[getattr(w, c) for c in columns] for w in response.workers], columns=columns)

    def report(self, sweep_id, out, sweepctl=None, args=()):
        """Writes the sweep's HTML report to `out` by running `sweepctl report` (the one report
        builder; charts, layer profile, drop plan). sweepctl: its path (default $SWEEPCTL, else
        on PATH). args: more report flags, e.g. ["--drop-k", "2,3"]. Returns `out`."""
        exe = sweepctl or os.environ.get("SWEEPCTL") or shutil.which("sweepctl")
        if not exe:
            raise FileNotFoundError("sweepctl not found: pass sweepctl=PATH or set $SWEEPCTL")
        cmd = [exe, "--coordinator", self.address, "--timeout-s", str(int(self.timeout)), "report",
               sweep_id, "--out", os.fspath(out), *args]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SweepdError(grpc.StatusCode.UNKNOWN, (done.stderr or done.stdout).strip(), method="report")
        return out
