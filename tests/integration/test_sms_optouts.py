"""Opt-outs and forwards end to end: signed sms_url, Azurite's queue and tables, Twilio's mock.

GIVEN the app with the example SMS rules on Azurite and the Twilio peer, WHEN a number
texts STOP (on any channel), THEN every later send to it (queued, POST /api/messages,
make_call) ends without a Twilio request, until it texts START; a replayed START does not
undo a newer STOP. Forwards land on the outbound queue once however often Twilio delivers
the webhook. The Table store's writes are conditional: two consent events racing for one
number end in the newer one.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import pytest
from azure.data.tables import TableServiceClient

from localpeers.azurite import Azurite
from telephony.adapters.tables import TableOptOutStore
from telephony.sms.optouts import ConsentEvent
from tests.app_client import body_json, post_json, signed_post
from tests.integration.test_outbound_queue import PUBLIC, SMS, Stack, StackFactory, make_stack

__all__ = ["make_stack"]  # the fixture, shared with the queue tests

CUSTOMER = SMS["to"]
DESK = "+15551230001"  # the order desk in flows/sms-rules.yaml


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    table = f"optouts{uuid.uuid4().hex[:10]}"
    return make_stack(SMS_RULES_FILE="flows/sms-rules.yaml", OPTOUTS_TABLE_NAME=table)


def text(body: str, sender: str = CUSTOMER, sid: str | None = None) -> str | None:
    """Post a signed inbound SMS; the reply text, or None for an empty <Response/>."""
    params = {
        "MessageSid": sid or "SM" + uuid.uuid4().hex,
        "From": sender,
        "To": "+15017122661",
        "Body": body,
    }
    resp = signed_post("sms_url", params, url=f"{PUBLIC}/api/sms_url")
    assert resp.status_code == 200, resp.get_body()
    root = ElementTree.fromstring(resp.get_body())
    return root[0].text if len(root) else None


def optout_entities(stack: Stack) -> list[dict[str, object]]:
    """The rows that say a number is opted out now (RowKey `optout`)."""
    return [row for row in all_rows(stack) if row["RowKey"] == "optout"]


def all_rows(stack: Stack) -> list[dict[str, object]]:
    table = stack.container.settings.optouts_table_name
    return list(stack.tables.get_table_client(table).list_entities())


def test_stop_is_stored_by_hash_with_the_keyword_and_time(stack: Stack) -> None:
    sid = "SM" + "5" * 32
    assert text("Stop", sid=sid) is None
    rows = {row["RowKey"]: row for row in all_rows(stack)}
    assert set(rows) == {"optout", "consent", f"message-{sid}-out"}
    entity = rows["optout"]
    assert entity["PartitionKey"] == hashlib.sha256(CUSTOMER.encode()).hexdigest()
    assert (entity["Keyword"], entity["MessageSid"]) == ("STOP", sid)
    assert entity["OptedOutAt"]
    consent = rows["consent"]
    assert (consent["OptedOut"], consent["TimeSource"]) == (True, "received")
    assert consent["EventAt"] == entity["OptedOutAt"]
    assert {row["PartitionKey"] for row in rows.values()} == {entity["PartitionKey"]}
    for row in rows.values():
        assert not any(CUSTOMER[2:] in str(value) for value in row.values())


@pytest.mark.parametrize(
    ("body", "keyword"),
    [("Stop.", "STOP"), ("STOP!", "STOP"), (" stop all", "STOPALL"), ("OPT-OUT", "OPTOUT")],
)
def test_stop_with_punctuation_or_spaces_is_recorded(stack: Stack, body: str, keyword: str) -> None:
    assert text(body) is None
    [entity] = optout_entities(stack)
    assert entity["Keyword"] == keyword
    assert post_json("make_call", {"to": CUSTOMER, "say": "Hi"}).status_code == 409


def test_stop_then_a_queued_send_is_rejected_without_a_twilio_request(stack: Stack) -> None:
    text("STOP")
    stack.put({**SMS, "idempotency_key": "after-stop"})
    assert stack.deliver() is None  # deleted, never retried
    record = stack.record("after-stop")
    assert (record.status, record.reason, record.to) == ("rejected", "opted_out", CUSTOMER)
    assert stack.twilio.requests == []
    assert stack.queue_length() == 0


def test_start_restores_sends(stack: Stack) -> None:
    text("unsubscribe")
    stack.put({**SMS, "idempotency_key": "while-out"})
    stack.deliver()
    assert text("START") == (
        "Welcome back to Acme Bikes messages. Reply HELP for help, STOP to opt out."
    )
    assert optout_entities(stack) == []
    stack.put({**SMS, "idempotency_key": "back-in"})
    assert stack.deliver() is None
    assert stack.record("back-in").status == "queued"
    [sent] = stack.twilio.find_requests("/Messages.json", method="POST")
    assert sent.param("To") == CUSTOMER


def test_make_call_to_an_opted_out_number_is_409_without_a_twilio_request(stack: Stack) -> None:
    text("quit")
    resp = post_json("make_call", {"to": CUSTOMER, "say": "Your code is 1 2 3 4"})
    assert resp.status_code == 409
    assert body_json(resp) == {"error": "the recipient has opted out", "field": "to"}
    assert stack.twilio.requests == []
    assert post_json("make_call", {"to": DESK}).status_code == 201  # others still get calls


def test_post_messages_to_an_opted_out_number_is_409_and_enqueues_nothing(stack: Stack) -> None:
    text("STOP")
    resp = post_json("send_message", {**SMS, "idempotency_key": "http-out"})
    assert resp.status_code == 409
    assert body_json(resp) == {"error": "the recipient has opted out", "field": "to"}
    assert stack.queue_length() == 0


def test_forwards_land_on_the_queue_once_across_a_repeated_webhook(stack: Stack) -> None:
    sid = "SM" + "7" * 32
    for _ in range(2):  # Twilio delivering the same inbound message twice
        assert text("order 42", sid=sid) == (
            "Thanks! We will text you the status of your order shortly."
        )
    assert stack.queue_length() == 1
    assert stack.deliver() is None
    [sent] = stack.twilio.find_requests("/Messages.json", method="POST")
    assert sent.violations == []
    assert (sent.param("To"), sent.param("Body")) == (DESK, f"From {CUSTOMER}: order 42")
    assert stack.record(f"{sid}-forward-1").status == "queued"


def test_a_forward_to_an_opted_out_number_is_not_queued(stack: Stack) -> None:
    text("STOP", sender=DESK)
    assert text("Do you sell helmets?") is not None  # the customer still gets the reply
    assert stack.queue_length() == 0


# One person on every channel


def test_a_whatsapp_stop_blocks_calls_and_sms_to_the_number(stack: Stack) -> None:
    assert text("STOP", sender=f"whatsapp:{CUSTOMER}") is None
    [entity] = optout_entities(stack)
    assert entity["PartitionKey"] == hashlib.sha256(CUSTOMER.encode()).hexdigest()
    stack.put({**SMS, "idempotency_key": "after-whatsapp-stop"})
    assert stack.deliver() is None
    assert stack.record("after-whatsapp-stop").reason == "opted_out"
    assert post_json("make_call", {"to": CUSTOMER, "say": "Hi"}).status_code == 409
    assert stack.twilio.requests == []


def test_an_sms_stop_and_a_whatsapp_start_are_one_person(stack: Stack) -> None:
    text("STOP")
    assert text("START", sender=f"whatsapp:{CUSTOMER}") is not None
    assert optout_entities(stack) == []
    assert post_json("make_call", {"to": CUSTOMER, "say": "Hi"}).status_code == 201


# Order: an older consent event never overrides a newer one


def test_a_replayed_start_does_not_undo_a_newer_stop(stack: Stack) -> None:
    start = "SM" + "a" * 32
    text("STOP")
    assert text("START", sid=start) is not None
    text("STOP")
    # The same validly signed request again, later: no reply, and the STOP stands.
    assert text("START", sid=start) is None
    assert len(optout_entities(stack)) == 1
    assert post_json("make_call", {"to": CUSTOMER, "say": "Hi"}).status_code == 409


T0 = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
PARTITION = hashlib.sha256(CUSTOMER.encode()).hexdigest()


def consent(opted_out: bool, minutes: int, sid: int, number: str = CUSTOMER) -> ConsentEvent:
    at = T0 + timedelta(minutes=minutes)
    keyword = "STOP" if opted_out else "START"
    return ConsentEvent(number, keyword, at, f"SM{sid:032x}", opted_out, "twilio")


@pytest.fixture
def tables(azurite: Azurite) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def table_name() -> str:
    return f"optouts{uuid.uuid4().hex[:10]}"


class RacingStore(TableOptOutStore):
    """Each thread's first read waits until every thread has read: all then write on what
    they read, so all but one write must find the rows changed, read again and decide again."""

    def __init__(self, service: TableServiceClient, table: str, threads: int) -> None:
        super().__init__(service, table)
        self.barrier = threading.Barrier(threads, timeout=20)
        self.raced = threading.local()
        self.writes: list[bool] = []

    def _consent_rows(self, key: str, message_row: str | None) -> dict[str, Any]:
        rows = super()._consent_rows(key, message_row)
        if not getattr(self.raced, "done", False):
            self.raced.done = True
            self.barrier.wait()
        return rows

    def _write(self, *args: Any) -> bool:
        written = super()._write(*args)
        self.writes.append(written)
        return written


@pytest.mark.parametrize("seeded", [False, True], ids=["first-event", "after-a-stop"])
@pytest.mark.parametrize("newer", ["STOP", "START"])
def test_concurrent_stop_and_start_end_in_the_newer(
    tables: TableServiceClient, table_name: str, seeded: bool, newer: str
) -> None:
    if seeded:  # the rows exist: the writes are ETag-conditional replaces
        TableOptOutStore(tables, table_name).apply(consent(True, -60, 99))
    store = RacingStore(tables, table_name, threads=2)
    events = [consent(newer == "STOP", 2, 1), consent(newer != "STOP", 1, 2)]
    outcomes: list[bool | Exception] = []

    def apply(event: ConsentEvent) -> None:
        try:
            outcomes.append(store.apply(event))
        except Exception as exc:  # reported below, not lost in the thread
            outcomes.append(exc)

    threads = [threading.Thread(target=apply, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # The older one applies if it wins the race, and is ignored if it loses it.
    assert len(outcomes) == 2 and all(isinstance(outcome, bool) for outcome in outcomes)
    assert False in store.writes  # the race happened: a conditional write was refused
    assert store.is_opted_out(CUSTOMER) is (newer == "STOP")
    row = tables.get_table_client(table_name).get_entity(PARTITION, "consent")
    assert (row["Keyword"], row["MessageSid"]) == (newer, f"SM{1:032x}")


def test_an_entity_written_before_consent_was_ordered_is_an_opt_out_at_its_time(
    tables: TableServiceClient, table_name: str
) -> None:
    legacy = {"Keyword": "STOP", "OptedOutAt": T0, "MessageSid": "SM" + "9" * 32}
    tables.create_table(table_name).create_entity(
        {"PartitionKey": PARTITION, "RowKey": "optout", **legacy}
    )
    store = TableOptOutStore(tables, table_name)
    assert store.is_opted_out(CUSTOMER) and store.is_opted_out(f"whatsapp:{CUSTOMER}")
    assert not store.apply(consent(False, -1, 1))  # an older START
    assert store.is_opted_out(CUSTOMER)
    assert store.apply(consent(False, 1, 2))  # a newer one
    assert not store.is_opted_out(CUSTOMER)
    rows = {row["RowKey"] for row in tables.get_table_client(table_name).list_entities()}
    assert rows == {"consent", f"message-SM{2:032x}-in"}


def test_the_table_store_ignores_a_message_it_applied_before(
    tables: TableServiceClient, table_name: str
) -> None:
    store = TableOptOutStore(tables, table_name)
    assert store.apply(consent(True, 1, 1))
    assert store.apply(consent(False, 2, 2))
    assert store.apply(consent(True, 3, 3))
    assert not store.apply(consent(False, 9, 2))  # START 2 replayed, dated later on arrival
    assert store.is_opted_out(CUSTOMER)


def test_the_table_store_keys_every_channel_by_the_number(
    tables: TableServiceClient, table_name: str
) -> None:
    store = TableOptOutStore(tables, table_name)
    assert store.apply(consent(True, 1, 1, number=f"whatsapp:{CUSTOMER}"))
    assert store.is_opted_out(CUSTOMER)
    partitions = {
        row["PartitionKey"] for row in tables.get_table_client(table_name).list_entities()
    }
    assert partitions == {PARTITION}
    assert store.apply(consent(False, 2, 2))  # START by SMS
    assert not store.is_opted_out(f"whatsapp:{CUSTOMER}")
