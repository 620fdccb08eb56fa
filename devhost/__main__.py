"""``python -m devhost``: serve a Functions app like ``func start``, where Core Tools is missing.

A development tool only. Example::

    python -m devhost --app function_app:app --settings local.settings.json \\
        --host 127.0.0.1 --port 7071
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

from devhost.config import (
    DEFAULT_HTTP_PORT,
    ConfigError,
    HostConfig,
    apply_development_environment,
    load_host_json,
)
from devhost.config import load_local_settings as load_settings
from devhost.metadata import (
    HttpFunction,
    MetadataError,
    QueueFunction,
    TimerFunction,
    UnsupportedFunction,
    import_app,
    read_functions,
)
from devhost.queues import MESSAGE_LEASE_SECONDS
from devhost.server import listen, serve

logger = logging.getLogger("devhost")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost",
        description="Development host for an Azure Functions Python app (v2 programming "
        "model): HTTP triggers, Storage queue triggers and timer triggers, like `func start`. "
        "Not for production.",
        epilog='POST /admin/functions/{name} with {"input": ""} runs a timer or queue '
        "function now (202), as the host's admin API does; from loopback clients only.",
    )
    parser.add_argument(
        "--app", default="function_app:app", help="module:attribute (default function_app:app)"
    )
    parser.add_argument(
        "--app-dir", type=Path, default=Path(), help="directory put on sys.path (default .)"
    )
    parser.add_argument(
        "--settings",
        type=Path,
        default=Path("local.settings.json"),
        help="local.settings.json whose Values become environment variables unless set",
    )
    parser.add_argument(
        "--host-json", type=Path, help="host.json (default: the one next to the app module)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        help=f"HTTP port; 0 picks a free one (default: Host.LocalHttpPort of the settings "
        f"file, else {DEFAULT_HTTP_PORT})",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--message-lease",
        type=float,
        default=MESSAGE_LEASE_SECONDS,
        metavar="SECONDS",
        help="how long a received queue message stays invisible to other consumers, renewed "
        f"every half of it while its function runs (default {MESSAGE_LEASE_SECONDS}, as the "
        "host): after a crash, the host's messages come back this much later",
    )
    args = parser.parse_args(argv)
    if args.message_lease < 2:
        parser.error("--message-lease must be at least 2 seconds")
    return args


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="[%(asctime)s] %(message)s")
    if level != "debug":
        # The storage SDK logs every request at INFO, uvicorn its lifecycle: noise here.
        logging.getLogger("azure").setLevel(logging.WARNING)
        logging.getLogger("uvicorn").setLevel(logging.WARNING)


def _print_functions(
    host: str,
    port: int,
    config: HostConfig,
    http: list[HttpFunction],
    queues: list[QueueFunction],
    timers: list[TimerFunction],
) -> None:
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    lines = ["", "Functions:", ""]
    for function in http:
        methods = ",".join(function.methods) if function.methods else "*"
        path = "/".join(part for part in (config.route_prefix, function.route) if part)
        lines.append(f"        {function.name}: [{methods}] {base}/{path}")
    for queue in queues:
        lines.append(f"        {queue.name}: queue {queue.queue_name}")
    for timer in timers:
        upcoming = timer.schedule.next_after(datetime.now()).isoformat(sep=" ", timespec="seconds")
        lines.append(f"        {timer.name}: timer {timer.schedule} (next {upcoming})")
    lines += ["", f"Development host listening on {base} (Ctrl+C to stop)", ""]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Load settings and the app, serve it, return the exit status."""
    args = parse_args(argv)
    _configure_logging(args.log_level)
    environment = apply_development_environment()  # before the settings file, as Core Tools
    try:
        settings = load_settings(args.settings)
        sys.path.insert(0, str(args.app_dir.resolve()))
        app = import_app(args.app)
        module_file = sys.modules[args.app.partition(":")[0]].__file__ or "."
        config = load_host_json(args.host_json or Path(module_file).parent / "host.json")
        functions = read_functions(app, os.environ)
    except (ConfigError, MetadataError, ImportError) as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    logger.info("Environment: %s", environment)
    if settings.applied or settings.skipped:
        logger.info(
            "%s: %d settings loaded, %d already set in the environment (kept)",
            args.settings,
            len(settings.applied),
            len(settings.skipped),
        )
    http = [f for f in functions if isinstance(f, HttpFunction)]
    queues = [f for f in functions if isinstance(f, QueueFunction)]
    timers = [f for f in functions if isinstance(f, TimerFunction)]
    unsupported = [f for f in functions if isinstance(f, UnsupportedFunction)]
    for skipped in unsupported:
        if skipped.in_error:
            logger.error(
                "function %r is in error and will not run: %s", skipped.name, skipped.reason
            )
        else:
            logger.warning(
                "%s: not served here (%s); use `func start`", skipped.name, skipped.reason
            )
    if http:
        logger.info(
            "Function keys are not enforced locally (as with Core Tools): every auth level "
            "is served as anonymous."
        )
    port = args.port if args.port is not None else settings.local_http_port or DEFAULT_HTTP_PORT
    try:
        sock = listen(args.host, port)
    except OSError as exc:
        print(f"devhost: cannot listen on {args.host}:{port}: {exc}", file=sys.stderr)
        return 2
    bound = sock.getsockname()[1]  # the chosen one when --port 0
    try:
        asyncio.run(
            serve(
                config,
                http,
                queues,
                sock=sock,
                environ=os.environ,
                on_started=lambda: _print_functions(args.host, bound, config, http, queues, timers),
                message_lease=args.message_lease,
                timer_functions=timers,
                unsupported=unsupported,
            )
        )
    except MetadataError as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    finally:
        sock.close()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
