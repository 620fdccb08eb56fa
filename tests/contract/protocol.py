"""Compiles tests/contract/host_protocol.proto with grpcio-tools' protoc, into a folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PROTO = Path(__file__).resolve().parent / "host_protocol.proto"


def compile_protocol(destination: Path) -> Path:
    """Write host_protocol_pb2.py into `destination` and return the folder."""
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    status = protoc.main(
        ["protoc", f"-I{PROTO.parent}", f"-I{well_known}", f"--python_out={destination}",
         str(PROTO)]
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO.name} ({status})")
    return destination
