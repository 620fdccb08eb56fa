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


PACKAGE = README.parent / "telephony"


def package_map() -> list[str]:
    """The paths the README's package map names, in order (folders end in /)."""
    text = README.read_text()
    block = re.search(r"<!-- package-map.*?-->\n```\n(.*?)```\n<!-- /package-map -->", text, re.S)
    assert block, "README has no package map"
    paths, folders = [], []
    for line in block.group(1).splitlines():
        indent = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        folders = folders[:indent]
        if name.endswith("/"):
            folders.append(name)
        paths.append("".join(folders[:indent]) + name)
    return paths


def test_readme_package_map_names_every_module_once() -> None:
    named = [path for path in package_map() if path.endswith(".py")]
    modules = sorted(
        str(path.relative_to(README.parent))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" or path.parent.name in ("schemas", "events")
    )
    assert len(named) == len(set(named))
    assert sorted(p for p in named if p.startswith("telephony/")) == modules


def test_readme_package_map_names_every_package() -> None:
    folders = {path for path in package_map() if path.endswith("/")}
    packages = {f"{p.parent.relative_to(README.parent)}/" for p in PACKAGE.rglob("__init__.py")}
    assert folders == packages
