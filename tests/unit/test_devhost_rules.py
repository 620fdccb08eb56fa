"""The development host's rules, without running it: host.json's queue options and
timespans, and the order in which routes match.

The host itself, run as a process against Azurite, is tested in
tests/integration/test_devhost.py.
"""

from __future__ import annotations

import pytest

from devhost.config import ConfigError, QueueOptions, parse_timespan, queue_options
from devhost.http import compile_route
from devhost.metadata import HttpFunction


def test_queue_options_default_to_the_hosts_development_defaults() -> None:
    assert queue_options({}) == QueueOptions(
        batch_size=16,
        new_batch_threshold=8,
        max_polling_interval=2.0,
        visibility_timeout=0.0,
        max_dequeue_count=5,
        message_encoding="base64",
    )
    assert queue_options({"batchsize": 6}).new_batch_threshold == 3
    with pytest.raises(ConfigError):
        queue_options({"batchsize": 33})
    with pytest.raises(ConfigError):
        queue_options({"messageencoding": "utf8"})


def test_timespans_as_host_json_writes_them() -> None:
    assert parse_timespan("00:00:00.200", "x") == pytest.approx(0.2)
    assert parse_timespan("00:01:30", "x") == 90
    assert parse_timespan("1.00:00:01", "x") == 86401
    assert parse_timespan(2000, "x") == 2.0  # host.json version 1: milliseconds


def test_literal_routes_take_precedence_over_parameters() -> None:
    def route(template: str) -> HttpFunction:
        return HttpFunction(template, template, ("GET",), "ANONYMOUS", "req", print)

    by_id = compile_route(route("messages/{id}"), "api")
    latest = compile_route(route("messages/latest"), "api")
    assert sorted([by_id, latest], key=lambda r: r.precedence)[0] is latest
    assert by_id.match("/api/messages/SM123") == {"id": "SM123"}
    assert by_id.match("/api/messages") is None
