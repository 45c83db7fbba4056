"""The layers hold: the analysis and the storage know nothing of Dagster, and no module imports
itself round a circle."""

from __future__ import annotations

import ast
import subprocess
import sys

from loan_pipeline_tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "loan_pipeline"
# what must import without Dagster: the pure analysis, the storage, and the names they share
DAGSTER_FREE = [
    *(f"loan_pipeline.core.{p.stem}" for p in sorted((PACKAGE / "core").glob("*.py"))),
    *(f"loan_pipeline.store.{p.stem}" for p in sorted((PACKAGE / "store").glob("*.py"))),
    "loan_pipeline.domain",
    "loan_pipeline.columns",
    "loan_pipeline.schemas",
]


# The libraries those modules use, imported once by the parent of the forked children below so
# each child pays only for the project's own modules; none of them loads Dagster (asserted).
SHARED_LIBRARIES = ["numpy", "pandas", "pyarrow", "scipy", "sklearn", "pandera", "duckdb"]

CHECK = """
import importlib, os, sys, traceback
for library in sys.argv[1].split(","):
    importlib.import_module(library)
assert "dagster" not in sys.modules, "a shared library loaded Dagster"
for module in sys.argv[2:]:
    pid = os.fork()
    if pid == 0:  # a fresh child: nothing of the project imported yet
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(2 if "dagster" in sys.modules else 0)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print(module, {0: "clean", 2: "loads dagster"}.get(code, "failed to import"))
"""


def test_core_and_store_import_without_dagster():
    """Each module imported alone, in a child forked from an interpreter that holds only the
    shared third-party libraries (an earlier project import cannot hide a leak)."""
    out = subprocess.run(
        [sys.executable, "-c", CHECK, ",".join(SHARED_LIBRARIES), *DAGSTER_FREE],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert out.returncode == 0, out.stderr
    verdicts = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert verdicts == dict.fromkeys(DAGSTER_FREE, "clean"), out.stderr


def _module_of(path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (at the top or inside functions)."""
    modules = {_module_of(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circles():
    graph = _imports()
    assert "loan_pipeline.store.snapshots" in graph  # the walk sees the package
    assert _circle(graph) is None, " -> ".join(_circle(graph))


def test_the_circle_finder_finds_one():
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None
