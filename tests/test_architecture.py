"""The package's shape: no import cycle, and only the CLI package prints or parses arguments."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "eventlab"
CLI = PACKAGE / "cli"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The eventlab module ``name`` loads: itself, else the nearest package holding it."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every eventlab module ``module`` imports anywhere (top level, functions, TYPE_CHECKING).

    ``from eventlab.shop import events`` depends on the module ``eventlab.shop.events``;
    the package ``__init__`` Python runs first is not counted (a package importing its own
    submodules is how packages are built, not a cycle).
    """
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            names = subs if len(subs) == len(node.names) else [*subs, base]
        else:
            continue
        for name in names:
            target = _resolve(name, known) if name.split(".")[0] == "eventlab" else None
            if target is not None and target != module:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other round a loop (each sorted)."""
    reach = {node: _reach(graph, node) for node in graph}
    loops = {
        tuple(sorted(m for m in reach[node] if node in reach[m]))
        for node in graph
        if node in reach[node]
    }
    return [list(loop) for loop in sorted(loops)]


def test_no_import_cycle_in_the_package():
    """No two eventlab modules import each other, directly or round a loop (lazy imports count)."""
    graph = _graph()
    assert "eventlab.consumer._engine" in graph  # the walk sees the packages' modules
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a two-module loop is reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_library_modules_do_not_parse_arguments():
    """Only eventlab/cli/ imports argparse: library modules take keyword arguments."""
    offenders = []
    known = _modules()
    for name, path in known.items():
        if path.is_relative_to(CLI):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            imported = (
                [a.name for a in node.names] if isinstance(node, ast.Import) else
                [node.module] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            if "argparse" in imported:
                offenders.append(name)
    assert offenders == []


def test_print_is_allowed_only_in_the_cli_package():
    """Ruff's T201 (print) is waived for eventlab/cli/ alone, and no module silences it inline."""
    root = SRC.parent
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    waivers = [line for line in pyproject.splitlines() if '"T201"' in line and "src/" in line]
    assert waivers == [
        '"src/eventlab/cli/**" = ["T201"]  # a command prints; nothing outside the CLI package does'
    ]
    silenced = [
        str(p.relative_to(root))
        for p in PACKAGE.rglob("*.py")
        if not p.is_relative_to(CLI) and "noqa: T201" in p.read_text(encoding="utf-8")
    ]
    assert silenced == []


LAYERS = (
    (
        "foundations",
        {"_errors", "_env", "_show", "_poll", "_lua", "envelope", "__init__"},
    ),
    (
        "runtime",
        {
            "broker",
            "cluster",
            "streams",
            "processes",
            "consumer",
            "metrics",
            "backpressure",
            "schema",
            "_crash",
            "eventstore",
            "versions",
        },
    ),
    (
        "faults and verdicts",
        {
            "_proxy",
            "faults",
            "history",
            "checker",
            "freshness",
            "reconcile",
            "reservations",
            "sla",
            "scenarios",
            "_scenario_workers",
        },
    ),
    ("shop", {"shop", "contracts"}),
    ("delivery", {"workshop", "doctor", "_jupyter", "_jupyter_config"}),
    (
        "course tooling",
        {
            "course",
            "quiz",
            "exercises",
            "demos",
            "charts",
            "dashboard",
            "labs",
            "grading",
            "_grader_child",
            "_labkit",
            "_faultproxy",
            "tracing",
        },
    ),
    ("cli", {"cli"}),
)
"""The groups of docs/architecture.md, in the order imports may go (a group uses earlier ones)."""


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{module} is in no group of LAYERS: add it (docs/architecture.md)")


def test_imports_go_one_way_between_the_groups():
    """No module imports one from a later group (the runtime never imports a lesson or a fault)."""
    backwards = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert backwards == []


def test_every_environment_variable_is_documented():
    """docs/architecture.md lists every variable eventlab._env reads."""
    from eventlab import _env  # noqa: PLC0415

    text = (SRC.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert [name for name in _env.VARIABLES if f"`{name}`" not in text] == []
