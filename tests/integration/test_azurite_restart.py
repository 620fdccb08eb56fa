"""Azurite with its data on disk: a restart keeps the ports and every queue message and entity.

GIVEN Azurite started with a `location`, WHEN it is restarted, THEN it listens on the same
ports, and the queue (with a message still invisible), the table and a client built before
the restart all work as before.
"""

from __future__ import annotations

from pathlib import Path

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from localpeers.azurite import Azurite


def test_a_restart_keeps_the_ports_and_the_data(tmp_path: Path) -> None:
    with Azurite(location=tmp_path / "data") as azurite:
        queue = QueueClient.from_connection_string(azurite.connection_string, "restarted")
        queue.create_queue()
        table = TableServiceClient.from_connection_string(azurite.connection_string)
        deliveries = table.create_table("restarted")
        for index in range(20):
            queue.send_message(f"message {index}")
            deliveries.create_entity({"PartitionKey": str(index), "RowKey": "r", "n": index})
        (leased,) = queue.receive_messages(max_messages=1, visibility_timeout=300)
        ports = azurite.ports

        down = azurite.restart()

        assert azurite.ports == ports and azurite.restarts == 1
        assert 0 < down < 30
        assert queue.get_queue_properties().approximate_message_count == 20
        visible = [m.content for m in queue.peek_messages(max_messages=32)]
        assert len(visible) == 19 and leased.content not in visible, "still leased"
        queue.delete_message(leased)  # its pop receipt outlived the restart
        assert sorted(e["n"] for e in deliveries.list_entities()) == list(range(20))
        deliveries.create_entity({"PartitionKey": "after", "RowKey": "r", "n": -1})
    assert (tmp_path / "data").is_dir(), "the data folder is the caller's"


def test_in_memory_azurite_restarts_empty_on_the_same_ports() -> None:
    with Azurite() as azurite:
        queue = QueueClient.from_connection_string(azurite.connection_string, "forgotten")
        queue.create_queue()
        ports = azurite.ports

        azurite.restart()

        assert azurite.ports == ports
        tables = TableServiceClient.from_connection_string(azurite.connection_string)
        assert [t.name for t in tables.list_tables()] == []
        queues = QueueServiceClient.from_connection_string(azurite.connection_string)
        assert [q.name for q in queues.list_queues()] == []
