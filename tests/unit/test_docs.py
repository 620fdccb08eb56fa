"""The README's settings table is the one in telephony/config/settings.py, row for row."""

from __future__ import annotations

import re
from pathlib import Path

from telephony.config.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def table_rows() -> list[list[str]]:
    text = README.read_text()
    table = re.search(r"<!-- settings-table.*?-->\n(.*?)<!-- /settings-table -->", text, re.S)
    assert table, "README has no settings table"
    lines = [line for line in table.group(1).splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def expected_row(spec) -> list[str]:  # type: ignore[no-untyped-def]
    secret = f"`{spec.secret_name}`" if spec.secret_name else "no"
    default = f"`{spec.default}`" if spec.default else ""
    return [f"`{spec.name}`", secret, default, spec.meaning]


def test_readme_settings_table_matches_the_code() -> None:
    assert table_rows() == [expected_row(spec) for spec in SETTINGS]
