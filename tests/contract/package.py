"""The deployment package as .funcignore shapes it: what `func azure functionapp publish`
and azd upload from the app's folder (every file but those a pattern matches)."""

from __future__ import annotations

import os
import shutil
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def patterns(root: Path = ROOT) -> list[str]:
    lines = (root / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, rules: list[str] | None = None) -> bool:
    """True when a .funcignore pattern matches the path or one of its parent folders."""
    rules = patterns() if rules is None else rules
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(fnmatch(prefix, pattern) for prefix in prefixes for pattern in rules)


def package_files(root: Path = ROOT, extra_ignores: list[str] | None = None) -> list[str]:
    """Every file of the app's folder that the package holds, relative to it."""
    rules = patterns(root) + (extra_ignores or [])
    found = []
    for folder, dirs, files in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        prefix = "" if base == "." else f"{base}/"
        dirs[:] = [d for d in dirs if not ignored(prefix + d, rules)]
        found += [prefix + name for name in files if not ignored(prefix + name, rules)]
    return sorted(found)


def build_package(
    destination: Path, root: Path = ROOT, extra_ignores: list[str] | None = None
) -> Path:
    """Copy the package's files into `destination` (created) and return it; `extra_ignores`
    are patterns added to .funcignore's."""
    for name in package_files(root, extra_ignores):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return destination
