"""The package's shape: subpackages one level deep, a flat set of single modules, no cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import auditlog

PACKAGE = Path(auditlog.__file__).parent
FLAT = {
    "__init__",
    "__main__",
    "model",
    "source",
    "columns",
    "canonical",
    "store",
    "groupcommit",
    "settings",
    "errors",
    "diff",
    "charts",
    "access",
    "selfaudit",
    "demo",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("auditlog", *parts)).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every auditlog module ``name`` imports, at module level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
    return {m for m in out if m in modules and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    # The root package's public API imports its parts; the parts do not import it back.
    return {n: _imports(n, p, modules) - {"auditlog"} for n, p in modules.items()}


def test_package_has_no_import_cycles() -> None:
    assert _cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_subpackages_are_one_level_deep_and_single_modules_stay_flat() -> None:
    for name in _modules():
        parts = name.split(".")[1:]
        assert len(parts) <= 2, f"{name}: subpackages are one level deep"
        if len(parts) == 1:
            assert parts[0] in FLAT or (PACKAGE / parts[0]).is_dir(), name
    assert not (PACKAGE / "utils").exists()


def test_core_never_imports_streamlit() -> None:
    for name, path in _modules().items():
        tree = ast.parse(path.read_text("utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[0] == "streamlit" for m in names), name


def test_public_api_is_chosen_in_the_package() -> None:
    assert set(auditlog.__all__) == {
        "AuditLog",
        "Filters",
        "verify_database",
        "AuditLogError",
        "__version__",
    }
    assert auditlog.__version__[0].isdigit()


def test_python_dash_m_auditlog_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auditlog", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    for command in ("ingest", "verify", "export", "retention", "siem", "stream"):
        assert command in done.stdout
