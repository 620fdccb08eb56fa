"""In-memory stand-ins for the call-flow parts that touch Storage (the trails and the data
of calls)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from telephony.errors import StorageUnavailableError
from telephony.flows.data import CallData
from telephony.flows.trail import MAX_ENTRIES, CallTrail, TrailEntry


@dataclass
class _Trail:
    entries: list[TrailEntry] = field(default_factory=list)
    truncated: bool = False
    finished: bool = False


class MemoryCallTrails:
    """CallTrailStore with the Table store's rules (bound, truncated, finished once).

    `fail` names the operations that raise StorageUnavailableError ("append", "read",
    "finish"); `calls` counts each operation, as round trips would be.
    """

    def __init__(self) -> None:
        self.trails: dict[str, _Trail] = {}
        self.fail: set[str] = set()
        self.calls: dict[str, int] = {"append": 0, "read": 0, "finish": 0}
        self._lock = threading.Lock()

    def append(self, call_sid: str, entry: TrailEntry) -> None:
        self._call("append")
        with self._lock:
            trail = self.trails.setdefault(call_sid, _Trail())
            if trail.finished:
                return
            if len(trail.entries) >= MAX_ENTRIES:
                trail.truncated = True
                return
            trail.entries.append(entry.bounded())

    def read(self, call_sid: str) -> CallTrail:
        self._call("read")
        with self._lock:
            trail = self.trails.get(call_sid)
            if trail is None:
                return CallTrail()
            return CallTrail(tuple(trail.entries), trail.truncated, trail.finished)

    def finish(self, call_sid: str) -> bool:
        self._call("finish")
        with self._lock:
            trail = self.trails.setdefault(call_sid, _Trail())
            first = not trail.finished
            trail.finished = True
            return first

    def _call(self, operation: str) -> None:
        self.calls[operation] += 1
        if operation in self.fail:
            raise StorageUnavailableError(f"the test trail store refused {operation}")


class MemoryCallData:
    """CallDataStore in a dict. `fail` names the operations that raise
    StorageUnavailableError ("put", "get", "forget"); `calls` counts each operation."""

    def __init__(self) -> None:
        self.rows: dict[str, CallData] = {}
        self.fail: set[str] = set()
        self.calls: dict[str, int] = {"put": 0, "get": 0, "forget": 0}
        self._lock = threading.Lock()

    def put(self, data_id: str, data: CallData) -> None:
        self._call("put")
        with self._lock:
            self.rows[data_id] = data

    def get(self, data_id: str) -> CallData | None:
        self._call("get")
        with self._lock:
            return self.rows.get(data_id)

    def forget(self, data_id: str) -> None:
        self._call("forget")
        with self._lock:
            self.rows.pop(data_id, None)

    def _call(self, operation: str) -> None:
        self.calls[operation] += 1
        if operation in self.fail:
            raise StorageUnavailableError(f"the test call data store refused {operation}")
