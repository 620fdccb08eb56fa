"""Soak: queued commands through the development host under production faults, reconciled.

Shared by bench/soak.py (thousands of commands) and tests/integration/test_soak.py (a few
hundred, with exact assertions). One run:

1. starts Azurite with its data on disk (so that it can be restarted without losing it) and
   the Twilio mock (Prism behind the recording proxy), each on a fixed loopback port below
   the ephemeral range, so that a restart gets its port back;
2. starts worker processes: `python -m devhost` serving function_app, each polling the same
   queue with host.json's rules and several threads (PYTHON_THREADPOOL_THREAD_COUNT);
3. puts the commands on the outbound queue: SMS, MMS, scheduled SMS and calls, duplicates
   of their idempotency keys, invalid ones (schema errors, not JSON) and SMS whose send_at is
   in the near past (refused by the send_at window);
4. while the workers run, the mock fails creates at random (429, 500, a hang past the app's
   read timeout, a connection dropped after the create), and the chaos schedule SIGKILLs a
   worker in the middle of its batch (and starts a replacement), restarts Azurite, and makes
   the mock unreachable for a while;
5. waits for quiescence (every command has a final record and the queue is empty), stops the
   workers, and reconciles three ledgers: the commands put on the queue, the delivery records
   (Table `deliveries`) and the creates the mock received (each with its own SID, and the
   record's key in its StatusCallback URL).

"Final" is telephony/outbound/records.py's SETTLED: the key has had its one send or never
will. Twilio accepted it (accepted, scheduled, queued and every later status), or it ended
failed, rejected, poison or in_doubt; pending, claimed and retrying are not final.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

import requests
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableServiceClient
from azure.storage.queue import LinearRetry, QueueClient

from localpeers.azurite import Azurite, AzuritePorts
from localpeers.twilio_mock import TwilioMock
from localpeers.twilio_state import RecordedRequest
from telephony.adapters.twilio_rest import READ_TIMEOUT_SECONDS
from telephony.outbound import records as statuses
from telephony.outbound.service import LEASE
from tests.app_client import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "outbound-messages"
POISON_QUEUE = QUEUE + "-poison"
TABLE = "deliveries"
EVENTS_QUEUE = "telephony-events"
PUBLIC_BASE_URL = "https://soak.example"
PHONE_NUMBER = "+15017122661"
MESSAGING_SERVICE_SID = "MG" + "5" * 32

# What a record may say at the end. FINAL is records.SETTLED; the rest is for reading it.
FINAL = statuses.SETTLED
NOT_SENT_OUTCOMES = frozenset({statuses.REJECTED, statuses.FAILED})
KILLED_REASON = "the worker sending it stopped before recording"
CLAIM_LEASE_SECONDS = LEASE.total_seconds()  # a claim this old is a dead worker's
NO_ANSWER_REASON = "no answer from Twilio"


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class SoakPlan:
    """What one run does; `bench()` and `short()` are the two sizes used."""

    commands: int  # queue messages, duplicates included
    duplicate_share: float = 0.10  # messages repeating an earlier command's key
    invalid_share: float = 0.06  # schema errors and not JSON: rejected
    past_send_at_share: float = 0.04  # send_at in the near past: rejected
    worker_processes: int = 2
    threads: int = 8  # PYTHON_THREADPOOL_THREAD_COUNT of each worker
    throttled: float = 0.10  # share of creates answered 429 (Twilio 20429)
    server_errors: float = 0.05  # answered 500 (Twilio 20500)
    hangs: float = 0.01  # held past the app's read timeout (15 s)
    drops: float = 0.01  # connection closed without an answer, after the create
    hang_seconds: float = 20.0
    azurite_restarts: int = 2
    worker_kills: int = 1
    mock_outages: int = 1
    outage_seconds: float = 10.0
    # When each chaos event happens: the share of queue messages processed so far.
    kill_at: float = 0.10
    restart_at: tuple[float, ...] = (0.25, 0.65)
    outage_at: float = 0.45
    # host.json's visibilityTimeout (None: as host.json says) and the dev host's lease.
    visibility_timeout: float | None = None
    message_lease: float = 90.0
    min_in_flight_at_kill: int = 3
    seed: int = 20261129
    settle_timeout: float = 900.0

    @classmethod
    def bench(cls, commands: int = 5000, **changes: Any) -> SoakPlan:
        return replace(cls(commands=commands), **changes)

    @classmethod
    def short(cls, **changes: Any) -> SoakPlan:
        """A few hundred commands, every fault once, in about a minute and a half.

        Time is what the app's 60 s claim lease (service.LEASE) allows. A claim found
        later with a live lease makes the host retry, and only once the lease has run out
        is it parked in_doubt: so the retry back-off is 16 s instead of host.json's 30 s,
        and the four retries still span more than the lease (64 s), as host.json's do
        (120 s). A killed worker's messages come back after 65 s, when its claims are dead.
        """
        plan = cls(
            commands=300,
            azurite_restarts=1,
            restart_at=(0.20,),
            outage_at=0.30,
            visibility_timeout=16.0,
            message_lease=65.0,
            settle_timeout=150.0,
            seed=7,
        )
        return replace(plan, **changes)


# ------------------------------------------------------------------------------ commands


@dataclass
class Command:
    """One queue message. `key` is the record's key: the idempotency key in the command,
    else the queue message id (known once it is enqueued)."""

    index: int
    label: str
    text: str
    expect: str  # "send" or "reject"
    idempotency_key: str | None
    duplicate: bool = False  # repeats an earlier command, key and all
    message_id: str | None = None
    enqueued_at: float | None = None

    @property
    def key(self) -> str:
        key = self.idempotency_key or self.message_id
        assert key is not None, "not enqueued yet"
        return key


# Labels of what the commands are, with their share among the originals.
SEND_MIX = (
    ("sms", 0.50),
    ("mms", 0.06),
    ("scheduled-sms", 0.06),
    ("call-say", 0.26),
    ("call-flow", 0.06),
    ("call-voice-url", 0.06),
)
SCHEMA_ERRORS = (
    {"kind": "sms", "to": "+15558675310", "body": "hi", "colour": "blue"},
    {"kind": "sms", "body": "no recipient"},
    {"kind": "fax", "to": "+15558675310", "body": "hi"},
    {"kind": "sms", "to": "+15558675310", "body": "x" * 1601},
    {"kind": "call", "to": "+15558675310", "say": "a", "flow": "ivr-menu"},
    {"kind": "sms", "to": "not a number", "body": "hi"},
)


def build_commands(plan: SoakPlan, run: str, now: datetime) -> list[Command]:
    """The queue messages of one run, in the order they are enqueued."""
    rng = random.Random(plan.seed)
    duplicates = round(plan.commands * plan.duplicate_share)
    originals = plan.commands - duplicates
    invalid = round(plan.commands * plan.invalid_share)
    past = round(plan.commands * plan.past_send_at_share)
    labels = ["invalid"] * invalid + ["past-send-at"] * past
    names, weights = zip(*SEND_MIX, strict=True)
    labels += rng.choices(names, weights, k=originals - len(labels))
    rng.shuffle(labels)
    commands = [_command(i, label, run, rng, now) for i, label in enumerate(labels)]
    sendable = [c for c in commands if c.expect == "send"]
    ordered = list(commands)
    for original in rng.sample(sendable, min(duplicates, len(sendable))):
        copy = replace(original, duplicate=True)
        at = ordered.index(original) + 1
        # Half right behind the original (the same batch: concurrent), half anywhere later.
        position = at if rng.random() < 0.5 else rng.randint(at, len(ordered))
        ordered.insert(position, copy)
    for index, command in enumerate(ordered):
        command.index = index
    return ordered


def _command(index: int, label: str, run: str, rng: random.Random, now: datetime) -> Command:
    key = f"soak-{run}-{index}"
    to = f"+1555867{rng.randint(0, 9999):04d}"
    document: dict[str, Any]
    if label == "invalid":
        if rng.random() < 0.35:
            # Not JSON at all: recorded as rejected under the queue message id.
            text = rng.choice([f"not json #{index} {run}", f'{{"kind": "sms", "to": #{index}'])
            return Command(index, "not-json", text, "reject", None)
        document = dict(rng.choice(SCHEMA_ERRORS))
        keyed = rng.random() < 0.7
        if keyed:
            document["idempotency_key"] = key
        return Command(
            index, "schema-error", json.dumps(document), "reject", key if keyed else None
        )
    if label == "past-send-at":
        send_at = now - timedelta(minutes=rng.randint(1, 30))
        document = {"kind": "sms", "to": to, "body": "Too late", "send_at": _iso(send_at)}
        return _keyed(index, label, document, "reject", key)
    if label == "sms":
        document = {"kind": "sms", "to": to, "body": f"Your order {index} shipped"}
    elif label == "mms":
        document = {"kind": "sms", "to": to, "media_urls": ["https://example.com/receipt.png"]}
    elif label == "scheduled-sms":
        send_at = now + timedelta(hours=rng.randint(1, 48))
        document = {"kind": "sms", "to": to, "body": "Reminder", "send_at": _iso(send_at)}
    elif label == "call-say":
        document = {"kind": "call", "to": to, "say": f"Your code is {index % 10000:04d}"}
    elif label == "call-flow":
        data = {"time": f"tomorrow at {index % 12 + 1} PM", "place": "12 Elm Street"}
        document = {"kind": "call", "to": to, "flow": "appointment-reminder", "data": data}
    else:
        document = {"kind": "call", "to": to}
    return _keyed(index, label, document, "send", key)


def _keyed(index: int, label: str, document: dict[str, Any], expect: str, key: str) -> Command:
    return Command(index, label, json.dumps({**document, "idempotency_key": key}), expect, key)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------ ports


def free_fixed_port(taken: set[int]) -> int:
    """A free loopback port below the ephemeral range, so that no outgoing connection can
    take it while its server is down (Azurite restarting, the mock offline)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, max(20001, low - 1))
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


# ------------------------------------------------------------------------------ workers

_EXECUTING = re.compile(r"Executing 'Functions\.outbound' \(Id=(?P<id>[0-9a-f-]+)\)")
_EXECUTED = re.compile(r"Executed 'Functions\.outbound' \((?P<result>\w+), Id=(?P<id>[0-9a-f-]+)")
_POISONED = re.compile(r"Moving message (?P<id>\S+) to queue '[^']+': (?P<reason>.*)\.$")
_LISTENING = re.compile(r"listening on (?P<url>http://\S+)")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<type>[A-Za-z_]\w*): (?P<message>.*)$")


@dataclass(frozen=True)
class AppEvent:
    """One log event of the app (telephony.logs.log_event), as a worker printed it."""

    at: float
    worker: str
    fields: dict[str, Any]


class Worker:
    """One `python -m devhost` process serving function_app: a worker process of the app."""

    def __init__(self, name: str, stack: SoakStack) -> None:
        self.name = name
        self.stack = stack
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        self.in_flight: set[str] = set()
        self.results: Counter[str] = Counter()
        self.poisoned: dict[str, str] = {}  # message id -> why the host moved it
        self.failures: Counter[str] = Counter()  # the exception that failed a function
        self.killed_at: float | None = None
        self._traceback: list[str] | None = None  # of the failed function being read
        self._listening = threading.Event()
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._log: TextIO | None = None

    def start(self, timeout: float = 60.0) -> Worker:
        stack = self.stack
        self._log = (stack.workdir / f"{self.name}.log").open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "devhost",
                "--settings", str(stack.settings_path),
                "--host-json", str(stack.host_json_path),
                "--port", "0",
                "--message-lease", f"{stack.plan.message_lease:g}",
            ],
            cwd=ROOT, env=stack.worker_environment(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-log", daemon=True)
        self._reader.start()
        if not self._listening.wait(timeout):
            self.kill()
            raise RuntimeError(f"{self.name} did not start; see {self._log.name}")
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> int:
        with self._lock:
            return len(self.in_flight)

    def executions(self) -> int:
        with self._lock:
            return sum(self.results.values())

    def kill(self) -> int:
        """SIGKILL, as a crashed worker; the number of functions it was running."""
        assert self.process is not None
        with self._lock:
            running = len(self.in_flight)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.killed_at = time.time()
        self._join()
        return running

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: the host stops polling and lets its running functions finish."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._join()

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if self._log is not None:
                self._log.write(line)
            self._parse(line.rstrip("\n"))
        self._end_traceback()

    def _parse(self, line: str) -> None:
        if self._traceback is not None:
            if not line.startswith("["):  # log lines start with their time
                self._traceback.append(line)
                return
            self._end_traceback()
        if found := _EXECUTING.search(line):
            with self._lock:
                self.in_flight.add(found["id"])
        elif found := _EXECUTED.search(line):
            with self._lock:
                self.in_flight.discard(found["id"])
                self.results[found["result"].lower()] += 1
            if found["result"] == "Failed":
                self._traceback = []
        elif found := _POISONED.search(line):
            self.poisoned[found["id"]] = found["reason"]
        elif found := _LISTENING.search(line):
            self.url = found["url"]
            self._listening.set()
        else:
            start = line.find('{"')
            if start < 0:
                return
            with contextlib.suppress(ValueError):
                fields = json.loads(line[start:])
                if isinstance(fields, dict) and "event" in fields:
                    self.stack.events.append(AppEvent(time.time(), self.name, fields))

    def _end_traceback(self) -> None:
        """Count the exception a traceback ends with: what failed the function."""
        lines, self._traceback = self._traceback, None
        if lines is None:
            return
        for line in reversed(lines):
            if found := _EXCEPTION.match(line):
                self.failures[f"{found['type']}: {found['message'][:80]}"] += 1
                return
        self.failures["(no exception line)"] += 1


# ------------------------------------------------------------------------------ the stack


class SoakStack:
    """Azurite on disk, the Twilio mock with random faults, and the worker processes."""

    def __init__(self, plan: SoakPlan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        ports: set[int] = set()
        self.azurite = Azurite(
            ports=AzuritePorts(*(free_fixed_port(ports) for _ in range(3))),
            location=workdir / "azurite-data",
        )
        self.mock = TwilioMock(free_fixed_port(ports), work_dir=workdir / "twilio-mock")
        self.settings_path = workdir / "local.settings.json"
        self.host_json_path = workdir / "host.json"
        self.workers: list[Worker] = []
        self.events: list[AppEvent] = []  # list.append is atomic: the readers share it
        self._names = itertools.count(1)

    def start(self) -> SoakStack:
        with ThreadPoolExecutor(2) as pool:  # each spends its start-up waiting on Node
            azurite, mock = pool.submit(self.azurite.start), pool.submit(self.mock.start)
        azurite.result()
        mock.result()
        self.mock.fail_randomly(
            {429: self.plan.throttled, 500: self.plan.server_errors},
            hang=self.plan.hangs,
            drop=self.plan.drops,
            hang_seconds=self.plan.hang_seconds,
            path_contains="/Accounts/",
            method="POST",
            seed=self.plan.seed,
        )
        self._write_settings()
        for name in (QUEUE, POISON_QUEUE):
            with contextlib.suppress(ResourceExistsError):
                self.queue(name).create_queue()
        with ThreadPoolExecutor(self.plan.worker_processes) as pool:
            starting = [pool.submit(self.new_worker) for _ in range(self.plan.worker_processes)]
        # Every worker that started is kept, so that stop() ends it if another did not start.
        self.workers = [started.result() for started in starting if started.exception() is None]
        for started in starting:
            if (error := started.exception()) is not None:
                raise error
        return self

    def stop(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.stop(timeout=30)
        self.mock.stop()
        self.azurite.stop()

    def new_worker(self) -> Worker:
        return Worker(f"worker-{next(self._names)}", self).start()

    def add_worker(self) -> Worker:
        worker = self.new_worker()
        self.workers.append(worker)
        return worker

    @property
    def live_workers(self) -> list[Worker]:
        return [worker for worker in self.workers if worker.alive]

    def executions(self) -> int:
        return sum(worker.executions() for worker in self.workers)

    def queue(self, name: str = QUEUE) -> QueueClient:
        return QueueClient.from_connection_string(
            self.azurite.connection_string,
            name,
            retry_policy=LinearRetry(backoff=1, random_jitter_range=0, retry_total=6),
        )

    def table(self) -> Any:
        service = TableServiceClient.from_connection_string(self.azurite.connection_string)
        return service.get_table_client(TABLE)

    def worker_environment(self) -> dict[str, str]:
        # The settings file is the one source of settings: nothing inherited overrides it.
        settings = json.loads(self.settings_path.read_text())["Values"]
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in settings and not name.startswith(("TWILIO_", "AzureWebJobs"))
        }
        env["PYTHON_THREADPOOL_THREAD_COUNT"] = str(self.plan.threads)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _write_settings(self) -> None:
        values = {
            "AzureWebJobsStorage": self.azurite.connection_string,
            "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": PHONE_NUMBER,
            "TWILIO_MESSAGING_SERVICE_SID": MESSAGING_SERVICE_SID,
            "TWILIO_API_BASE_URL": self.mock.base_url,
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "OUTBOUND_QUEUE_NAME": QUEUE,
            "DELIVERIES_TABLE_NAME": TABLE,
            "EVENTS_QUEUE_NAME": EVENTS_QUEUE,
            "RECONCILE_SCHEDULE": "0 */5 * * * *",
        }
        self.settings_path.write_text(json.dumps({"Values": values}, indent=2))
        host_json = json.loads((ROOT / "host.json").read_text())
        if self.plan.visibility_timeout is not None:
            seconds = int(self.plan.visibility_timeout)
            host_json["extensions"]["queues"]["visibilityTimeout"] = (
                f"00:{seconds // 60:02d}:{seconds % 60:02d}"
            )
        self.host_json_path.write_text(json.dumps(host_json, indent=2))


# ------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class ChaosEvent:
    """Something the run did, `at` seconds after it began (until `until`, for a window)."""

    at: float
    what: str
    kind: str = "note"  # kill, restart, outage or note
    until: float | None = None
    running: int = 0  # for a kill: the functions the worker was running

    def describe(self) -> str:
        if self.kind in ("restart", "outage") and self.until is not None:
            return f"[{self.at:6.1f} s to {self.until:6.1f} s] {self.what}"
        return f"[{self.at:6.1f} s] {self.what}"


class Producer:
    """Puts the commands on the queue from a few threads; paused while Azurite restarts,
    so that no send is in flight when Storage goes down: the outcome of a send whose
    answer was lost is unknown, and the ledger of commands must be exact."""

    def __init__(self, stack: SoakStack, commands: list[Command]) -> None:
        self.stack = stack
        self.commands = commands
        self.done = threading.Event()
        self.finished_at: float | None = None
        self.error: BaseException | None = None
        self._turn = threading.Condition()
        self._paused = False
        self._sending = 0
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)

    def start(self) -> Producer:
        self._thread.start()
        return self

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No send starts in the block, and none is in flight when it begins."""
        with self._turn:
            self._paused = True
            self._turn.wait_for(lambda: self._sending == 0)
        try:
            yield
        finally:
            with self._turn:
                self._paused = False
                self._turn.notify_all()

    def _run(self) -> None:
        queue = self.stack.queue()
        try:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda command: self._send(queue, command), self.commands))
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished_at = time.time()
            self.done.set()

    def _send(self, queue: QueueClient, command: Command) -> None:
        with self._turn:
            self._turn.wait_for(lambda: not self._paused)
            self._sending += 1
        try:
            sent = queue.send_message(command.text)
        finally:
            with self._turn:
                self._sending -= 1
                self._turn.notify_all()
        command.message_id = sent.id
        command.enqueued_at = time.time()


class HttpProbe:
    """Reads random records through GET /api/messages/{id} on a live worker during the run:
    whatever fails underneath, the answer is 200, 404 or 503, never another 5xx."""

    def __init__(self, stack: SoakStack, commands: list[Command]) -> None:
        self.stack = stack
        self.commands = commands
        self.statuses: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-probe", daemon=True)

    def start(self) -> HttpProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        rng = random.Random()
        session = requests.Session()
        while not self._stop.wait(0.25):
            enqueued = [c for c in self.commands if c.message_id is not None]
            workers = [w for w in self.stack.live_workers if w.url]
            if not enqueued or not workers:
                continue
            key = rng.choice(enqueued).key
            url = f"{rng.choice(workers).url}/api/messages/{key}"
            try:
                answer = session.get(url, timeout=30)
            except requests.RequestException as exc:
                self.statuses[type(exc).__name__] += 1  # a worker killed meanwhile
                continue
            self.statuses[str(answer.status_code)] += 1
            if answer.status_code >= 500 and answer.status_code != 503:
                self.failures.append(f"GET {key}: {answer.status_code} {answer.text[:200]}")


def run_soak(plan: SoakPlan, workdir: Path, say: Callable[[str], None] = print) -> SoakReport:
    """One run in `workdir` (logs and Azurite's data stay there); the reconciled report."""
    run = uuid.uuid4().hex[:8]
    commands = build_commands(plan, run, datetime.now(UTC))
    stack = SoakStack(plan, workdir)
    began = time.time()
    timeline: list[ChaosEvent] = []

    def note(what: str, kind: str = "note", since: float | None = None, running: int = 0) -> None:
        now = time.time() - began
        start = now if since is None else since - began
        event = ChaosEvent(start, what, kind, now, running)
        timeline.append(event)
        say(event.describe())

    try:
        stack.start()
        note(
            f"stack up: Azurite {stack.azurite.queue_endpoint}, Twilio mock "
            f"{stack.mock.base_url}, workers {', '.join(str(w.pid) for w in stack.workers)}"
        )
        producer = Producer(stack, commands).start()
        probe = HttpProbe(stack, commands).start()
        _run_chaos(plan, stack, producer, commands, note)
        if not producer.done.wait(plan.settle_timeout):
            raise RuntimeError("the producer did not finish")
        if producer.error is not None:
            raise RuntimeError("enqueueing failed") from producer.error
        note(f"all {len(commands)} commands enqueued", since=producer.finished_at)
        quiet = _wait_for_quiescence(plan, stack, commands, note)
        probe.stop()
        for worker in stack.workers:
            worker.stop()
        note("workers stopped")
        return reconcile(plan, stack, commands, timeline, probe, quiet, began)
    finally:
        stack.stop()


def _run_chaos(
    plan: SoakPlan,
    stack: SoakStack,
    producer: Producer,
    commands: list[Command],
    note: Callable[..., None],
) -> None:
    """The chaos schedule, each event when its share of the messages has been processed."""
    events: list[tuple[float, str]] = [(plan.kill_at, "kill")] * plan.worker_kills
    events += [(at, "restart") for at in plan.restart_at[: plan.azurite_restarts]]
    events += [(plan.outage_at, "outage")] * plan.mock_outages

    def processed(share: float) -> Callable[[], bool]:
        return lambda: stack.executions() >= share * len(commands)

    for at, what in sorted(events):
        wait_for(processed(at), plan.settle_timeout, f"{at:.0%} of the messages to be processed")
        if what == "kill":
            _kill_a_worker(plan, stack, note)
        elif what == "restart":
            with producer.paused():
                since = time.time()
                down = stack.azurite.restart()
            note(f"Azurite restarted: down {down:.1f} s, same ports, data on disk", what, since)
        else:
            since = time.time()
            with stack.mock.unreachable():
                time.sleep(plan.outage_seconds)  # the outage lasts this long, by definition
            note(
                f"Twilio mock unreachable (connections refused) for {plan.outage_seconds:g} s, "
                "then back on the same port",
                what,
                since,
            )


def _kill_a_worker(plan: SoakPlan, stack: SoakStack, note: Callable[..., None]) -> None:
    def busiest() -> Worker | None:
        workers = sorted(stack.live_workers, key=Worker.running, reverse=True)
        if workers and workers[0].running() >= plan.min_in_flight_at_kill:
            return workers[0]
        return None

    victim = wait_for(
        busiest, 60.0, f"a worker with {plan.min_in_flight_at_kill} functions running"
    )
    running = victim.kill()
    what = f"SIGKILL {victim.name} (pid {victim.pid}) with {running} functions running"
    note(what, "kill", running=running)
    replacement = stack.add_worker()
    note(f"replacement {replacement.name} (pid {replacement.pid}) polling")


def _wait_for_quiescence(
    plan: SoakPlan, stack: SoakStack, commands: list[Command], note: Callable[[str], None]
) -> bool:
    """Until every command has a final record and the queue is empty; False on timeout."""
    deadline = time.monotonic() + plan.settle_timeout
    queue = stack.queue()
    while time.monotonic() < deadline:
        try:
            left = queue.get_queue_properties().approximate_message_count
            if left == 0:
                records = read_records(stack)
                unsettled = [c for c in commands if not _is_final(records.get(c.key))]
                if not unsettled:
                    note("quiescent: every command has a final record, the queue is empty")
                    return True
        except AzureError:
            pass
        time.sleep(1.0)
    note(f"not quiescent after {plan.settle_timeout:g} s")
    return False


def read_records(stack: SoakStack) -> dict[str, dict[str, Any]]:
    """Every delivery record, by key (pending markers left out)."""
    entities = stack.table().query_entities("RowKey ge 'd-' and RowKey lt 'd.'")
    return {entity["Key"]: dict(entity) for entity in entities}


def _is_final(record: dict[str, Any] | None) -> bool:
    return record is not None and record["Status"] in FINAL


# ------------------------------------------------------------------------------ ledgers


@dataclass(frozen=True)
class Create:
    """One request to create a message or call that the mock received."""

    key: str | None
    status: int
    sid: str | None
    fault: str | None
    at: float

    @property
    def accepted(self) -> bool:
        """Twilio created it (whether or not the client got the answer)."""
        return 200 <= self.status < 300


def creates_of(requests_seen: list[RecordedRequest]) -> list[Create]:
    found = []
    for request in requests_seen:
        if request.method != "POST" or not request.path.endswith(("/Messages.json", "/Calls.json")):
            continue
        callback = request.param("StatusCallback") or ""
        keys = parse_qs(urlsplit(callback).query).get("id")
        response = request.response if isinstance(request.response, dict) else {}
        sid = response.get("sid") if isinstance(response.get("sid"), str) else None
        found.append(
            Create(
                keys[0] if keys else None, request.status, sid, request.fault, request.recorded_at
            )
        )
    return found


@dataclass
class SoakReport:
    """The three ledgers reconciled; `problems()` lists every broken invariant."""

    plan: SoakPlan
    began: float  # time.time() when the run began
    seconds: float
    quiescent: bool
    commands: list[Command]
    records: dict[str, dict[str, Any]]
    creates: list[Create]
    timeline: list[ChaosEvent]
    queue_left: int
    poison_messages: list[str]
    poison_moves: dict[str, str]
    http_statuses: Counter[str]
    http_failures: list[str]
    worker_results: dict[str, Counter[str]]
    failures: Counter[str]
    events_by_key: dict[str, list[AppEvent]]
    mock_requests: int
    published: dict[str, Counter[str]] = field(default_factory=dict)  # key -> status -> events
    republished: int = 0  # records and staged events reconcile looked at afterwards
    unpublished: list[str] = field(default_factory=list)
    outbox_left: list[str] = field(default_factory=list)
    lost: list[Command] = field(default_factory=list)
    double_sent: dict[str, list[Create]] = field(default_factory=dict)
    unknown_sids: list[str] = field(default_factory=list)
    unrecorded_creates: list[Create] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    in_doubt: dict[str, str] = field(default_factory=dict)  # key -> cause
    strangers: list[str] = field(default_factory=list)  # records of keys no command has

    # ---------------------------------------------------------------- invariants

    def problems(self) -> list[str]:
        found = [f"lost (no final record): {c.key} ({c.label})" for c in self.lost]
        found += [
            f"sent twice: {key}: {[(c.sid, c.fault) for c in creates]}"
            for key, creates in self.double_sent.items()
        ]
        found += [
            f"a record holds a SID the mock never created: {sid}" for sid in self.unknown_sids
        ]
        found += [
            f"a create with no record of it: {c.key} {c.sid} ({c.fault or 'answered'})"
            for c in self.unrecorded_creates
        ]
        found += self.unexpected
        found += [f"a record no command accounts for: {key}" for key in self.strangers]
        found += [
            f"in_doubt, unexplained: {key}: {cause}"
            for key, cause in self.in_doubt.items()
            if cause.startswith("unexplained")
        ]
        running = sum(e.running for e in self.timeline if e.kind == "kill")
        killed = sum(1 for cause in self.in_doubt.values() if "SIGKILL" in cause)
        if killed > running:
            found.append(f"{killed} in_doubt put down to a kill that stopped {running} functions")
        found += [f"no event for the status of {key}" for key in self.unpublished]
        found += [f"events left in the outbox of {key}" for key in self.outbox_left]
        if self.queue_left:
            found.append(f"{self.queue_left} messages left on the queue")
        if not self.quiescent:
            found.append("the run did not reach quiescence")
        found += [f"HTTP: {failure}" for failure in self.http_failures]
        return found

    # ---------------------------------------------------------------- figures

    def keys(self) -> dict[str, Command]:
        """The first command of each key."""
        first: dict[str, Command] = {}
        for command in self.commands:
            first.setdefault(command.key, command)
        return first

    def latencies(self, wanted: Callable[[str], bool] = lambda status: True) -> list[float]:
        """Seconds from the first enqueue of each key to its record's last update."""
        found = []
        for key, command in self.keys().items():
            record = self.records.get(key)
            if record is None or command.enqueued_at is None or not wanted(record["Status"]):
                continue
            found.append(record["UpdatedAt"].timestamp() - command.enqueued_at)
        return found

    def render(self) -> str:
        lines: list[str] = []
        add = lines.append
        plan = self.plan
        keys = self.keys()
        labels = Counter(c.label for c in self.commands if not c.duplicate)
        duplicates = sum(1 for c in self.commands if c.duplicate)
        add("=== soak: queued commands through the development host, under faults ===")
        add(
            f"plan: {len(self.commands)} queue messages ({len(keys)} keys, {duplicates} "
            f"duplicates of a key), {plan.worker_processes} worker processes x "
            f"{plan.threads} threads, seed {plan.seed}"
        )
        add("  originals: " + ", ".join(f"{n} {label}" for label, n in sorted(labels.items())))
        add(
            f"  Twilio mock faults on creates: 429 {plan.throttled:.0%}, 500 "
            f"{plan.server_errors:.0%}, held {plan.hang_seconds:g} s (the app's read timeout: "
            f"{READ_TIMEOUT_SECONDS:g} s) {plan.hangs:.0%}, dropped after the create "
            f"{plan.drops:.0%}"
        )
        queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
        visibility = (
            f"{plan.visibility_timeout:g} s (host.json: {queues['visibilityTimeout']})"
            if plan.visibility_timeout is not None
            else f"{queues['visibilityTimeout']} (host.json)"
        )
        add(
            f"  host: visibilityTimeout {visibility}, maxDequeueCount "
            f"{queues['maxDequeueCount']}, batchSize {queues['batchSize']}, dev host message "
            f"lease {plan.message_lease:g} s; the app's claim lease {CLAIM_LEASE_SECONDS:g} s"
        )
        add(f"run: {self.seconds:.0f} s, quiescent: {self.quiescent}")
        for event in self.timeline:
            add(f"  {event.describe()}")
        add("")
        add("--- ledger 1: commands put on the queue vs ledger 2: delivery records ---")
        add(
            "final: the record's status is in records.SETTLED (accepted, scheduled, queued and "
            "later, failed, rejected, poison, in_doubt), not pending, claimed or retrying"
        )
        add(f"commands with no final record: {len(self.lost)}  (goal 0)")
        for command in self.lost[:20]:
            record = self.records.get(command.key)
            add(f"  {command.key} {command.label}: {record['Status'] if record else 'no record'}")
        statuses_seen = Counter(r["Status"] for key, r in self.records.items() if key in keys)
        add("final statuses (one per key): " + _counts(statuses_seen))
        add(f"records no command accounts for: {len(self.strangers)}  (goal 0)")
        add(f"unexpected outcomes: {len(self.unexpected)}  (goal 0)")
        for line in self.unexpected[:20]:
            add(f"  {line}")
        add("")
        add("--- ledger 3: creates the Twilio mock received ---")
        accepted = [c for c in self.creates if c.accepted]
        add(
            f"create requests: {len(self.creates)} ({len(accepted)} accepted: Twilio created "
            f"the resource), of {self.mock_requests} requests in all"
        )
        add("  faults injected: " + _counts(Counter(fault_kind(c) for c in self.creates)))
        add(f"keys with more than one accepted create: {len(self.double_sent)}  (goal 0)")
        for key, creates in list(self.double_sent.items())[:20]:
            add(f"  {key}: {[(c.sid, c.fault) for c in creates]}")
        add(f"records whose SID the mock never created: {len(self.unknown_sids)}  (goal 0)")
        add(
            f"accepted creates no record accounts for: {len(self.unrecorded_creates)}  (goal 0; "
            "an in_doubt record accounts for the create whose answer it never got)"
        )
        add("")
        add(
            f"--- in_doubt: {len(self.in_doubt)} records "
            f"({len(self.in_doubt) / max(1, len(keys)):.2%} of keys) ---"
        )
        for cause, n in Counter(self.in_doubt.values()).most_common():
            add(f"  {n:5d}  {cause}")
        examples = {cause: key for key, cause in sorted(self.in_doubt.items(), reverse=True)}
        for cause, key in sorted(examples.items()):
            if "answer dropped" not in cause and "read timeout" not in cause:
                add(f"  for example, {cause}:")
                add("  " + self.history(key).replace("\n", "\n  "))
        add("")
        add("--- ledger 4: telephony.delivery.updated events on the events queue ---")
        facts = sum(len(by_status) for by_status in self.published.values())
        events = sum(sum(by_status.values()) for by_status in self.published.values())
        add(
            f"events: {events} for {facts} status changes ({events / max(1, facts):.3f} per "
            f"change; at least 1, more only after a fault); reconcile looked at "
            f"{self.republished} records and staged events afterwards"
        )
        add(f"records whose status has no event: {len(self.unpublished)}  (goal 0)")
        add(f"records with events left in their outbox: {len(self.outbox_left)}  (goal 0)")
        add("")
        add("--- queues ---")
        add(f"messages left on the queue: {self.queue_left}  (goal 0)")
        add(f"poison queue: {len(self.poison_messages)} messages")
        for reason, n in self._poison_reasons().most_common():
            add(f"  {n:5d}  {reason}")
        poison_records = Counter(
            f"{r.get('Reason')} (Twilio {r.get('ErrorCode')})"
            for key, r in self.records.items()
            if key in keys and r["Status"] == statuses.POISON
        )
        add(f"poison records: {sum(poison_records.values())}")
        for reason, n in poison_records.most_common():
            add(f"  {n:5d}  {reason}")
        add("")
        add("--- attempts ---")
        claims = Counter(int(r.get("Attempts", 0)) for k, r in self.records.items() if k in keys)
        add("claims per key (record Attempts): " + _histogram(claims))
        per_key = Counter(c.key for c in self.creates if c.key is not None)
        tries = Counter(per_key.get(key, 0) for key, c in keys.items() if c.expect == "send")
        add("create requests per sendable key: " + _histogram(tries))
        runs: Counter[str] = Counter()
        for results in self.worker_results.values():
            runs.update(results)
        add(
            "function runs: "
            + _counts(runs)
            + f" for {len(self.commands)} messages ("
            + ", ".join(f"{n}: {_counts(r)}" for n, r in self.worker_results.items())
            + ")"
        )
        add("function failures, by the exception that ended them (the host retries):")
        for cause, n in self.failures.most_common():
            add(f"  {n:5d}  {cause}")
        add("")
        add("--- time from enqueue to final status (first enqueue of a key to its record) ---")
        for title, wanted in (
            ("all keys", lambda s: True),
            ("sent", lambda s: s not in NOT_SENT_OUTCOMES | {statuses.IN_DOUBT, statuses.POISON}),
            ("rejected", lambda s: s == statuses.REJECTED),
            ("in_doubt", lambda s: s == statuses.IN_DOUBT),
        ):
            add(f"  {title:9s} {_percentiles(self.latencies(wanted))}")
        add("")
        add(
            f"--- GET /api/messages/{{id}} during the run: {_counts(self.http_statuses)}; "
            f"other 5xx: {len(self.http_failures)} (goal 0) ---"
        )
        problems = self.problems()
        add("")
        add(f"=== {'PASS' if not problems else 'FAIL'}: {len(problems)} problems ===")
        for problem in problems[:50]:
            add(f"  {problem}")
        for key in self.problem_keys()[:10]:
            add("")
            add(self.history(key))
        return "\n".join(lines)

    def problem_keys(self) -> list[str]:
        """Keys behind the problems: lost, sent twice, unaccounted for, unexplained."""
        keys = [c.key for c in self.lost] + list(self.double_sent)
        keys += [c.key for c in self.unrecorded_creates if c.key]
        keys += [key for key, cause in self.in_doubt.items() if cause.startswith("unexplained")]
        return list(dict.fromkeys(keys))

    def history(self, key: str) -> str:
        """What happened to `key`, in time order: its messages, the creates the mock saw, the
        app's log events, and the record as it ended."""
        seen: list[tuple[float, str]] = []
        for command in self.commands:
            if command.key == key and command.enqueued_at is not None:
                seen.append((command.enqueued_at, f"enqueued as message {command.message_id}"))
        for create in self.creates:
            if create.key == key:
                seen.append((create.at, f"create: {create.status} {create.sid} ({create.fault})"))
        for event in self.events_by_key.get(key, []):
            fields = {k: v for k, v in event.fields.items() if k not in ("key", "to")}
            seen.append((event.at, f"{event.worker}: {fields}"))
        lines = [f"history of {key}:"]
        lines += [f"  {at - self.began:7.2f} s {what}" for at, what in sorted(seen)]
        record = self.records.get(key)
        shown = {k: str(v) for k, v in (record or {}).items() if k != "PartitionKey"}
        lines.append(f"  record: {shown or None}")
        return "\n".join(lines)

    def _poison_reasons(self) -> Counter[str]:
        by_text: dict[str, Command] = {c.text: c for c in self.commands}
        by_id = {c.message_id: c for c in self.commands}
        moved = {
            by_id[message_id].text: reason
            for message_id, reason in self.poison_moves.items()
            if message_id in by_id
        }
        reasons: Counter[str] = Counter()
        for text in self.poison_messages:
            command = by_text.get(text)
            record = self.records.get(command.key) if command else None
            status = f"record {record['Status']}: {record.get('Reason')}" if record else "no record"
            reasons[f"host: {moved.get(text, '?')}; {status}"] += 1
        return reasons


def reconcile(
    plan: SoakPlan,
    stack: SoakStack,
    commands: list[Command],
    timeline: list[ChaosEvent],
    probe: HttpProbe,
    quiescent: bool,
    began: float,
) -> SoakReport:
    republished = _publish_leftover_events(stack)
    records = read_records(stack)
    poison = _drain_texts(stack.queue(POISON_QUEUE))
    events_by_key: dict[str, list[AppEvent]] = defaultdict(list)
    for event in stack.events:
        key = event.fields.get("key")
        if isinstance(key, str):
            events_by_key[key].append(event)
    moves: dict[str, str] = {}
    for worker in stack.workers:
        moves.update(worker.poisoned)
    report = SoakReport(
        plan=plan,
        began=began,
        seconds=time.time() - began,
        quiescent=quiescent,
        commands=commands,
        records=records,
        creates=creates_of(stack.mock.requests),
        timeline=timeline,
        queue_left=stack.queue().get_queue_properties().approximate_message_count or 0,
        poison_messages=poison,
        poison_moves=moves,
        http_statuses=probe.statuses,
        http_failures=probe.failures,
        worker_results={w.name: Counter(w.results) for w in stack.workers},
        failures=sum((Counter(w.failures) for w in stack.workers), Counter()),
        events_by_key=dict(events_by_key),
        mock_requests=len(stack.mock.requests),
        published=_published_statuses(stack),
        republished=republished,
    )
    _check(report)
    return report


def _publish_leftover_events(stack: SoakStack) -> int:
    """What reconcile does once OUTBOX_GRACE has passed: publish the events a killed worker
    or a refused sink left in records' outboxes. Run here, in-process, with a clock that
    far ahead, until nothing is left; how many records it looked at."""
    from telephony.container import build_container
    from telephony.events.publisher import OUTBOX_GRACE

    settings = json.loads(stack.settings_path.read_text())["Values"]
    later = lambda: datetime.now(UTC) + OUTBOX_GRACE + timedelta(seconds=5)  # noqa: E731
    reconciler = build_container(settings, clock=later).reconciler
    looked = 0
    for _ in range(50):
        run = reconciler.run()
        looked += run.records + run.staged_published
        if run.records == 0 and run.staged_published == 0:
            break
    return looked


def _published_statuses(stack: SoakStack) -> dict[str, Counter[str]]:
    """telephony.delivery.updated events on the events queue: how often each status of
    each key was published."""
    import base64

    published: dict[str, Counter[str]] = defaultdict(Counter)
    for text in _drain_texts(stack.queue(EVENTS_QUEUE)):
        event = json.loads(base64.b64decode(text))
        if event["type"] == "telephony.delivery.updated":
            published[event["data"]["id"]][event["data"]["status"]] += 1
    return dict(published)


def _check(report: SoakReport) -> None:
    records = report.records
    accepted: dict[str, list[Create]] = defaultdict(list)
    for create in report.creates:
        if create.accepted:
            # A create without the key in its callback URL: accounted for by no record.
            accepted[create.key or "(no key)"].append(create)
    report.strangers = sorted(set(records) - set(report.keys()))
    report.unpublished = sorted(
        key
        for key, record in records.items()
        if record["Status"] not in statuses.INTERNAL
        and not report.published.get(key, Counter())[record["Status"]]
    )
    report.outbox_left = sorted(key for key, record in records.items() if record.get("Outbox"))
    report.lost = [c for c in report.commands if not _is_final(records.get(c.key))]
    report.double_sent = {key: found for key, found in accepted.items() if len(found) > 1}
    created_sids = {c.sid for c in report.creates if c.accepted}
    report.unknown_sids = sorted(
        str(r["TwilioSid"])
        for r in records.values()
        if r.get("TwilioSid") and r["TwilioSid"] not in created_sids
    )
    for key, found in accepted.items():
        record = records.get(key)
        sids = {c.sid for c in found}
        if record is None or (
            record.get("TwilioSid") not in sids and record["Status"] != statuses.IN_DOUBT
        ):
            report.unrecorded_creates += found
    for key, command in report.keys().items():
        record = records.get(key)
        if record is None:
            continue
        status, reason = record["Status"], record.get("Reason")
        if command.expect == "reject" and status != statuses.REJECTED:
            report.unexpected.append(f"{key} ({command.label}) should be rejected, is {status}")
        elif command.expect == "send" and status in NOT_SENT_OUTCOMES:
            report.unexpected.append(
                f"{key} ({command.label}) should be sent, is {status}: {reason} "
                f"(Twilio {record.get('ErrorCode')})"
            )
        elif command.label == "past-send-at" and "send_at" not in str(reason):
            report.unexpected.append(f"{key} rejected for another reason: {reason}")
        if status == statuses.IN_DOUBT:
            report.in_doubt[key] = _in_doubt_cause(report, record, accepted.get(key, []))


def _in_doubt_cause(report: SoakReport, record: dict[str, Any], creates: list[Create]) -> str:
    """Why a record is in doubt, from the mock's ledger, the record's reason and the chaos
    schedule; "unexplained" when none of the known causes fits."""
    reason = str(record.get("Reason"))
    kills = [e.at for e in report.timeline if e.kind == "kill"]
    restarts = [(e.at, e.until or e.at) for e in report.timeline if e.kind == "restart"]
    if not creates and reason == KILLED_REASON:
        # The dead claim came after the key's last failed attempt (or was its first claim),
        # and at least the claim lease (60 s) before another worker found it dead.
        low, high = _dead_claim_window(report, record)
        if any(low - 1 <= kill <= high + 1 for kill in kills):
            return "not created: its worker was SIGKILLed after the claim, before the request"
        if any(start - 1 <= high and low <= end + 10 for start, end in restarts):
            return (
                "not created: the claim's answer was lost while Azurite restarted, and the "
                "app took its own claim for a dead worker's"
            )
        return f"unexplained: never created, claimed between {low:.1f} s and {high:.1f} s"
    if len(creates) == 1:
        fault = creates[0].fault or ""
        if fault == "drop" and reason.startswith(NO_ANSWER_REASON):
            return "created, answer dropped (connection closed without an answer)"
        if fault.startswith("hang") and reason.startswith(NO_ANSWER_REASON):
            return "created, answer too late (read timeout)"
        if reason == KILLED_REASON:
            at = creates[0].at - report.began
            held = " (answer held back: hang)" if fault.startswith("hang") else ""
            if any(0 <= kill - at < 30 for kill in kills):
                return f"created{held}, its worker was SIGKILLed before it recorded the answer"
            # The record is written right after the create; Storage's SDK retries ~6 s.
            if any(start - 2 <= at <= end + 10 for start, end in restarts):
                return "created, its worker could not record the answer: Azurite restarting"
            return f"unexplained: created {at:.1f} s into the run, never recorded"
    if not creates and reason.startswith(NO_ANSWER_REASON):
        # When the request was sent: a read timeout is READ_TIMEOUT_SECONDS later.
        sent = record["UpdatedAt"].timestamp() - report.began
        if "Timeout" in reason:
            sent -= READ_TIMEOUT_SECONDS
        outages = [e.at for e in report.timeline if e.kind == "outage"]
        if any(-2 <= sent - start <= 2 for start in outages):
            return (
                "not created: sent as the mock went offline, the connection was lost with the "
                "request unanswered (the app cannot tell it never reached Twilio)"
            )
        return "not created: the connection was lost before the request reached Twilio"
    return f"unexplained: {len(creates)} creates, reason {reason!r}"


def _dead_claim_window(report: SoakReport, record: dict[str, Any]) -> tuple[float, float]:
    """When the claim that was found dead was made, in seconds into the run."""
    key = record["Key"]
    events = report.events_by_key.get(key, [])
    found_dead = next(
        (e.at for e in events if e.fields.get("event") == "outbound_in_doubt"),
        record["UpdatedAt"].timestamp(),
    )
    failed = [
        e.at
        for e in events
        if e.at < found_dead and e.fields.get("event") in ("outbound_retrying", "outbound_poison")
    ]
    low = max([record["CreatedAt"].timestamp(), *failed])
    return low - report.began, found_dead - CLAIM_LEASE_SECONDS - report.began


def _drain_texts(queue: QueueClient) -> list[str]:
    """The text of every message on `queue` (they stay on it, invisible for a while)."""
    texts: list[str] = []
    while True:
        batch = list(queue.receive_messages(max_messages=32, visibility_timeout=600))
        if not batch:
            return texts
        texts += [str(message.content) for message in batch]


def fault_kind(create: Create) -> str:
    """The fault the mock injected: 429, 500, hang, drop, or none."""
    fault = create.fault or ""
    if fault.startswith("code="):
        return fault.split(",")[0].removeprefix("code=")
    return fault.split("=")[0] or "none"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counter.most_common()) or "none"


def _histogram(counter: Counter[int]) -> str:
    return ", ".join(f"{value}: {counter[value]}" for value in sorted(counter)) or "none"


def _percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    if len(values) < 2:
        return f"n {len(values)}, {values[0]:.1f} s"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return (
        f"n {len(values):5d}  p50 {statistics.median(values):6.1f} s  p99 {cuts[98]:6.1f} s  "
        f"max {max(values):6.1f} s"
    )
