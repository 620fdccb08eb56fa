"""sms_url with SMS rules, in-process: signed requests in, TwiML out.

GIVEN the shipped example rules (flows/sms-rules.yaml) and in-memory opt-out and forward
stand-ins, WHEN Twilio posts a signed inbound SMS, THEN the reply and the side effects
follow the rules: keywords first, then the first matching rule, then the default.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from xml.etree import ElementTree

import azure.functions as func
import pytest

from telephony.sms.routing import DEFAULT_HELP_REPLY
from tests.app_client import signed_post
from tests.conftest import AppFactory
from tests.fakes import MemoryOptOutStore, MemoryStore

CUSTOMER = "+15558675310"
DESK = "+15551230001"
SID = "SM" + "3" * 32


class SmsApp:
    """The app with a rules file, an in-memory opt-out store and a list of forwards."""

    def __init__(self, app_env: AppFactory, rules_file: str | None) -> None:
        self.optouts = MemoryOptOutStore()
        self.forwards: list[dict[str, object]] = []
        # Forwards take the real submit path, onto an in-memory queue.
        parts = {"optouts": self.optouts, "deliveries": MemoryStore(), "enqueue": self._enqueue}
        app_env(parts, SMS_RULES_FILE=rules_file or "")

    def _enqueue(self, text: str) -> None:
        self.forwards.append(json.loads(text))

    def text(self, body: str, sid: str = SID) -> func.HttpResponse:
        params = {"MessageSid": sid, "From": CUSTOMER, "To": "+15017122661", "Body": body}
        return signed_post("sms_url", params)

    def reply(self, body: str) -> str | None:
        """The text of the one <Message> answered, or None for an empty <Response/>."""
        resp = self.text(body)
        assert resp.status_code == 200, resp.get_body()
        assert resp.mimetype == "application/xml"
        root = ElementTree.fromstring(resp.get_body())
        assert root.tag == "Response"
        assert len(root) <= 1 and all(child.tag == "Message" for child in root)
        return root[0].text if len(root) else None


@pytest.fixture
def app(app_env: AppFactory) -> SmsApp:
    return SmsApp(app_env, "flows/sms-rules.yaml")


@pytest.mark.parametrize("body", ["hours", "HOURS", "  Hours  "])
def test_exact_rule(app: SmsApp, body: str) -> None:
    assert app.reply(body) == "We are open Monday to Saturday, 9am to 6pm."
    assert app.forwards == []


def test_prefix_rule_replies_and_forwards_the_message(app: SmsApp) -> None:
    assert app.reply("Order 1234 where is it?") == (
        "Thanks! We will text you the status of your order shortly."
    )
    assert app.forwards == [
        {"kind": "sms", "to": DESK, "body": f"From {CUSTOMER}: Order 1234 where is it?",
         "quiet_hours": {"start": "00:00", "end": "00:00"}, "idempotency_key": f"{SID}-forward-1"},
    ]  # fmt: skip


@pytest.mark.parametrize("body", ["Booking a repair please", "book my bike for a SERVICE"])
def test_regex_rule(app: SmsApp, body: str) -> None:
    assert app.reply(body) == (
        "To book a repair, reply with a day that suits you (Mon-Sat) and we will confirm."
    )


def test_regex_rule_with_the_body_in_its_reply(app: SmsApp) -> None:
    assert app.reply("90210") == "Thanks! Our nearest store to 90210 is open 9am to 6pm."


def test_default_replies_and_forwards(app: SmsApp) -> None:
    assert app.reply("Do you sell helmets?") == (
        "Thanks for your message, we will get back to you soon. Text HELP for options."
    )
    assert [f["to"] for f in app.forwards] == [DESK]


def test_help_replies_the_help_text(app: SmsApp) -> None:
    assert (app.reply("HELP") or "").startswith("Acme Bikes: text HOURS for opening hours")
    assert app.reply("info") == app.reply("help")
    assert app.optouts.round_trips == 0


def test_stop_is_recorded_and_not_answered(app: SmsApp) -> None:
    assert app.reply(" stop ") is None
    assert app.optouts.optouts[CUSTOMER].keyword == "STOP"
    assert app.optouts.optouts[CUSTOMER].message_sid == SID
    assert app.forwards == []


def test_start_opts_back_in_and_confirms(app: SmsApp) -> None:
    app.reply("STOP")
    assert app.reply("Start") == (
        "Welcome back to Acme Bikes messages. Reply HELP for help, STOP to opt out."
    )
    assert CUSTOMER not in app.optouts.optouts


def test_without_a_rules_file_keywords_still_work(app_env: AppFactory) -> None:
    app = SmsApp(app_env, None)
    assert app.reply("HELP") == DEFAULT_HELP_REPLY
    assert app.reply("STOP") is None
    assert CUSTOMER in app.optouts.optouts
    assert app.reply("hours") == "Hey, thanks for the ping! Twilio and Azure rock!"


def test_caller_text_echoed_in_a_reply_cannot_change_the_document(
    app_env: AppFactory, tmp_path: Path
) -> None:
    rules = tmp_path / "echo.yaml"
    rules.write_text("version: 1\ndefault:\n  reply: 'You said: {body}'\n")
    app = SmsApp(app_env, str(rules))
    hostile = "</Message><Redirect>https://evil.example</Redirect>\x00 & <![CDATA[x]]>"
    assert app.reply(hostile) == "You said: " + hostile.replace("\x00", "")


def test_a_retried_webhook_forwards_with_the_same_key(app: SmsApp) -> None:
    app.reply("order 9")
    app.reply("order 9")
    assert {f["idempotency_key"] for f in app.forwards} == {f"{SID}-forward-1"}


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("version: 1\nrules:\n  - name: broken\n    regex: '(a)\\1'\n    reply: x\n",
         "rule broken: regex does not compile with RE2"),
        ("version: 1\nrules:\n  - name: typo\n    exact: hi\n    reply: 'Hi {name}'\n",
         "rule typo: unknown placeholder {name}"),
    ],
)  # fmt: skip
def test_an_invalid_rules_file_is_503_and_the_log_names_file_rule_and_reason(
    app_env: AppFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    content: str,
    named: str,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(content)
    app = SmsApp(app_env, str(rules))
    with caplog.at_level(logging.ERROR):
        resp = app.text("hello")
    assert resp.status_code == 503
    assert f"SMS_RULES_FILE {rules}: 1 problem: " in caplog.text
    assert named in caplog.text
    assert str(rules).encode() not in resp.get_body()
    # An opt-out is kept all the same: it needs no rules.
    assert app.reply("STOP") is None
    assert CUSTOMER in app.optouts.optouts


def test_a_missing_rules_file_is_503(app_env: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    app = SmsApp(app_env, "flows/no-such-rules.yaml")
    with caplog.at_level(logging.ERROR):
        assert app.text("hello").status_code == 503
    assert "flows/no-such-rules.yaml: 1 problem: the file does not exist" in caplog.text


def test_the_answer_is_logged_with_the_rule_and_a_masked_sender(
    app: SmsApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        app.reply("hours")
    assert '"event": "sms_answered"' in caplog.text
    assert '"outcome": "rule", "rule": "hours"' in caplog.text
    assert CUSTOMER not in caplog.text
