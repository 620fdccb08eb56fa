"""A running app's HTTP API as its callers reach it (requests), for python -m telephony.smoke.

The function key travels in the `x-functions-key` header, never in a URL that proxies and
logs keep. A request that gets no HTTP answer at all (refused, unresolvable, TLS, timeout)
is an UnavailableError saying so in a few words, not a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telephony.errors import UnavailableError

if TYPE_CHECKING:
    import requests

# Seconds to connect, and to wait for an answer: a health check on a cold instance reads
# Key Vault and Storage before it answers.
TIMEOUT = (10.0, 30.0)
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^)\]]+)")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status and body."""

    status: int
    text: str

    def json(self) -> Any:
        """The body as JSON; None when it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None


class DeployedApp:
    """The app at `base_url` (scheme://host, without /api)."""

    def __init__(self, base_url: str, function_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._function_key = function_key
        self._session: requests.Session | None = None

    def get(self, path: str, *, keyed: bool = False) -> Answer:
        """GET /api/<path>; `keyed`: with the function key."""
        return self._send("GET", path, keyed=keyed)

    def post(
        self,
        path: str,
        *,
        json_body: object | None = None,
        form: dict[str, str] | None = None,
        keyed: bool = False,
    ) -> Answer:
        """POST /api/<path> with a JSON body or a form."""
        return self._send("POST", path, keyed=keyed, json=json_body, data=form)

    def _send(self, method: str, path: str, *, keyed: bool, **body: Any) -> Answer:
        import requests

        url = f"{self.base_url}/api/{path}"
        headers = {"x-functions-key": self._function_key} if keyed and self._function_key else {}
        try:
            response = self._http().request(method, url, headers=headers, timeout=TIMEOUT, **body)
        except requests.RequestException as exc:
            raise UnavailableError(f"{method} {url}: {_why(exc)}") from exc
        return Answer(response.status_code, response.text)

    def _http(self) -> requests.Session:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session


def _why(exc: requests.RequestException) -> str:
    """A few words on why no answer came: the innermost reason requests was given."""
    import requests

    if isinstance(exc, requests.Timeout):
        return "no answer in time" if isinstance(exc, requests.ReadTimeout) else "connect timeout"
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    # "<connection object>: Failed to ...: [Errno 111] Connection refused" -> the OS's words
    found = _ERRNO.search(str(reason))
    text = found[1] if found else str(reason).rsplit(": ", 1)[-1].strip()
    kind = "TLS failed" if isinstance(exc, requests.exceptions.SSLError) else "cannot connect"
    return f"{kind} ({text})" if text else kind
