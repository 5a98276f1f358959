"""The service's shape: packages by job, each importing only the layers below it.

The layers are the architecture (docs/architecture.md lists them and is checked against LAYERS
here): a module that needs something from a layer above is in the wrong place, and a cycle would
make the import order matter. Inside a package, modules import each other freely, without cycles.
Every package and top-level module is placed, so a new one is placed on purpose.
"""

import ast
import re
from pathlib import Path

from testbed.server import ROOT

SERVICE = ROOT / "service"

# From the bottom. A unit is a package of service/ or one of its top-level modules.
LAYERS = [
    "core",  # request state, WSGI responses, errors: imports nothing of the service
    "config",  # settings, secrets, prices, AWS clients
    "ops",  # logging, metrics, error reports
    "store",  # the Redis/Valkey client and its scripts
    "cache",  # the answer cache: keys, entries, Cache-Control, recording and replay
    "governance",  # client keys, limits, budgets, usage records
    "keys",  # the operators' key tool: python -m service.keys
    "gateway",  # routing, fallback, streams, providers
    "safety",  # student safety: policies, checks, PII, the stream filter
    "assessment",  # rubric grading
    "runtime",  # what the app holds
    "edge",  # the pipeline, bodies, routes, OpenAPI
    "app",  # create_app
    "server",  # gunicorn's configuration, the worker, start-up checks
    "__init__",  # the package's create_app, loading app lazily
]
MAX_LINES = 450  # a module longer than this holds more than one idea
MAX_TOP_LEVEL_MODULES = 5


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def unit(module: str) -> str:
    return module.split(".")[0]


def imports(path: Path, module: str) -> set[str]:
    """The service modules `path` imports (`from service.x import y` counts y when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("service"):
            base = node.module.removeprefix("service").removeprefix(".")
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                found.add(submodule if submodule in MODULES else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("service.") for a in node.names if a.name.startswith("service.")}
    return {name for name in found if name and name != module}


MODULES = {module_name(path): path for path in SERVICE.rglob("*.py")}
GRAPH = {module: imports(path, module) for module, path in MODULES.items()}


def test_every_package_and_top_level_module_has_a_layer():
    units = {unit(module) for module in MODULES}
    assert sorted(units - set(LAYERS)) == [], "place each new package in LAYERS"


def test_every_import_goes_down_the_layers():
    rank = {name: number for number, name in enumerate(LAYERS)}
    upward = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if unit(target) != unit(module) and rank[unit(target)] >= rank[unit(module)]
    ]
    assert upward == []


def test_no_import_cycle():
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done or module not in GRAPH:
            return None
        for target in sorted(GRAPH[module]):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    cycles = [cycle for module in sorted(GRAPH) if (cycle := visit(module, []))]
    assert cycles == [], " -> ".join(cycles[0])


def test_each_package_says_what_it_owns_and_may_import():
    for init in sorted(SERVICE.glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(docstring) > 200, f"{init.relative_to(ROOT)}: say what the package owns and imports"


def test_modules_stay_small_and_the_top_level_short():
    lines = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in MODULES.values()}
    long = {path: n for path, n in lines.items() if n > MAX_LINES}
    assert long == {}
    top = sorted(p.name for p in SERVICE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_the_docs_list_the_enforced_layers():
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\d+\. `([\w_]+)`", section, re.M)
    assert listed == LAYERS


def test_the_readme_layout_shows_the_packages():
    block = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    shown = set(re.findall(r"^  (\w+)/", block, re.M))
    packages = {p.parent.name for p in SERVICE.glob("*/__init__.py")}
    assert shown == packages
