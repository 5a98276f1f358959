"""The service's modules import only downwards: each layer uses the ones below it, never above.

The layers are the architecture (docs/architecture.md): a module that needs something from a
layer above it is a sign the code is in the wrong place, and a cycle would make the import order
matter. Every module of the package must be placed in a layer, so a new one is placed on purpose.
"""

import ast
from pathlib import Path

from testbed.server import ROOT

LAYERS = [
    # Plain building blocks: no imports from the rest of the service.
    "aws request_state answers escaping cpu cooldowns providers.http_pool assessment data prices shutdown "
    "redaction "
    "assessment.messages assessment.samples routes",
    "settings errors secrets logformat assessment.comments",
    "usage bodies limits metrics observability assessment.rubric providers providers.bedrock.translate",
    "prometheus shared_limits",
    "shared_cooldowns",
    "sse auth assessment.answers assessment.request providers.bedrock.stream routes.fields",
    # The providers, and the pure grading core.
    "providers.openai_compatible providers.bedrock.client assessment.voting assessment.grader keys startup",
    "providers.bedrock",
    "routing",
    "fallback runtime pipeline",
    "assessment.providers",
    # openapi describes the routes, with the assessment fields' limits.
    "routes.status routes.models routes.assessment routes.openai_api routes.limits routes.metrics openapi",
    "app",
    "__init__ server worker",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT / "service").with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("service"):
            if node.module == "service":
                found |= {alias.name for alias in node.names}
            else:
                found.add(node.module.removeprefix("service").removeprefix("."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("service.") for a in node.names if a.name.startswith("service.")}
    return found


def test_every_import_goes_down_the_layers():
    rank = {module: number for number, layer in enumerate(LAYERS) for module in layer.split()}
    modules = {module_name(path): path for path in (ROOT / "service").rglob("*.py")}
    assert sorted(set(modules) - set(rank)) == [], "place each new module in a layer"
    upward = [
        f"{module} imports {target}"
        for module, path in modules.items()
        for target in imports(path)
        if target and target != module and rank.get(target, -1) >= rank[module]
    ]
    assert upward == []
