"""Generate the Python API package from protos/ (run through `make protos`).

Writes *_pb2.py, *_pb2.pyi (mypy-protobuf) and *_pb2_grpc.py into clients/, the one package that
both the server and the callers import. The output is committed and never edited by hand.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "clients"
PACKAGE = "trafficalloc"


def main(argv: list[str] | None = None) -> int:
    """Generate into clients/ (or into --out DIR, which the freshness test compares with clients/)."""
    args_in = sys.argv[1:] if argv is None else argv
    out = pathlib.Path(args_in[args_in.index("--out") + 1]) if "--out" in args_in else OUT
    target = out / PACKAGE
    if target.exists():
        shutil.rmtree(target)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    # protoc finds the mypy-protobuf plugins on PATH: put this interpreter's bin/ first.
    os.environ["PATH"] = os.pathsep.join(
        [str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")]
    )
    code = protoc.main(args)
    if code != 0:
        return int(code)
    # Make every generated folder a regular package with a typing marker.
    for folder in [target, *[p for p in target.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").write_text('"""Generated from protos/ by `make protos`; do not edit."""\n')
    (target / "py.typed").write_text("")
    print(f"generated {len(sources)} proto file(s) into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
