"""One pooled `requests` session per client, shared by the Twilio and Storage adapters."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests


def pooled_session(pool_size: int) -> requests.Session:
    """A session keeping up to `pool_size` connections per host alive.

    The proxy and CA settings are read from the environment once, here: with `trust_env`
    left on, requests scans the whole environment on every request, which costs more CPU
    than the rest of a queued send's Table round trip.
    """
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.proxies.update(requests.utils.get_environ_proxies("https://example.invalid"))
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    session.trust_env = False
    return session
