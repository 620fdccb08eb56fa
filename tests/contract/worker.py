"""The smallest stand-in for the Functions host and its proxy worker, around the real
azure-functions-runtime library.

    python tests/contract/worker.py PACKAGE_DIR PROTOS_DIR < script.json > results.json

Run in a fresh interpreter whose working directory is the deployment package, with only
PACKAGE_DIR (the app, as .funcignore ships it) and the installed packages importable.

Real: azure_functions_runtime's own request handlers (worker init and its indexing of
function_app.py, the metadata answer, function load, invocation with its binding
converters in and out and the function on the runtime's thread pool), azure.functions,
and the app. Stands in: the gRPC channel and the proxy worker that would hand the runtime
each host message (here, an object with the message and the properties the proxy worker
passes: the host address and the protocol module), and the protocol messages themselves
(tests/contract/host_protocol.proto, compiled by grpcio-tools).

The script is JSON: {"invocations": [{"function": name, "http": {...}},
{"function": name, "queue": {...}} or {"function": name, "timer": {...}}]}. The results
are JSON: what each handler answered, as protobuf's own JSON form.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1:0"  # the runtime keeps it; with HTTP streaming off it never dials it


@dataclass
class HostMessage:
    """What the proxy worker hands the runtime: the host's message and its properties."""

    request: Any
    properties: dict[str, Any] | None = None


def main() -> int:
    package, protos_dir = sys.argv[1], sys.argv[2]
    # Importable: the package first (as the worker puts the app's folder first), the
    # compiled protocol, and the installed packages; never this file's folder.
    sys.path[:] = [package, protos_dir, *[p for p in sys.path[1:] if p]]
    script = json.load(sys.stdin)
    results = asyncio.run(run(package, script))
    json.dump(results, sys.stdout)
    return 0


async def run(package: str, script: dict[str, Any]) -> dict[str, Any]:
    import azure_functions_runtime as runtime
    import host_protocol_pb2 as protos
    from google.protobuf.json_format import MessageToDict

    def message(**content: Any) -> HostMessage:
        # Only worker init carries properties; the runtime keeps them for later messages.
        streaming = protos.StreamingMessage(request_id="contract", **content)
        init = "worker_init_request" in content
        return HostMessage(streaming, {"host": HOST, "protos": protos} if init else None)

    def as_dict(reply: Any) -> dict[str, Any]:
        return MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )

    # As the proxy worker does: the thread pool first, then worker init (which indexes).
    runtime.start_threadpool_executor()
    init = await runtime.worker_init_request(
        message(worker_init_request=protos.WorkerInitRequest(function_app_directory=package))
    )
    results: dict[str, Any] = {"init": as_dict(init)}
    metadata = await runtime.functions_metadata_request(
        message(functions_metadata_request=protos.FunctionsMetadataRequest())
    )
    results["metadata"] = as_dict(metadata)
    ids = {f.name: f.function_id for f in metadata.function_metadata_results}
    loads = [
        await runtime.function_load_request(
            message(function_load_request=protos.FunctionLoadRequest(function_id=fid))
        )
        for fid in ids.values()
    ]
    results["loads"] = [as_dict(load) for load in loads]
    try:
        results["invocations"] = [
            as_dict(await runtime.invocation_request(message(invocation_request=request)))
            for request in invocations(protos, ids, script.get("invocations", []))
        ]
    finally:
        runtime.stop_threadpool_executor()
    return results


def invocations(protos: Any, ids: dict[str, str], script: list[dict[str, Any]]) -> list[Any]:
    """The InvocationRequests the host would send for each scripted trigger."""
    requests = []
    for number, step in enumerate(script, start=1):
        if "http" in step:
            binding, metadata = http_input(protos, step["http"])
        elif "timer" in step:
            binding, metadata = timer_input(protos, step["timer"])
        else:
            binding, metadata = queue_input(protos, step["queue"])
        requests.append(
            protos.InvocationRequest(
                invocation_id=f"invocation-{number}",
                function_id=ids.get(step["function"], step["function"]),
                input_data=[binding],
                trigger_metadata=metadata,
                trace_context=protos.RpcTraceContext(),
                retry_context=protos.RetryContext(),
            )
        )
    return requests


def http_input(protos: Any, http: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """An HTTP trigger's input as the host sends it: the body as raw bytes (the runtime
    asks for them), headers, query and route parameters as maps."""
    body = protos.TypedData(bytes=base64.b64decode(http.get("body", "")))
    request = protos.RpcHttp(
        method=http["method"], url=http["url"], headers=http.get("headers", {}),
        body=body, raw_body=body, query=http.get("query", {}), params=http.get("params", {}),
    )  # fmt: skip
    return protos.ParameterBinding(name="req", data=protos.TypedData(http=request)), {}


def queue_input(protos: Any, queue: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A queue trigger's input as the host sends it: the message text, and its metadata
    (the id and times as JSON strings, the dequeue count as a JSON number)."""
    metadata = {
        "Id": protos.TypedData(json=json.dumps(queue["id"])),
        "DequeueCount": protos.TypedData(json=json.dumps(queue.get("dequeue_count", 1))),
        "PopReceipt": protos.TypedData(json=json.dumps("contract-receipt")),
        "InsertionTime": protos.TypedData(json=json.dumps("2026-11-29T12:00:00+00:00")),
    }
    data = protos.TypedData(string=queue["body"])
    return protos.ParameterBinding(name="msg", data=data), metadata


def timer_input(protos: Any, timer: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A timer trigger's input as the host sends it: its TimerInfo as JSON."""
    info = {
        "Schedule": {"AdjustForDST": True},
        "ScheduleStatus": None,
        "IsPastDue": bool(timer.get("past_due", False)),
    }
    data = protos.TypedData(json=json.dumps(info))
    return protos.ParameterBinding(name="timer", data=data), {}


if __name__ == "__main__":
    raise SystemExit(main())
