"""Table-scoped roles: in Azure the identity may use its tables but not create tables, so
the create on first use answers 403 (AuthorizationPermissionMismatch). The real SDK client
talks to a loopback stand-in that answers as Storage does with such a role."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableServiceClient

from telephony.adapters.storage import ensure_table

ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class ScopedStorage(BaseHTTPRequestHandler):
    """Creating a table is forbidden; everything else is 'not found' (never reached)."""

    status = 403

    def do_POST(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-ms-error-code", "AuthorizationPermissionMismatch")
        self.end_headers()
        self.wfile.write(b'{"odata.error":{"code":"AuthorizationPermissionMismatch"}}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def storage() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScopedStorage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    server.shutdown()


def test_a_table_the_identity_may_not_create_is_used_as_it_is(storage: str) -> None:
    service = TableServiceClient.from_connection_string(storage, retry_total=0)
    client = ensure_table(service, "deliveries")
    assert client.table_name == "deliveries"


def test_other_failures_of_the_create_are_not_hidden(storage: str) -> None:
    ScopedStorage.status = 500
    try:
        service = TableServiceClient.from_connection_string(storage, retry_total=0)
        with pytest.raises(HttpResponseError):
            ensure_table(service, "deliveries")
    finally:
        ScopedStorage.status = 403
