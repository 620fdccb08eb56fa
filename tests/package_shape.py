"""The package's shape in figures, read from its source: what the architecture tests check.

    .venv/bin/python -m tests.package_shape

Prints the lines of every function the Functions host calls (median and max), the modules
that import an SDK (anywhere in the module, deferred imports included), the import
cycles between the package's modules, and the package's total lines.
"""

from __future__ import annotations

import ast
import inspect
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "telephony"
# The SDKs: clients that do I/O or hold credentials. The adapters are their only importers.
SDK_ROOTS = ("azure", "requests", "aiohttp", "urllib3", "twilio.rest", "twilio.http")
SDK_MODULES = ("twilio.base", "twilio.request_validator")
# Twilio's TwiML builders: no I/O, but still an SDK the domain does not need.
TWIML = "twilio.twiml"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(path: Path) -> Iterator[str]:
    """Every module `path` imports, at any depth of its code (TYPE_CHECKING included)."""
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def is_sdk(name: str, twiml: bool = True) -> bool:
    """Whether module `name` belongs to an SDK (`twiml`: count TwiML builders as one)."""
    roots = SDK_ROOTS + SDK_MODULES + ((TWIML,) if twiml else ())
    return any(name == root or name.startswith(root + ".") for root in roots)


def sdk_importers() -> dict[str, list[str]]:
    """The package's modules that import an SDK, each with the SDK modules it names."""
    found = {}
    for module, path in module_files().items():
        names = {n for n in imported_names(path) if is_sdk(n)}
        # `from a.b import C` also yields a.b.C: name the module only.
        names = sorted(n for n in names if not any(n.startswith(o + ".") for o in names))
        if names:
            found[module] = names
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name imported from a package that is
    one of its submodules counts as that submodule)."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {name for name in imported_names(path) if name in modules}
        # `from pkg import sub` names both pkg and pkg.sub: keep the most precise.
        graph[module] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
        graph[module].discard(module)
    return graph


def import_cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def handler_sizes() -> dict[str, int]:
    """Lines of each function the host calls (the wrapped handler of a signed webhook),
    from its `def` line to its last line."""
    sys.path.insert(0, str(ROOT))
    import function_app

    sizes = {}
    for function in function_app.app.get_functions():
        user = _innermost(function.get_user_function())
        lines, _ = inspect.getsourcelines(user)
        body = [line for line in lines if not line.lstrip().startswith("@")]
        sizes[function.get_function_name()] = len(body)
    return sizes


def _innermost(user: Callable[..., object]) -> Callable[..., object]:
    """The handler inside a wrapper that closes over one (the signed-webhook wrapper)."""
    for cell in user.__closure__ or ():
        content = cell.cell_contents
        if inspect.isfunction(content):
            return content
    return user


def package_lines() -> int:
    return sum(len(path.read_text("utf-8").splitlines()) for path in module_files().values())


def main() -> int:
    sizes = handler_sizes()
    print(
        f"handlers: {len(sizes)}, lines median {statistics.median(sizes.values()):g}, "
        f"max {max(sizes.values())}"
    )
    for name, lines in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"  {name}: {lines}")
    importers = sdk_importers()
    print(f"modules importing an SDK: {len(importers)}")
    for module, names in importers.items():
        print(f"  {module}: {', '.join(names)}")
    cycles = import_cycles()
    print(f"import cycles: {len(cycles)}")
    for cycle in cycles:
        print(f"  {' <-> '.join(cycle)}")
    print(f"modules: {len(module_files())}, lines: {package_lines()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
