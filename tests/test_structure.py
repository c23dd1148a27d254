"""The shape of the sta package, read from its source with ast (nothing of sta is imported).

Each rule is one test, and a failure lists every place that breaks it, so one run shows all the
work left: no import cycle among sta's modules (imports under ``if TYPE_CHECKING:`` and inside
functions count: they are cycles a reader still has to untangle), modules and functions that
fit on a screen or a few, one class per name, a test module per module, and protocol modules
that do no I/O and read no clock (the caller owns sockets, threads and time, as in h11).
"""

from __future__ import annotations

import ast
import os
import re
import unittest
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "sta"
PACKAGE_DIR = os.path.join(ROOT, PACKAGE)
TESTS_DIR = os.path.join(ROOT, "tests")

# One module, one idea: past this a module holds more than one (STYLE.md, "under about 600").
MAX_MODULE_LINES = 600
# A function longer than this no longer fits on a screen with its docstring (STYLE.md).
MAX_FUNCTION_LINES = 70
# Modules with no test module of their own: the package marker and the `python -m` launcher.
NO_TEST_NEEDED = {"__init__", "__main__"}

# Sans-IO modules: bytes and plain values in, bytes and decisions out (DESIGN.md). A module whose
# name says it is a codec or the peer protocol counts as one too.
PROTOCOL_MODULES = {
    "bencode", "wire", "magnet", "metainfo", "picker", "availability", "bitfield", "choker",
    "superseed", "trackers", "trackerproto", "udptrackerproto", "ut_metadata", "extension", "mse",
    "krpc", "dht_routing", "dht_lookup", "dht_store", "lsd", "utpproto", "utpcodec", "ledbat",
}
PROTOCOL_NAME_PATTERN = re.compile(r"peerproto|codec|ut_metadata")
# What a protocol module may not import: sockets, event loops, TLS, threads, processes, HTTP and
# the clock. Time comes from the caller as a number.
IO_MODULES = {"socket", "asyncio", "ssl", "selectors", "threading", "subprocess", "http",
              "urllib", "time"}
# Parts of those packages that are plain string handling: splitting and quoting URLs opens nothing.
PURE_SUBMODULES = {"urllib.parse"}

Edge = Tuple[str, int]  # (imported module, line of the import)


def module_files() -> Dict[str, str]:
    """Dotted name -> path, for every .py file of the package (sub-packages included)."""
    found: Dict[str, str] = {}
    for folder, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(folder, ROOT).split(os.sep)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            stem = name[:-3]
            parts = rel if stem == "__init__" else rel + [stem]
            found[".".join(parts)] = os.path.join(folder, name)
    return found


MODULES = module_files()
_TREES: Dict[str, ast.Module] = {}
_SOURCES: Dict[str, str] = {}


def source(module: str) -> str:
    if module not in _SOURCES:
        with open(MODULES[module], encoding="utf-8") as f:
            _SOURCES[module] = f.read()
    return _SOURCES[module]


def tree(module: str) -> ast.Module:
    if module not in _TREES:
        _TREES[module] = ast.parse(source(module), MODULES[module])
    return _TREES[module]


def display(module: str) -> str:
    """The module's path relative to the project, for messages."""
    return os.path.relpath(MODULES[module], ROOT).replace(os.sep, "/")


def is_package(module: str) -> bool:
    return MODULES[module].endswith("__init__.py")


def resolve_from(module: str, node: ast.ImportFrom) -> Optional[str]:
    """The absolute dotted name a ``from ... import`` reads from, or None outside the package."""
    if node.level == 0:
        return node.module
    base = module.split(".")
    if not is_package(module):
        base = base[:-1]
    if node.level > 1:
        base = base[:-(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> Iterator[Tuple[str, int]]:
    """Every (absolute module name, line) imported anywhere in ``module``: at the top, under
    ``if TYPE_CHECKING:``, inside functions and classes. ``from P import name`` yields P.name
    when that is a module, else P."""
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = resolve_from(module, node)
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in MODULES else target), node.lineno


def import_graph() -> Dict[str, Dict[str, int]]:
    """Module -> {package module it imports: first line}. A module's own package marker is left
    out (Python runs it before any submodule, so it is never part of a real cycle), and so is a
    module importing itself."""
    graph: Dict[str, Dict[str, int]] = {}
    for module in MODULES:
        edges: Dict[str, int] = {}
        for target, line in imports_of(module):
            while target and target not in MODULES:  # `import sta.x.y` where y is a name
                target = target.rpartition(".")[0]
            if not target or target == module or (is_package(target)
                                                    and module.startswith(target + ".")):
                continue
            edges.setdefault(target, line)
        graph[module] = edges
    return graph


def strongly_connected(graph: Dict[str, Dict[str, int]]) -> List[List[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); components of two or more modules."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    result: List[List[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: List[Tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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


def shortest_cycle(graph: Dict[str, Dict[str, int]], component: List[str]) -> List[str]:
    """One shortest cycle through the component's first module, by breadth-first search."""
    members = set(component)
    start = component[0]
    previous: Dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component  # unreachable for a strongly connected component


def functions(node: ast.AST, prefix: str = "") -> Iterator[Tuple[str, ast.AST]]:
    """(qualified name, node) of every function and method, nested ones included."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + child.name
            yield name, child
            yield from functions(child, name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from functions(child, prefix + child.name + ".")
        else:
            yield from functions(child, prefix)


_CLASS_FACTORIES = {"NamedTuple", "namedtuple", "TypedDict", "NewType", "Enum", "IntEnum"}


def classes(module: str) -> Iterator[Tuple[str, int]]:
    """(name, line) of every class the module defines: class statements, nested ones included,
    and classes made by a call such as ``Have = NamedTuple("Have", ...)``."""
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.ClassDef):
            yield node.name, node.lineno
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _CLASS_FACTORIES:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        yield target.id, node.lineno


def is_io_import(target: str) -> bool:
    """True when importing ``target`` brings in sockets, threads, processes or the clock."""
    return target.partition(".")[0] in IO_MODULES and target not in PURE_SUBMODULES


def short_name(module: str) -> str:
    return module.rpartition(".")[2] if not is_package(module) else "__init__"


def is_protocol_module(module: str) -> bool:
    name = short_name(module)
    return name in PROTOCOL_MODULES or bool(PROTOCOL_NAME_PATTERN.search(name))


class PackageStructureTests(unittest.TestCase):
    def report(self, problems: List[str], title: str) -> None:
        """Fail with every problem on its own line (none: pass)."""
        if problems:
            self.fail(f"{title} ({len(problems)}):\n  " + "\n  ".join(problems))

    def test_package_is_found(self) -> None:
        self.assertIn(PACKAGE, MODULES, f"no package at {PACKAGE_DIR}")
        self.assertGreater(len(MODULES), 10, "the package seems to be missing its modules")

    def test_no_import_cycle_among_modules(self) -> None:
        graph = import_graph()
        problems = []
        for component in strongly_connected(graph):
            cycle = shortest_cycle(graph, component)
            steps = ", ".join(f"{display(a)}:{graph[a][b]} imports {short_name(b)}"
                              for a, b in zip(cycle, cycle[1:]))
            inside = "; ".join(f"{display(a)}:{line} imports {short_name(b)}"
                               for a in component for b, line in sorted(graph[a].items())
                               if b in component)
            problems.append(f"cycle among {', '.join(short_name(m) for m in component)}: "
                            f"shortest {steps}; every import inside it: {inside}")
        self.report(problems, "import cycles (imports inside functions and under TYPE_CHECKING "
                    "count)")

    def test_no_module_is_too_long(self) -> None:
        problems = []
        for module in sorted(MODULES):
            lines = len(source(module).splitlines())
            if lines > MAX_MODULE_LINES:
                problems.append(f"{display(module)}: {lines} lines")
        self.report(problems, f"modules over {MAX_MODULE_LINES} lines")

    def test_no_function_is_too_long(self) -> None:
        problems = []
        for module in sorted(MODULES):
            for name, node in functions(tree(module)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{display(module)}:{node.lineno} {name}: {length} lines")
        self.report(problems, f"functions over {MAX_FUNCTION_LINES} lines")

    def test_no_two_classes_share_a_name(self) -> None:
        seen: Dict[str, List[str]] = {}
        for module in sorted(MODULES):
            for name, line in classes(module):
                seen.setdefault(name, []).append(f"{display(module)}:{line}")
        problems = [f"{name}: {', '.join(places)}" for name, places in sorted(seen.items())
                    if len(places) > 1]
        self.report(problems, "class names defined more than once")

    def test_every_module_has_a_test_module(self) -> None:
        problems = []
        for module in sorted(MODULES):
            name = short_name(module)
            if name in NO_TEST_NEEDED:
                continue
            expected = os.path.join(TESTS_DIR, f"test_{name}.py")
            if not os.path.exists(expected):
                problems.append(f"{display(module)}: no tests/test_{name}.py")
        self.report(problems, "modules without a test module")

    def test_no_file_holds_a_merge_conflict_marker(self) -> None:
        marked = []
        for folder, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            for name in files:
                if name.endswith((".py", ".md", ".html", ".js", ".css", ".txt")) \
                        or name in ("Makefile", "run"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8", errors="replace") as f:
                        for number, line in enumerate(f, 1):
                            if re.match(r"(<{7}|>{7})( |$)|={7}$", line.rstrip("\n")):
                                marked.append("%s:%d" % (os.path.relpath(path, ROOT), number))
        self.assertEqual(marked, [], "unresolved merge conflicts")

    def test_protocol_modules_do_no_io_and_read_no_clock(self) -> None:
        problems = []
        checked = [m for m in sorted(MODULES) if is_protocol_module(m)]
        for module in checked:
            for target, line in imports_of(module):
                if is_io_import(target):
                    problems.append(f"{display(module)}:{line} imports {target}")
        self.assertTrue(checked, "no protocol module found: is PROTOCOL_MODULES up to date?")
        self.report(problems, "protocol modules must leave I/O, threads and the clock to the "
                    "caller")

    def test_protocol_modules_reach_no_io_through_other_modules(self) -> None:
        graph = import_graph()
        direct = {m: [(t, line) for t, line in imports_of(m) if is_io_import(t)] for m in MODULES}
        problems = []
        for module in sorted(m for m in MODULES if is_protocol_module(m)):
            previous: Dict[str, str] = {module: ""}
            frontier = [module]
            while frontier:  # breadth first: the shortest chain to each module
                following = []
                for node in frontier:
                    for child in sorted(graph[node]):
                        if child not in previous:
                            previous[child] = node
                            following.append(child)
                frontier = following
            for reached in sorted(previous):
                if reached == module or not direct[reached]:
                    continue
                chain = [reached]
                while previous[chain[-1]] != module:
                    chain.append(previous[chain[-1]])
                chain.append(module)
                steps = " -> ".join(short_name(m) for m in reversed(chain))
                target, line = direct[reached][0]
                problems.append(f"{display(module)} reaches {target} through {steps} "
                                f"({display(reached)}:{line})")
        self.report(problems, "protocol modules importing a module that does I/O")


class CheckerSelfTests(unittest.TestCase):
    """The checks above find what they claim to, on small made-up graphs and sources."""

    def test_cycle_finder_reports_a_cycle_and_ignores_a_chain(self) -> None:
        graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}, "e": {}}
        self.assertEqual(strongly_connected(graph), [["a", "b", "c"]])
        self.assertEqual(shortest_cycle(graph, ["a", "b", "c"]), ["a", "b", "c", "a"])
        self.assertEqual(strongly_connected({"a": {"b": 1}, "b": {}}), [])

    def test_shortest_cycle_prefers_the_direct_pair(self) -> None:
        graph = {"a": {"b": 1, "c": 1}, "b": {"a": 2}, "c": {"b": 3}}
        self.assertEqual(shortest_cycle(graph, ["a", "b", "c"]), ["a", "b", "a"])

    def test_imports_inside_functions_and_type_checking_are_seen(self) -> None:
        code = ("from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from .peer import PeerConnection\n"
                "def f():\n    from . import session\n    import sta.wire\n"
                "from sta.bencode import encode\n")
        module = "sta._made_up"
        _TREES[module] = ast.parse(code)
        MODULES[module] = os.path.join(PACKAGE_DIR, "_made_up.py")
        try:
            found = {target for target, _ in imports_of(module)}
        finally:
            del _TREES[module], MODULES[module]
        self.assertTrue({"sta.peer", "sta.session", "sta.wire", "sta.bencode"} <= found, found)

    def test_url_parsing_is_not_io_but_fetching_is(self) -> None:
        self.assertFalse(is_io_import("urllib.parse"))
        self.assertTrue(is_io_import("urllib.request"))
        self.assertTrue(is_io_import("urllib"))
        self.assertTrue(is_io_import("http.client"))
        self.assertFalse(is_io_import("ipaddress"))

    def test_functional_named_tuples_count_as_classes(self) -> None:
        module = "sta._made_up"
        _TREES[module] = ast.parse("Have = NamedTuple('Have', [])\nclass Piece:\n    pass\n")
        MODULES[module] = os.path.join(PACKAGE_DIR, "_made_up.py")
        try:
            self.assertEqual(sorted(classes(module)), [("Have", 1), ("Piece", 2)])
        finally:
            del _TREES[module], MODULES[module]


if __name__ == "__main__":
    unittest.main()
