"""Exceptions of the sweepd client. Every failed call raises SweepdError carrying the
server's status code, message and sweepd error reason (proto/sweepd/v1/errors.proto)."""
import grpc


class SweepdError(Exception):
    """A failed RPC. `code` is a grpc.StatusCode, `message` the server's text, `reason`
    the sweepd error reason (e.g. "WORKER_UNKNOWN") or ""."""

    def __init__(self, code, message, reason="", method=""):
        self.code = code
        self.message = message
        self.reason = reason
        self.method = method
        name = code.name if hasattr(code, "name") else str(code)
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{name}: {message}" + (f" [{reason}]" if reason else ""))


class SpecError(ValueError):
    """A sweep spec that cannot be converted (bad YAML, unknown field, wrong type); the
    message names the field path, as `sweepctl submit` does."""


def _reason_of(error):
    from sweepd.v1 import errors_pb2

    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = errors_pb2.RpcStatus()
        try:
            status.ParseFromString(value)
        except Exception:  # malformed details: keep code and message
            return ""
        for detail in status.details:
            if detail.type_url.endswith("ErrorInfo"):
                info = errors_pb2.ErrorInfo()
                info.ParseFromString(detail.value)
                return info.reason
    return ""


def from_rpc_error(error, method=""):
    """grpc.RpcError -> SweepdError (code, details, error reason)."""
    if not isinstance(error, grpc.Call):
        return SweepdError(grpc.StatusCode.UNKNOWN, str(error), method=method)
    return SweepdError(error.code(), error.details() or "", _reason_of(error), method)
