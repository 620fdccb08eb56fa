"""The container: parts given to it are used as given; the others are built once, on use."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from telephony.container import Container, build_container, part
from tests.fakes import MemoryOptOutStore, MemoryStore, ScriptedSender

ENV = {"TWILIO_ACCOUNT_SID": "AC" + "a" * 32, "TWILIO_PHONE_NUMBER": "+15017122661"}


def test_nothing_is_built_when_the_container_is():
    container = build_container({})
    assert not any(isinstance(attr, part) for attr in vars(container).values())
    built = set(vars(container)) - {"settings", "secrets", "env", "lock"}
    assert built == set()


def test_given_parts_are_used_and_the_services_are_built_on_them() -> None:
    sender, store, optouts = ScriptedSender(), MemoryStore(), MemoryOptOutStore()
    queued: list[str] = []
    container = build_container(
        ENV, sender=sender, deliveries=store, optouts=optouts, enqueue=queued.append
    )
    assert (container.sender, container.deliveries, container.optouts) == (sender, store, optouts)
    record, created = container.outbound.submit(
        {"kind": "sms", "to": "+15558675310", "body": "hi", "idempotency_key": "k"}
    )
    assert created and len(queued) == 1 and store.pending["k"] == record
    assert container.outbound.handle(queued[0], "m", 1).value == "sent"
    assert len(sender.sent) == 1 and optouts.round_trips == 2  # submit and send both check


def test_a_part_is_built_once_when_many_threads_ask_at_once() -> None:
    builds: list[object] = []

    class Slow(Container):
        @part
        def slow(self) -> object:
            builds.append(object())
            time.sleep(0.05)  # long enough for every thread to ask before it is stored
            return builds[-1]

    container = Slow(build_container(ENV).settings, build_container(ENV).secrets)
    start = threading.Barrier(8)

    def ask(_: int) -> object:
        start.wait()
        return container.slow

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert len(builds) == 1
    assert all(answer is builds[0] for answer in answers)


def test_a_part_may_build_on_other_parts_without_deadlock() -> None:
    container = build_container(ENV, sender=ScriptedSender(), optouts=MemoryOptOutStore())
    assert container.calls is container.calls  # builds command_rules, sender_defaults inside


def test_a_flow_that_dials_outside_the_guard_is_refused_when_it_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from telephony.errors import SettingsError

    flows = tmp_path / "flows.yaml"
    flows.write_text(
        "version: 1\nflows:\n  out:\n    start: a\n    steps:\n"
        "      a: {dial: {number: '+882123456789'}}\n"
        "  away:\n    start: b\n    steps:\n"
        "      b: {redirect: {url: 'https://evil.example/twiml'}}\n"
    )
    container = build_container({**ENV, "CALL_FLOWS_FILE": str(flows)})
    with pytest.raises(SettingsError) as info:
        container.flow_book()
    assert "flow out, step a: dial.number is in a destination that is not allowed" in str(
        info.value
    )
    assert "flow away, step b: redirect.url names a host not in ALLOWED_URL_HOSTS" in str(
        info.value
    )


def test_sms_rules_that_forward_outside_the_guard_are_refused_when_they_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from telephony.errors import SettingsError

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: abroad\n    exact: hi\n    forward: ['+447911123456']\n"
    )
    container = build_container({**ENV, "SMS_RULES_FILE": str(rules)})
    with pytest.raises(SettingsError) as info:
        container.sms_rules()
    assert "rule abroad: forward is in a destination that is not allowed" in str(info.value)
    allowed = build_container(
        {**ENV, "SMS_RULES_FILE": str(rules), "ALLOWED_DESTINATION_COUNTRIES": "US,GG"}
    )
    assert allowed.sms_rules() is not None


def test_the_check_commands_apply_the_guard_the_app_applies(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from telephony.flows.__main__ import main as check_flows
    from telephony.sms.__main__ import main as check_rules

    flows = tmp_path / "flows.yaml"
    flows.write_text("version: 1\nflows:\n  out:\n    start: a\n    steps:\n"
                     "      a: {dial: {number: '+442071838750'}}\n")  # fmt: skip
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: abroad\n    exact: hi\n"
                     "    forward: ['+442071838750']\n")  # fmt: skip
    assert check_flows(["check", str(flows)], {"ALLOWED_DESTINATION_COUNTRIES": "US"}) == 1
    assert check_flows(["check", str(flows)], {"ALLOWED_DESTINATION_COUNTRIES": "GB"}) == 0
    monkeypatch.setenv("ALLOWED_DESTINATION_COUNTRIES", "US")
    assert check_rules(["check", str(rules)]) == 1
    assert "rule abroad: forward is in a destination that is not allowed" in capsys.readouterr().err
