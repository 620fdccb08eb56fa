"""Azurite, the Azure Storage emulator, on loopback for tests and local runs.

One ``azurite`` process serves the queue and table services (and blob, which the same
binary always starts; one Node.js process costs about half the memory of separate
``azurite-queue`` and ``azurite-table`` processes). Data lives in memory, unless a
``location`` is given: then Azurite keeps it on disk there, and `Azurite.restart` stops
the emulator and starts it again on the same ports with the same data, as a storage
account that was briefly unreachable. Every port defaults to 0: Azurite binds a free port
itself and prints it, so parallel runs never race for a port. The process runs in its own
process group and is stopped with ``killpg``.

Run ``python -m localpeers.azurite`` to serve it in the foreground; it prints the
connection string and stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from localpeers.processes import stop_group

PROJECT_ROOT = Path(__file__).resolve().parents[1]
AZURITE_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
LOOPBACK = "127.0.0.1"

# The emulator's well-known development account, documented by Microsoft; not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

SERVICES = ("blob", "queue", "table")
_CLOSING = ("Blob", "Queue", "Table")
_LISTENING = re.compile(
    r"Azurite (?P<service>Blob|Queue|Table) service is successfully listening at "
    r"http://[^:\s]+:(?P<port>\d+)"
)


class AzuriteStartError(RuntimeError):
    """Azurite did not come up; the message carries the end of its log."""


@dataclass(frozen=True)
class AzuritePorts:
    """The ports Azurite listens on (0 before it starts, or to let it pick one)."""

    blob: int = 0
    queue: int = 0
    table: int = 0


def connection_string(host: str, ports: AzuritePorts) -> str:
    """A Storage connection string for the development account at these ports."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{ports.blob}/{ACCOUNT_NAME};"
        f"QueueEndpoint=http://{host}:{ports.queue}/{ACCOUNT_NAME};"
        f"TableEndpoint=http://{host}:{ports.table}/{ACCOUNT_NAME};"
    )


class Azurite:
    """A running Azurite; use as a context manager or call `start` and `stop`::

    with Azurite() as azurite:
        QueueServiceClient.from_connection_string(azurite.connection_string)
    """

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        ports: AzuritePorts | None = None,
        startup_timeout: float = 30.0,
        extent_memory_mb: int = 64,
        location: Path | None = None,
    ) -> None:
        """`location`: a folder where Azurite keeps its data on disk (None: in memory).

        A folder outlives the instance: the caller creates and removes it, and a new
        Azurite given the same folder finds the data the last one left there.
        """
        self.host = host
        self.requested_ports = ports or AzuritePorts()
        self.startup_timeout = startup_timeout
        # Caps the in-memory message store; the default is half of the machine's memory.
        self.extent_memory_mb = extent_memory_mb
        self.location = location
        self.restarts = 0
        self.ports = AzuritePorts()
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Azurite:
        """Start Azurite and return once every service answers HTTP."""
        if self._process is not None:
            raise RuntimeError("Azurite is already running")
        if not AZURITE_BIN.exists():
            raise AzuriteStartError(f"{AZURITE_BIN} is missing; run `npm ci` first")
        # Azurite refuses --location with --inMemoryPersistence, so give it a private cwd.
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        try:
            self._launch(self.requested_ports)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> float:
        """Stop Azurite and start it again on the same ports; the seconds it was down.

        With a `location`, the data is kept: Azurite is stopped with SIGTERM and writes
        its databases to disk before it exits, as a storage account that was unreachable
        for a moment. In memory, the data is lost.
        """
        if self._process is None:
            raise RuntimeError("Azurite is not running")
        ports = self.ports
        began = time.monotonic()
        self._stop_process()
        try:
            self._launch(ports)
        except BaseException:
            self.stop()
            raise
        self.restarts += 1
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after a grace period."""
        self._stop_process()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ endpoints

    @property
    def pid(self) -> int | None:
        """Process id (and process group id) of the running Azurite."""
        return self._process.pid if self._process is not None else None

    @property
    def queue_endpoint(self) -> str:
        return f"http://{self.host}:{self.ports.queue}/{ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{self.host}:{self.ports.table}/{ACCOUNT_NAME}"

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.ports.blob}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """Connection string for the development account on this instance."""
        if self._process is None:
            raise RuntimeError("Azurite is not running")
        return connection_string(self.host, self.ports)

    def environment(self) -> dict[str, str]:
        """Settings that point a Functions app (and its host) at this instance."""
        return {"AzureWebJobsStorage": self.connection_string}

    # ------------------------------------------------------------------ internals

    def _launch(self, ports: AzuritePorts) -> None:
        """Start the process on `ports` (0: any) and wait until every service answers."""
        assert self._workdir is not None
        self._log_path = Path(self._workdir.name) / f"azurite-{self.restarts}.log"
        started = time.monotonic()
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._command(ports),
                cwd=self._workdir.name,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ports = self._wait_for_ports(started + self.startup_timeout)
        self._wait_until_answering(started + self.startup_timeout)
        self.startup_seconds = time.monotonic() - started

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if self.location is not None and process.poll() is None:
            # SIGTERM makes Azurite close its services and save its databases; wait for
            # that before the group goes down, so that nothing written is lost.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            self._wait_until_closed(process, time.monotonic() + self.startup_timeout)
        stop_group(process)

    def _wait_until_closed(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        """Until Azurite says its services are closed (their data saved), or it exits."""
        while process.poll() is None and time.monotonic() < deadline:
            log = self._log_path.read_text(errors="replace") if self._log_path else ""
            if all(f"Azurite {name} service successfully closed" in log for name in _CLOSING):
                return
            time.sleep(0.02)

    def _command(self, ports: AzuritePorts) -> list[str]:
        if self.location is not None:
            self.location.mkdir(parents=True, exist_ok=True)
            storage = ["--location", str(self.location)]
        else:
            storage = ["--inMemoryPersistence", "--extentMemoryLimit", str(self.extent_memory_mb)]
        return [
            str(AZURITE_BIN),
            "--silent",
            *storage,
            "--disableTelemetry",
            "--skipApiVersionCheck",
            *("--blobHost", self.host, "--blobPort", str(ports.blob)),
            *("--queueHost", self.host, "--queuePort", str(ports.queue)),
            *("--tableHost", self.host, "--tablePort", str(ports.table)),
        ]

    def _wait_for_ports(self, deadline: float) -> AzuritePorts:
        """Read the ports Azurite reports ("successfully listening at ...") from its log."""
        assert self._process is not None and self._log_path is not None
        while True:
            found = {
                match["service"].lower(): int(match["port"])
                for match in _LISTENING.finditer(self._log_path.read_text(errors="replace"))
            }
            if all(service in found for service in SERVICES):
                return AzuritePorts(**found)
            if self._process.poll() is not None:
                raise AzuriteStartError(self._failure("exited during startup"))
            if time.monotonic() > deadline:
                raise AzuriteStartError(self._failure("did not report its ports in time"))
            time.sleep(0.02)

    def _wait_until_answering(self, deadline: float) -> None:
        for endpoint in (self.queue_endpoint, self.table_endpoint, self.blob_endpoint):
            while not _answers(endpoint):
                if time.monotonic() > deadline:
                    raise AzuriteStartError(self._failure(f"{endpoint} did not answer"))
                time.sleep(0.02)

    def _failure(self, what: str) -> str:
        log = self._log_path.read_text(errors="replace") if self._log_path else ""
        return f"Azurite {what}; its log ends with:\n{log[-2000:]}"


def _answers(endpoint: str) -> bool:
    """True once the service answers HTTP at all; an unsigned request gets an error status."""
    try:
        with urllib.request.urlopen(endpoint, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------- command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Azurite (queue and table, in memory) on loopback, in the foreground."
    )
    parser.add_argument(
        "--location", type=Path, help="keep the data on disk in this folder (default: in memory)"
    )
    parser.add_argument("--host", default=LOOPBACK, help=f"listen address (default {LOOPBACK})")
    for service, default in (("blob", 0), ("queue", 0), ("table", 0)):
        parser.add_argument(
            f"--{service}-port",
            type=int,
            default=default,
            help=f"{service} port (default 0: a free port; the standard one is "
            f"{10000 + SERVICES.index(service)})",
        )
    parser.add_argument(
        "--env-file",
        type=Path,
        help="also write AzureWebJobsStorage=<connection string> to this file",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve Azurite in the foreground until SIGINT or SIGTERM."""
    args = _parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ports = AzuritePorts(blob=args.blob_port, queue=args.queue_port, table=args.table_port)
    with Azurite(host=args.host, ports=ports, location=args.location) as azurite:
        if args.env_file:
            args.env_file.write_text(f"AzureWebJobsStorage={azurite.connection_string}\n")
        print(f"Azurite queue: {azurite.queue_endpoint}", flush=True)
        print(f"Azurite table: {azurite.table_endpoint}", flush=True)
        print(f"Azurite started in {azurite.startup_seconds:.2f} s", flush=True)
        print(f"AzureWebJobsStorage={azurite.connection_string}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
