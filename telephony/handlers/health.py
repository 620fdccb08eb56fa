"""health: GET /api/health, 200 {"status": "ok"} or 503 {"status": "unavailable"}.

Anonymous, so that availability probes and the post-deploy smoke check need no key; it
therefore tells nothing but ok or unavailable (the reason is logged), and the checks behind
it run at most once every few seconds per instance (telephony/health.py).
"""

from __future__ import annotations

import json

import azure.functions as func

from telephony.container import get_container
from telephony.health import Verdict, unavailable

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 {"status": "ok"} when the settings, secrets and Storage are there, else 503."""
    ok = _verdict().ok
    return func.HttpResponse(
        json.dumps({"status": "ok" if ok else "unavailable"}),
        status_code=200 if ok else 503,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},  # a cached answer would hide a change
    )


def _verdict() -> Verdict:
    try:
        checks = get_container().health
    except Exception as exc:  # settings that do not load: no container to keep a verdict in
        return unavailable("settings", exc)
    return checks.verdict()
