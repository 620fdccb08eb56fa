"""Check call flow documents before they are deployed.

    python -m telephony.flows check [FILE ...]

FILE defaults to CALL_FLOWS_FILE (or its default), relative to the app's folder. When
VOICE_FLOW is set, it must name a flow of the document that declares no data (an inbound
call brings none). Exit status: 0 when every file is usable, 1 when any has a problem
(each listed on its own line).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from telephony.config.documents import app_file
from telephony.config.settings import SETTINGS_BY_NAME
from telephony.errors import FlowDocumentError, SettingsError
from telephony.flows.document import load_flow_book
from telephony.flows.model import FlowBook


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m telephony.flows")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate call flow documents")
    check.add_argument("files", nargs="*", metavar="FILE", help="default: CALL_FLOWS_FILE")
    args = parser.parse_args(argv)
    default = env.get("CALL_FLOWS_FILE") or SETTINGS_BY_NAME["CALL_FLOWS_FILE"].default
    files = args.files or [str(app_file(default or ""))]
    voice_flow = env.get("VOICE_FLOW", "").strip() or None
    results = [_check(name, voice_flow, env) for name in files]
    return 0 if all(results) else 1


def _check(name: str, voice_flow: str | None, env: Mapping[str, str]) -> bool:
    try:
        book = load_flow_book(app_file(name))
    except FlowDocumentError as exc:
        print(exc.summary, file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return False
    if voice_flow is not None and voice_flow not in book:
        message = f"VOICE_FLOW names flow {voice_flow!r}, which the document does not define"
        print(f"{book.source}: {message}", file=sys.stderr)
        return False
    if voice_flow is not None and book.flows[voice_flow].data is not None:
        message = f"VOICE_FLOW names flow {voice_flow!r}: it needs data, which inbound calls lack"
        print(f"{book.source}: {message}", file=sys.stderr)
        return False
    if not _guard(book, env):
        return False
    print(f"{book.source}: ok ({len(book.flows)} flows: {', '.join(book.flows)})")
    return True


def _guard(book: FlowBook, env: Mapping[str, str]) -> bool:
    """The destination guard of these settings, as the app applies it when it loads."""
    from telephony.container import build_container

    try:
        problems = build_container(env).flow_guard_problems(book)
    except SettingsError as exc:
        print(f"{book.source}: destination guard not checked: {exc}", file=sys.stderr)
        return True
    for problem in problems:
        print(f"{book.source}: {problem}", file=sys.stderr)
    return not problems


if __name__ == "__main__":
    sys.exit(main())
