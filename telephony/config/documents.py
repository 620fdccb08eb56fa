"""Configuration documents shipped with the app (call flows, SMS rules): where they are and
how they are read. YAML and JSON, chosen by the file's extension."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from telephony.errors import DocumentReadError

# The app's folder (where function_app.py is): relative document paths start here.
APP_ROOT = Path(__file__).resolve().parents[2]
YAML_SUFFIXES = frozenset({".yaml", ".yml"})
JSON_SUFFIXES = frozenset({".json"})


def app_file(name: str) -> Path:
    """`name` resolved against the app's folder (an absolute path is kept as it is)."""
    return APP_ROOT / name


def read_document(path: Path) -> object:
    """The parsed content of a .yaml, .yml or .json file; raises DocumentReadError."""
    suffix = path.suffix.lower()
    if suffix not in YAML_SUFFIXES | JSON_SUFFIXES:
        raise DocumentReadError("the file name must end in .yaml, .yml or .json")
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise DocumentReadError("the file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentReadError(f"the file cannot be read ({type(exc).__name__})") from None
    return _yaml(text) if suffix in YAML_SUFFIXES else _json(text)


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentReadError(f"not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _yaml(text: str) -> object:
    # Imported here: PyYAML costs cold-start time that most requests never need.
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed"
        raise DocumentReadError(f"not valid YAML ({line}{problem})") from None


@cache
def _loader() -> type:
    import yaml

    class KeysAsWritten(yaml.SafeLoader):
        """Reads every mapping key as written: a branch `1:` stays "1" and `yes:` stays
        "yes" (plain YAML would make them the integer 1 and the boolean True)."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            for key_node, _ in node.value:
                is_merge = key_node.tag == "tag:yaml.org,2002:merge"
                if isinstance(key_node, yaml.ScalarNode) and not is_merge:
                    key_node.tag = "tag:yaml.org,2002:str"
            return super().construct_mapping(node, deep)

    return KeysAsWritten
