"""The trails of calls in Table Storage, on Azurite: kept, read back, bounded, finished once.

GIVEN the Table store of call trails on Azurite, WHEN a call's webhooks are kept and its
event is marked published, THEN they read back in order under a hashed partition, the
trail stops growing at its bound, the marker is taken by exactly one of two concurrent
callers, and two webhooks of one call kept at once are both kept; a flow walked through
FlowCalls with this store publishes its one event.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import pytest
from azure.data.tables import TableServiceClient

from localpeers.azurite import Azurite
from telephony import schemas
from telephony.adapters.call_trails import TableCallTrailStore
from telephony.adapters.storage import table_service
from telephony.events import CALL_COMPLETED
from telephony.events.publisher import Publisher
from telephony.flows import CallUrls
from telephony.flows.trail import MAX_ENTRIES, TrailEntry
from telephony.flows.voice import FlowCalls
from tests.fakes import MemorySink, MemoryStore
from tests.unit.test_call_trails import INBOUND, RECORDING, SHIPPED

T = TypeVar("T")
AT = datetime(2026, 11, 29, 15, 10, 33, tzinfo=UTC)
URLS = CallUrls.for_base("https://calls.example.net")


@pytest.fixture
def table(azurite: Azurite) -> str:
    return f"calltrails{uuid.uuid4().hex[:10]}"


def store_on(azurite: Azurite, table: str) -> TableCallTrailStore:
    """A store with its own client, as another worker would have."""
    return TableCallTrailStore(
        table_service({"AzureWebJobsStorage": azurite.connection_string}), table
    )


def rows(azurite: Azurite, table: str) -> list[dict[str, Any]]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return [dict(row) for row in service.get_table_client(table).list_entities()]


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def entry(number: int, **fields: Any) -> TrailEntry:
    return TrailEntry(AT + timedelta(seconds=number), "ivr-menu", ("menu",), **fields)


def at_once(work: list[Callable[[], T]]) -> list[T]:
    """Run each of `work` on its own thread, all released together; results in order."""
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = work[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_webhooks_read_back_in_order_under_a_hashed_partition_and_finish_once(
    azurite: Azurite, table: str
) -> None:
    store = store_on(azurite, table)
    sid = new_sid()
    first = TrailEntry(
        AT, "ivr-menu", ("greeting", "menu"), from_="+15558675310", to="+15017122661",
        direction="inbound",
    )  # fmt: skip
    answered = entry(
        1, step="menu", event="input", digits="2", speech="Je voudrais laisser un message, merci"
    )
    recorded = entry(2, step="take-message", event="recorded", recording_url=RECORDING)
    for kept in (first, answered, recorded):
        store.append(sid, kept)
    trail = store.read(sid)
    assert trail.entries == (first, answered, recorded)
    assert (trail.truncated, trail.finished) == (False, False)
    assert store.finish(sid) is True
    assert store.finish(sid) is False
    store.append(sid, entry(3))  # after the event: a replay adds nothing
    assert store.read(sid).finished and len(store.read(sid).entries) == 3
    found = rows(azurite, table)
    assert {row["PartitionKey"] for row in found} == {hashlib.sha256(sid.encode()).hexdigest()}
    assert sorted(row["RowKey"] for row in found) == ["done", "e-000", "e-001", "e-002", "n"]
    assert store.read(new_sid()) == type(trail)()  # a call the store never saw


def test_a_trail_stops_growing_at_its_bound_and_says_it_was_truncated(
    azurite: Azurite, table: str
) -> None:
    store = store_on(azurite, table)
    sid = new_sid()
    for number in range(MAX_ENTRIES + 3):
        store.append(sid, entry(number, step="menu", event="input", digits=str(number % 10)))
    trail = store.read(sid)
    assert len(trail.entries) == MAX_ENTRIES and trail.truncated
    assert [e.at for e in trail.entries] == [AT + timedelta(seconds=n) for n in range(MAX_ENTRIES)]
    assert len(rows(azurite, table)) == MAX_ENTRIES + 1  # the entries and the count


def test_of_two_concurrent_finishes_exactly_one_wins(azurite: Azurite, table: str) -> None:
    for sid in [new_sid() for _ in range(5)]:
        store_on(azurite, table).append(sid, entry(0))
        stores = [store_on(azurite, table) for _ in range(2)]
        won = at_once([partial(store.finish, sid) for store in stores])
        assert sorted(won) == [False, True]


def test_two_webhooks_of_one_call_kept_at_once_are_both_kept(azurite: Azurite, table: str) -> None:
    for sid in [new_sid() for _ in range(5)]:
        stores = [store_on(azurite, table) for _ in range(2)]
        at_once([partial(store.append, sid, entry(n)) for n, store in enumerate(stores)])
        kept = store_on(azurite, table).read(sid).entries
        assert sorted(e.at for e in kept) == [AT, AT + timedelta(seconds=1)]


def test_a_flow_walked_with_the_table_store_publishes_its_one_event(
    azurite: Azurite, table: str
) -> None:
    sink = MemorySink()
    publisher = Publisher([sink], "urn:test", MemoryStore)
    store = store_on(azurite, table)
    flows = FlowCalls(lambda: SHIPPED, lambda command: (command, True), lambda: store, publisher)
    call = {**INBOUND, "CallSid": new_sid()}
    webhooks = [
        (URLS.flow("ivr-menu"), {}),
        (URLS.step("ivr-menu", "menu", "input", 1), {"Digits": "2"}),
        (URLS.step("ivr-menu", "take-message", "recorded"), {"RecordingUrl": RECORDING}),
    ]
    for url, form in webhooks:
        query = dict(parse_qsl(urlsplit(url).query))
        flows.answer("ivr-menu", query, {**call, **form}, "https://calls.example.net")
    flows.call_ended(call["CallSid"], "completed")  # after the flow published: nothing
    (event,) = sink.of_type(CALL_COMPLETED)
    schemas.validator(f"events/{CALL_COMPLETED}.v1.json").validate(event)
    data: Any = event["data"]
    assert data["steps"] == ["greeting", "menu", "voicemail", "take-message", "thanks", "end"]
    assert (data["ended_by"], data["recording_url"]) == ("hangup", RECORDING)
    assert store.read(call["CallSid"]).finished
