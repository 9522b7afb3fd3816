"""The package's import graph, layer by layer, and the rules it must keep (`make structure`).

Every `from . import x` / `from .x import y` in quantize/, at module level or inside a function, is an edge; a
sub-package (`cli`, `reference`) counts as one node. Printed bottom-up: a module sits one layer above the highest
module it imports. Exit 1 when the graph has a cycle, when anything imports `cli` or `cli` is not the top layer,
when `contract` imports one of the modules that rely on it, when one of them does not import it, or when a module
is longer than MAX_MODULE_LINES or a function than MAX_FUNCTION_LINES.

    python -m tools.structure [--dot]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "quantize"
CONTRACT_USERS = ("validate", "recipe_file", "loaded", "smoke", "serve", "card")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def node(parts: list[str]) -> str:
    """A module's node: its first name under quantize/ (`cli.smoke` -> `cli`, `reference.model` -> `reference`,
    `stream` -> `stream`)."""
    return parts[0] if parts else ""


def imports(path: Path) -> set[str]:
    """The package modules `path` imports, as nodes."""
    package = list(path.relative_to(PACKAGE).parts[:-1])  # the sub-package `path` is in ([] at the top)
    found = set()
    for stmt in ast.walk(ast.parse(path.read_text())):
        if not isinstance(stmt, ast.ImportFrom):
            continue
        if stmt.level == 0:  # absolute: only `from quantize.x import ...` is the package's
            names = (stmt.module or "").split(".")
            if names[0] == "quantize":
                found.add(node(names[1:]))
            continue
        base = package[: len(package) - stmt.level + 1]  # `.` is the file's package, each further dot one up
        targets = [stmt.module.split(".")] if stmt.module else [[alias.name] for alias in stmt.names]
        found.update(node(base + target) for target in targets)
    return found - {""}


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        name = node(parts)
        if name in ("__init__", "__main__") or not name:
            continue
        edges.setdefault(name, set()).update(imports(path) - {name, "__init__"})
    return edges


def layers(edges: dict[str, set[str]]) -> tuple[dict[str, int], list[str]]:
    """Each node's layer (0: imports nothing of the package), and the nodes on a cycle (no layer)."""
    level: dict[str, int] = {}
    remaining = dict(edges)
    while remaining:
        ready = [n for n, deps in remaining.items() if all(d in level for d in deps if d in edges)]
        if not ready:
            return level, _on_cycles(remaining)
        for n in ready:
            level[n] = 1 + max((level[d] for d in remaining[n] if d in level), default=-1)
            del remaining[n]
    return level, []


def _on_cycles(remaining: dict[str, set[str]]) -> list[str]:
    """Of the nodes left without a layer, those on a cycle: peel off the ones nothing left imports."""
    left = dict(remaining)
    while top := [n for n in left if not any(n in deps for deps in left.values())]:
        for n in top:
            del left[n]
    return sorted(left)


def problems(edges: dict[str, set[str]], level: dict[str, int], cyclic: list[str]) -> list[str]:
    found = [f"import cycle among: {', '.join(cyclic)}"] if cyclic else []
    found += [f"{n} imports cli: only the command line may" for n, deps in edges.items() if "cli" in deps]
    found += [f"contract imports {d}, which relies on it" for d in edges.get("contract", ()) if d in CONTRACT_USERS]
    found += [f"{u} does not import contract" for u in CONTRACT_USERS if u in edges and "contract" not in edges[u]]
    if not cyclic and level.get("cli") != max(level.values()):
        found.append("cli is not the top layer")
    return found


def too_long(paths) -> list[str]:
    """The modules over MAX_MODULE_LINES lines and the functions over MAX_FUNCTION_LINES (decorators excluded)."""
    found = []
    for path in paths:
        text = path.read_text()
        name = path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE.parent) else path
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            found.append(f"{name} has {lines} lines (at most {MAX_MODULE_LINES})")
        functions = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for fn in functions:
            if (lines := fn.end_lineno - fn.lineno + 1) > MAX_FUNCTION_LINES:
                found.append(f"{name}:{fn.lineno} {fn.name}() has {lines} lines (at most {MAX_FUNCTION_LINES})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", action="store_true", help="print the graph in Graphviz dot instead")
    args = parser.parse_args(argv)
    edges = graph()
    level, cyclic = layers(edges)
    if args.dot:
        print("digraph quantize {\n  rankdir=BT;")
        for n in sorted(edges):
            for d in sorted(edges[n]):
                print(f'  "{n}" -> "{d}";')
        print("}")
    else:
        for i in range(max(level.values(), default=-1), -1, -1):
            names = sorted(n for n, lv in level.items() if lv == i)
            print(f"{i:2d}  {'  '.join(names)}")
    found = problems(edges, level, cyclic) + too_long(sorted(PACKAGE.rglob("*.py")))
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
