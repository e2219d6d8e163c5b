"""Generates the jwtd gRPC stubs from the repository's proto/ while building.

The stubs land in the wheel as the package ``jwtd.v1`` (the proto package),
next to the hand-written ``jwtd_client``. Set JWTD_PROTO_DIR to build from a
copy of proto/ outside this repository.
"""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO = "jwtd/v1/jwtd.proto"


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        super().run()
        from grpc_tools import protoc  # a build requirement (pyproject.toml)

        proto_root = Path(os.environ.get("JWTD_PROTO_DIR", HERE.parent.parent / "proto"))
        if not (proto_root / PROTO).is_file():
            raise SystemExit(f"{proto_root / PROTO} not found: set JWTD_PROTO_DIR to jwtd's proto/ folder")
        out = Path(self.build_lib)
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(proto_root / PROTO),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("grpc_tools.protoc failed on " + PROTO)
        for package in (out / "jwtd", out / "jwtd" / "v1"):
            (package / "__init__.py").touch()
        (out / "jwtd" / "py.typed").touch()  # the .pyi stubs are the types


setup(cmdclass={"build_py": BuildPyWithStubs})
