"""A small Function App that tests/integration/test_devhost.py serves with the development host.

Queue functions append what they received, one JSON object a line, to the file named by
the setting DEVHOST_SAMPLE_RECORDS, so the test process can read it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_records_lock = threading.Lock()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _record(**fields: object) -> None:
    line = json.dumps(fields) + "\n"
    with _records_lock, open(os.environ["DEVHOST_SAMPLE_RECORDS"], "a", encoding="utf-8") as f:
        f.write(line)


@app.route(route="echo/{name}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    """Everything the function saw of the request, as JSON (the body base64-encoded)."""
    seen = {
        "method": req.method,
        "url": req.url,
        "headers": dict(req.headers),
        "params": dict(req.params),
        "route_params": dict(req.route_params),
        "body": _b64(req.get_body()),
    }
    return func.HttpResponse(json.dumps(seen), mimetype="application/json")


@app.route(route="custom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def custom(req: func.HttpRequest) -> func.HttpResponse:
    response = func.HttpResponse(
        "café;1",
        status_code=418,
        headers={"X-Custom": "yes"},
        mimetype="text/csv",
        charset="iso-8859-1",
    )
    response.headers.add("X-Multi", "a")
    response.headers.add("X-Multi", "b")
    return response


@app.route(route="plain")  # no methods: every method
def plain(req: func.HttpRequest) -> str:
    return f"plain {req.method}"


@app.route(route="async", methods=["GET"])
async def async_hello(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(0)  # runs on the host's event loop, as in the worker
    return func.HttpResponse("async ok")


@app.route(route="items/{id:int}/{label?}", methods=["GET"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(dict(req.route_params)), mimetype="application/json")


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("the function failed")


@app.route(route="slow", methods=["GET"])
def slow(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(float(req.params.get("seconds", "1")))
    return func.HttpResponse("done")


@app.route(route="setting/{name}", methods=["GET"])
def setting(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(os.environ.get(req.route_params["name"], ""))


@app.function_name("work")
@app.queue_trigger(
    arg_name="msg", queue_name="%SAMPLE_WORK_QUEUE%", connection="AzureWebJobsStorage"
)
def work(msg: func.QueueMessage) -> None:
    """Records the message; fails while the body says "fail"; "sleep N" sleeps N seconds."""
    started = time.time()
    body = msg.get_body()
    if body.startswith(b"sleep "):
        time.sleep(float(body.split()[1]))
    _record(
        id=msg.id,
        body=_b64(body),
        dequeue_count=msg.dequeue_count,
        insertion_time=msg.insertion_time.isoformat() if msg.insertion_time else None,
        expiration_time=msg.expiration_time.isoformat() if msg.expiration_time else None,
        pop_receipt=msg.pop_receipt,
        started=started,
        ended=time.time(),
    )
    if b"fail" in body:
        raise RuntimeError("asked to fail")
