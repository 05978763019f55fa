"""Generates the Python protobuf and gRPC stubs of proto/sweepd/v1/*.proto into
<out_root>/sweepd/v1/ with Debian's protoc (protobuf-compiler 3.21, the version of the
python3-protobuf runtime) and grpc_python_plugin (protobuf-compiler-grpc, the version of
python3-grpcio) — both already build dependencies of sweepd. Debian's python3-grpc-tools is
the fallback only: it bundles protoc 3.5.1, which rejects the proto3 `optional` fields that
spec.proto has. Called by setup.py at build/install time; the stubs are never committed."""
import glob
import os
import shutil
import subprocess
import sys


def generate(proto_root, out_root):
    proto_root = os.path.abspath(proto_root)
    protos = sorted(glob.glob(os.path.join(proto_root, "sweepd", "v1", "*.proto")))
    if not protos:
        raise RuntimeError(f"no .proto files under {proto_root}/sweepd/v1 (set SWEEPD_PROTO_DIR)")
    out_dir = os.path.join(out_root, "sweepd", "v1")
    os.makedirs(out_dir, exist_ok=True)
    args = [f"-I{proto_root}", f"--python_out={out_root}", f"--grpc_python_out={out_root}"] + protos
    plugin = shutil.which("grpc_python_plugin")
    if shutil.which("protoc") is not None and plugin is not None:
        cmd = ["protoc", f"--plugin=protoc-gen-grpc_python={plugin}"] + args
    else:
        try:
            from grpc_tools import protoc  # noqa: F401
        except ImportError:
            raise RuntimeError("need protoc + grpc_python_plugin (apt-get install protobuf-compiler "
                               "protobuf-compiler-grpc) or grpc_tools")
        cmd = [sys.executable, "-m", "grpc_tools.protoc"] + args
    subprocess.run(cmd, check=True)
    init = os.path.join(out_dir, "__init__.py")
    if not os.path.exists(init):
        with open(init, "w") as f:
            f.write("# Generated package: stubs of proto/sweepd/v1 (see sweepd/_generate.py).\n")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    generate(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "proto"),
             os.path.join(here, ".."))
