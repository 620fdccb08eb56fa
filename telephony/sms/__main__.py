"""Check an SMS rules document before it is deployed.

    python -m telephony.sms check [FILE]

FILE defaults to SMS_RULES_FILE (relative to the app's folder), else the shipped example.
Exit status: 0 when the file is usable, 1 when it has a problem (each on its own line).
Regex rules are compiled with RE2, as the app runs them: a pattern RE2 cannot run
(backreferences, lookarounds, possessive quantifiers...) or over its size budget is a
problem here, not a surprise in production.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from telephony.config.documents import app_file
from telephony.errors import SettingsError, SmsRulesError
from telephony.sms.rules import EXAMPLE_FILE, SmsRules, load_rules


def main(argv: Sequence[str] | None = None) -> int:
    """python -m telephony.sms check [FILE]: 0 when the file is valid, 1 if not."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m telephony.sms")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a rules file and list its problems")
    check.add_argument(
        "file",
        nargs="?",
        help=f"default: SMS_RULES_FILE (relative to the app folder), else {EXAMPLE_FILE}",
    )
    args = parser.parse_args(argv)
    path = Path(args.file) if args.file else _configured_path(os.environ)
    try:
        rules = load_rules(path)
    except SmsRulesError as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if not _guard(rules):
        return 1
    print(f"{path}: ok ({len(rules.rules)} rules)")
    return 0


def _guard(rules: SmsRules) -> bool:
    """The destination guard of the environment's settings, as the app applies it."""
    from telephony.container import build_container

    try:
        problems = build_container(os.environ).rules_guard_problems(rules)
    except SettingsError as exc:
        print(f"{rules.source}: destination guard not checked: {exc}", file=sys.stderr)
        return True
    for problem in problems:
        print(f"{rules.source}: {problem}", file=sys.stderr)
    return not problems


def _configured_path(env: Mapping[str, str]) -> Path:
    return app_file(env.get("SMS_RULES_FILE", "").strip() or EXAMPLE_FILE)


if __name__ == "__main__":
    raise SystemExit(main())
