"""The package's shape, as the code has it: adapters at the edge, no cycles, one docstring
per package. Each domain and service module is imported in a fresh interpreter, which must
end up with no SDK loaded; `python -m tests.package_shape` prints the same figures.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.package_shape import (
    PACKAGE,
    ROOT,
    TWIML,
    import_cycles,
    is_sdk,
    module_files,
    sdk_importers,
)

# Where an SDK may be imported, and which: the adapters any; the handlers only the
# Functions programming model; the flow renderer only Twilio's TwiML builders (a flow is
# TwiML, built with them directly).
EDGES = {
    f"{PACKAGE}.adapters": None,
    f"{PACKAGE}.handlers": ("azure.functions",),
    f"{PACKAGE}.flows.render": (TWIML,),
}
# Importing any module of flows runs flows/__init__, which loads the renderer.
LOADS_TWIML = f"{PACKAGE}.flows"


def edge_of(module: str) -> str | None:
    return next((edge for edge in EDGES if module == edge or module.startswith(edge + ".")), None)


def allowed(module: str, sdk: str) -> bool:
    edge = edge_of(module)
    if edge is None:
        return False
    roots = EDGES[edge]
    return roots is None or any(sdk == root or sdk.startswith(root + ".") for root in roots)


def test_the_package_has_no_import_cycles() -> None:
    assert import_cycles() == []


def test_only_the_edges_import_sdks() -> None:
    importers = sdk_importers()
    assert any(module.startswith(f"{PACKAGE}.adapters.") for module in importers)
    wrong = {
        module: [sdk for sdk in sdks if not allowed(module, sdk)]
        for module, sdks in importers.items()
    }
    assert {module: sdks for module, sdks in wrong.items() if sdks} == {}


PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(module: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


DOMAIN = sorted(module for module in module_files() if edge_of(module) is None)


def test_the_domain_is_most_of_the_package() -> None:
    assert {f"{PACKAGE}.outbound.service", f"{PACKAGE}.container", f"{PACKAGE}.errors"} <= set(
        DOMAIN
    )


def test_importing_a_domain_or_service_module_loads_no_sdk() -> None:
    with ThreadPoolExecutor(4) as pool:
        loaded = dict(zip(DOMAIN, pool.map(loaded_by, DOMAIN), strict=True))
    found = {
        module: sorted(
            {".".join(name.split(".")[:2]) for name in names if is_sdk(name, twiml=twiml)}
        )
        for module, names in loaded.items()
        for twiml in [not module.startswith(LOADS_TWIML)]
    }
    assert {module: sdks for module, sdks in found.items() if sdks} == {}


@pytest.mark.parametrize(
    "module", sorted(m for m, p in module_files().items() if p.name == "__init__.py")
)
def test_every_package_says_in_one_line_what_it_owns(module: str) -> None:
    docstring = ast.get_docstring(ast.parse(module_files()[module].read_text("utf-8")))
    assert docstring, module
    summary = docstring.split("\n\n", 1)[0]
    assert "\n" not in summary and summary.endswith("."), module
