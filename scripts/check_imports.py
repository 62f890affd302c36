"""The import rules of the repository, checked with the standard library only (`ast`).

    python scripts/check_imports.py            # the repository this script lives in
    python scripts/check_imports.py --root DIR

Three rules, each a failure (exit status 1) with one line per problem:

- **no import cycle** among the modules of the project's packages (`controller`,
  `edge_agent`, `protocol`, `provisioning`). Only imports that run when a module is
  loaded count: those at module level, in a class body, or in a module-level `if`, `try`
  or `with` block; an import inside a function runs later and one under
  `if TYPE_CHECKING:` never runs. `from package import name` points at the submodule
  `package.name` when there is one, else at the package.
- **no SQLAlchemy under the JSON API or the pages**: no module of `controller/api/` or
  `controller/pages/` imports `sqlalchemy`, anywhere in the file (a function body or a
  `TYPE_CHECKING` block too). Their queries belong to the domain modules beneath them.
- **imports point one way between the packages**: `protocol` imports none of the others;
  `edge_agent`, `controller` and `provisioning` import `protocol` and never each other
  (anywhere in the file, as above).

Exit status: 0 when both rules hold, 1 when one is broken, 2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

PACKAGES = ("controller", "edge_agent", "protocol", "provisioning")
_ONLY_PROTOCOL = "the packages share only protocol"
#: (directory relative to the root, a package its modules may not import, why).
FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    ("controller/api", "sqlalchemy", "use the domain modules"),
    ("controller/pages", "sqlalchemy", "use the domain modules"),
    *(
        ("protocol", other, "protocol is the base every other package builds on")
        for other in ("controller", "edge_agent", "provisioning")
    ),
    *(
        (package, other, _ONLY_PROTOCOL)
        for package in ("controller", "edge_agent", "provisioning")
        for other in ("controller", "edge_agent", "provisioning")
        if other != package
    ),
)


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module name, as written (absolute), and where."""

    target: str
    line: int
    at_load: bool  # runs when the importing module is loaded


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    is_package: bool
    imports: tuple[Import, ...]


class Unreadable(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of a `from ... import` (relative ones resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[Import]:
    def walk(body: Iterable[ast.stmt], at_load: bool) -> Iterator[Import]:
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(alias.name, node.lineno, at_load)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                for alias in node.names:
                    # `from a import b`: b is the submodule a.b when there is one (decided
                    # later, when every module is known), else a name in a.
                    name = f"{base}.{alias.name}" if alias.name != "*" else base
                    yield Import(name, node.lineno, at_load)
            elif isinstance(node, ast.If):
                yield from walk(node.body, at_load and not _is_type_checking(node.test))
                yield from walk(node.orelse, at_load)
            elif isinstance(node, ast.Try | ast.TryStar):
                for block in (node.body, node.orelse, node.finalbody):
                    yield from walk(block, at_load)
                for handler in node.handlers:
                    yield from walk(handler.body, at_load)
            elif isinstance(node, ast.With | ast.AsyncWith):
                yield from walk(node.body, at_load)
            elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
                yield from walk(node.body, at_load)
                yield from walk(node.orelse, at_load)
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, at_load)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(node.body, False)
            elif isinstance(node, ast.Match):
                for case in node.cases:
                    yield from walk(case.body, at_load)

    yield from walk(tree.body, True)


def modules(root: Path, packages: Sequence[str] = PACKAGES) -> dict[str, Module]:
    """Every module of `packages` found under `root`, by dotted name."""
    found: dict[str, Module] = {}
    for package in packages:
        top = root / package
        if not (top / "__init__.py").is_file():
            continue
        for path in sorted(top.rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            if any(not part.isidentifier() for part in relative.parts):
                continue  # not importable (e.g. a migrations script with a dash)
            is_package = relative.name == "__init__"
            parts = relative.parts[:-1] if is_package else relative.parts
            name = ".".join(parts)
            try:
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except (OSError, SyntaxError, ValueError) as exc:
                raise Unreadable(path, str(exc)) from exc
            found[name] = Module(name, path, is_package, tuple(_imports(tree, name, is_package)))
    return found


def _target(name: str, known: dict[str, Module]) -> str | None:
    """The project module an imported name loads: itself, or its longest known prefix."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def graph(known: dict[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {imported project module: line of the first such import}, load-time only."""
    edges: dict[str, dict[str, int]] = {}
    for module in known.values():
        out = edges.setdefault(module.name, {})
        for item in module.imports:
            if not item.at_load:
                continue
            target = _target(item.target, known)
            if target is not None and target != module.name:
                out.setdefault(target, item.line)
    return edges


def _components(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    return sorted(result)


def _shortest_cycle(edges: dict[str, dict[str, int]], members: list[str]) -> list[str]:
    """A shortest cycle through the first module of a component, as a path back to it."""
    inside = set(members)
    start = members[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges.get(node, {})):
                if child not in inside:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start, start]  # unreachable for a component of two or more


def cycles(known: dict[str, Module]) -> list[str]:
    """One line per import cycle: `a (line 3) -> b (line 9) -> a`."""
    edges = graph(known)
    lines = []
    for members in _components(edges):
        path = _shortest_cycle(edges, members)
        steps = [f"{a} (line {edges[a][b]})" for a, b in pairwise(path)]
        extra = f" [{len(members)} modules in this cycle: {', '.join(members)}]"
        lines.append(
            "import cycle: "
            + " -> ".join([*steps, path[-1]])
            + (extra if len(members) > len(path) - 1 else "")
        )
    return lines


def forbidden(root: Path, known: dict[str, Module]) -> list[str]:
    """One line per import of a package a directory may not use."""
    lines = []
    for module in sorted(known.values(), key=lambda m: m.name):
        where = module.path.relative_to(root).as_posix()
        for directory, banned, why in FORBIDDEN:
            if not where.startswith(directory + "/"):
                continue
            for item in module.imports:
                if item.target == banned or item.target.startswith(banned + "."):
                    lines.append(
                        f"{where}:{item.line}: imports {item.target}; modules under "
                        f"{directory}/ may not import {banned} ({why})"
                    )
    return lines


def check(root: Path, packages: Sequence[str] = PACKAGES) -> list[str]:
    """Every problem found under `root`, one line each (empty: the rules hold)."""
    known = modules(root, packages)
    return cycles(known) + forbidden(root, known)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the repository to check (default: the one holding this script)",
    )
    args = parser.parse_args(argv)
    try:
        problems = check(args.root)
    except Unreadable as exc:
        print(f"check_imports: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    if problems:
        print(f"check_imports: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
