"""Outcome events and reconcile: what they cost in Table Storage and Twilio requests.

Run: .venv/bin/python bench/events.py   (or `make bench`)

Against Azurite and the Twilio mock (Prism serving Twilio's OpenAPI description):

1. Table round trips per queued SMS, events off (EVENTS_QUEUE_NAME empty) and on, counted
   at the Table client; and how many telephony.delivery.updated events reach the events
   queue per status change, with no faults.
2. Reconcile over 10,000 delivery records: 9,000 delivered, 900 sent a minute ago (open,
   not due), and 100 stale (no callback for 31 minutes). Counted: the reconciler's Table
   reads (queries and point reads, and the entities they return), its writes, and its
   Twilio requests; a second run right after. The baseline, from the same run, is what
   finding the stale records by a scan of the table would read.
3. The first signed sms_url reply in a fresh interpreter, events on (its
   telephony.sms.received put on the events queue on Azurite) against events off, from the
   same run: what the first event costs a webhook answered cold.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localpeers.azurite import Azurite  # noqa: E402
from localpeers.twilio_mock import TwilioMock  # noqa: E402
from telephony.container import Container, build_container  # noqa: E402
from telephony.outbound.records import DeliveryRecord  # noqa: E402

SENDS = 20
OPEN, STALE, DELIVERED = 900, 100, 9_000
READS = ("get_entity", "query_entities")
WRITES = ("create_entity", "update_entity", "delete_entity", "submit_transaction")


class CountingTable:
    """A TableClient whose round trips are counted (one per call: the app reads one page),
    and the entities its queries return."""

    def __init__(self, inner: Any, counts: Counter[str]) -> None:
        self._inner = inner
        self._counts = counts
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in READS + WRITES:
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._counts[name] += 1
            result = method(*args, **kwargs)
            return self._entities(result) if name == "query_entities" else result

        return counted

    def _entities(self, paged: Any) -> Any:
        counts, lock = self._counts, self._lock

        class Pages:
            def by_page(self) -> Any:
                for page in paged.by_page():
                    rows = list(page)
                    with lock:
                        counts["entities"] += len(rows)
                        counts["pages"] += 1
                    yield iter(rows)

            def __iter__(self) -> Any:
                for page in self.by_page():
                    yield from page

        return Pages()


def counted(container: Container, counts: Counter[str]) -> Container:
    """`container` with its two tables' clients counting into `counts`."""
    for store in (container.deliveries, container.optouts):
        client = store._client()  # the bench counts what the adapter sends
        store._table = CountingTable(client, counts)  # type: ignore[attr-defined]
    return container


def settings(azurite: Azurite, twilio: TwilioMock, **changes: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        "TWILIO_AUTH_TOKEN": "bench-token",
        "TWILIO_PHONE_NUMBER": "+15017122661",
        "TWILIO_API_BASE_URL": twilio.base_url,
        "PUBLIC_BASE_URL": "https://bench.example",
        "DELIVERIES_TABLE_NAME": f"deliveries{suffix}",
        "OPTOUTS_TABLE_NAME": f"optouts{suffix}",
        "EVENTS_QUEUE_NAME": f"events-{suffix}",
        **changes,
    }


def per_send(azurite: Azurite, twilio: TwilioMock, events: bool) -> dict[str, float]:
    env = settings(azurite, twilio, **({} if events else {"EVENTS_QUEUE_NAME": ""}))
    counts: Counter[str] = Counter()
    app = counted(build_container(env), counts)
    app.outbound.handle(json.dumps(_sms("warm-up")), "m", 1)  # tables and queue exist now
    counts.clear()
    for n in range(SENDS):
        app.outbound.handle(json.dumps(_sms(f"send-{n}")), f"m{n}", 1)
    round_trips = sum(counts[name] for name in READS + WRITES) / SENDS
    facts, published = _published(azurite, env["EVENTS_QUEUE_NAME"]) if events else (0, 0)
    return {"round_trips": round_trips, "facts": facts, "events": published}


def _sms(key: str) -> dict[str, str]:
    return {
        "kind": "sms",
        "to": "+15558675310",
        "body": "Your order shipped",
        "idempotency_key": key,
    }


def _published(azurite: Azurite, queue_name: str) -> tuple[int, int]:
    """(status changes, events) of telephony.delivery.updated on the events queue."""
    from azure.storage.queue import QueueClient

    queue = QueueClient.from_connection_string(azurite.connection_string, queue_name)
    time.sleep(1.5)  # Azurite shows a message to receivers up to a second after taking it
    seen: Counter[tuple[str, str]] = Counter()
    while batch := list(queue.receive_messages(max_messages=32, visibility_timeout=300)):
        for message in batch:
            event = json.loads(base64.b64decode(message.content))
            seen[(event["data"]["id"], event["data"]["status"])] += 1
    return len(seen), sum(seen.values())


def seed(app: Container) -> list[str]:
    """10,000 records written as the app writes them (index rows with the open ones)."""
    now = datetime.now(UTC)
    tracking = app.tracking
    stale_keys = [f"stale-{n}" for n in range(STALE)]

    def record(key: str, status: str, age: timedelta) -> DeliveryRecord:
        at = now - age
        sid = "SM" + uuid.uuid4().hex
        return DeliveryRecord(key, "sms", "+15558675310", status, at, at, 1, twilio_sid=sid)

    plan = [record(k, "queued", timedelta(minutes=31)) for k in stale_keys]
    plan += [record(f"open-{n}", "sent", timedelta(minutes=1)) for n in range(OPEN)]
    plan += [record(f"done-{n}", "delivered", timedelta(hours=1)) for n in range(DELIVERED)]
    with ThreadPoolExecutor(16) as pool:
        # Tracked as of its send, as the worker that sent it wrote it then.
        list(pool.map(lambda r: app.deliveries.insert(tracking.track(None, r, r.created_at)), plan))
    return stale_keys


def reconcile(azurite: Azurite, twilio: TwilioMock) -> dict[str, Any]:
    env = settings(azurite, twilio, EVENTS_QUEUE_NAME="")  # its reads, not the publishing
    began = time.perf_counter()
    stale = seed(build_container(env))
    seeded = time.perf_counter() - began
    counts: Counter[str] = Counter()
    app = counted(build_container(env), counts)
    twilio.clear()
    began = time.perf_counter()
    report = app.reconciler.run()
    took = time.perf_counter() - began
    first = dict(counts)
    fetched = [r for r in twilio.requests if r.method == "GET" and "/Messages/" in r.path]
    counts.clear()
    second = app.reconciler.run()
    again = dict(counts)
    scan: Counter[str] = Counter()
    client = CountingTable(app.deliveries._client(), scan)  # type: ignore[attr-defined]
    for _ in client.query_entities("RowKey ge 'd-' and RowKey lt 'd.'").by_page():
        pass
    advanced = sum(1 for k in stale if app.outbound.record_of(k).status == "sent")  # type: ignore[union-attr]
    return {
        "seeded_seconds": seeded, "seconds": took, "report": report, "first": first,
        "second": again, "second_report": second, "twilio_gets": len(fetched),
        "violations": sum(len(r.violations) for r in fetched), "scan": dict(scan),
        "advanced": advanced,
    }  # fmt: skip


def first_webhook(azurite: Azurite, runs: int = 7) -> tuple[float, float]:
    """Median seconds to the first sms_url reply in a fresh interpreter: events off, on."""
    import statistics

    from bench.webhooks import APP_PROCESS, _run

    storage = {"AzureWebJobsStorage": azurite.connection_string}
    on = {**storage, "EVENTS_QUEUE_NAME": f"events-{uuid.uuid4().hex[:8]}"}
    off_times: list[float] = []
    on_times: list[float] = []
    for _ in range(runs):  # interleaved, so that machine load touches both alike
        off_times += _run(APP_PROCESS, 1, extra={**storage, "EVENTS_QUEUE_NAME": ""})
        on_times += _run(APP_PROCESS, 1, extra=on)
    return statistics.median(off_times), statistics.median(on_times)


def main() -> int:
    with Azurite() as azurite, TwilioMock() as twilio:
        off = per_send(azurite, twilio, events=False)
        on = per_send(azurite, twilio, events=True)
        print("1. per queued SMS, against Azurite and Prism")
        ratio = on["round_trips"] / off["round_trips"]
        print(f"   Table round trips per send: events off {off['round_trips']:.2f}, "
              f"on {on['round_trips']:.2f} (ratio {ratio:.2f})")  # fmt: skip
        print(f"   events published per status change, no faults: {on['events']}/{on['facts']}"
              f" = {on['events'] / max(1, on['facts']):.2f}")  # fmt: skip
        result = reconcile(azurite, twilio)
        first, scan = result["first"], result["scan"]
        reads = sum(first.get(name, 0) for name in READS)
        writes = sum(first.get(name, 0) for name in WRITES)
        print(f"2. reconcile over {OPEN + STALE + DELIVERED:,} records ({STALE} stale, "
              f"{OPEN} open and not due, {DELIVERED:,} delivered); seeded in "
              f"{result['seeded_seconds']:.1f} s")  # fmt: skip
        print(f"   first run: {reads} table reads ({first.get('query_entities', 0)} index queries, "
              f"{first.get('get_entity', 0)} point reads) returning {first.get('entities', 0)} "
              f"index entities; {writes} writes; {result['twilio_gets']} Twilio GETs "
              f"(contract violations {result['violations']}); {result['advanced']} records "
              f"advanced; {result['seconds']:.2f} s")  # fmt: skip
        second = result["second"]
        print(f"   second run: {sum(second.get(n, 0) for n in READS)} table reads, "
              f"{sum(second.get(n, 0) for n in WRITES)} writes, "
              f"{result['second_report'].twilio_requests} Twilio requests")  # fmt: skip
        index_read = first.get("entities", 0) + first.get("get_entity", 0)
        scanned = scan.get("entities", 0)
        print(f"   baseline, a scan for them: {scan.get('pages', 0)} pages, {scanned:,} "
              f"entities read; the index read {index_read} entities "
              f"(ratio {index_read / max(1, scanned):.3f})")  # fmt: skip
        off_s, on_s = first_webhook(azurite)
        print(f"3. first sms_url reply in a fresh interpreter: events off {off_s * 1000:.0f} ms, "
              f"on {on_s * 1000:.0f} ms (ratio {on_s / off_s:.2f}: the Storage queue SDK is "
              "loaded and the queue reached for the first event)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
