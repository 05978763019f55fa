"""Build hook: generates the gRPC stubs (sweepd/v1/*_pb2*.py) from ../proto before the
package is built or installed (editable installs included). See sweepd/_generate.py."""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "sweepd"))
import _generate  # noqa: E402  (sweepd/_generate.py, importable without the package)


def _generate_stubs():
    proto_root = os.environ.get("SWEEPD_PROTO_DIR", os.path.join(HERE, "..", "proto"))
    _generate.generate(proto_root, HERE)


class BuildPy(build_py):
    def run(self):
        _generate_stubs()
        super().run()


class EggInfo(egg_info):
    # Editable installs read the package list before build_py runs: the stubs must exist.
    def run(self):
        _generate_stubs()
        super().run()


setup(cmdclass={"build_py": BuildPy, "egg_info": EggInfo})
