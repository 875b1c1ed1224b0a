"""Conventions of `app/` that a reviewer should not have to remember, checked over its syntax.

In the manner of Polar's AST lint rules: every module of `app/` is parsed with `ast` and
four rules are checked, each naming the offending file and line:

- no import cycles between modules (every import counts, under `TYPE_CHECKING` or inside a
  function as much as at the top);
- no import from a higher layer (`LAYERS`), and packages of one layer import each other
  only one way;
- the per-request context stays typed: only `app/deps.py` reads it out of the scope, only
  the edge puts it there, and nothing else is written into the scope or `request.state`;
- each client or engine is created in its one place (`CONSTRUCTORS`).

Each rule is a plain function of a root directory (the one holding the `app` package) that
returns its violations as `path:line: what is wrong`; the same functions check the real
tree and, further down, small trees with a violation planted in them.
"""

import ast
import itertools
import textwrap
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "app"

# The layers, lowest first: a module may import its own layer and those below, never one
# above. A module belongs to the longest entry its name starts with. `app.traffic` sits
# below `app.upstreams` because the resilient caller uses its breaker, bulkhead and retry
# primitives.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("app.settings", "app.errors", "app.observability", "app.domain", "app.problems"),
    ("app.shared",),
    ("app.traffic", "app.cache"),
    ("app.store",),
    ("app.discovery",),
    ("app.upstreams",),
    ("app.security",),
    # Streams sit on the policy chain: a stream's credential is confirmed through it.
    ("app.policy", "app.streams"),
    ("app.state", "app.deps"),
    (
        "app.frontends",
        "app.admin",
        "app.auth",
        "app.middleware",
        "app.passthrough",
        "app.health",
        "app.metrics",
        "app.openapi",
        "app.portal",
    ),
    ("app.main", "app.asgi", "app.serve", "app.openapi_export", "app.cli"),
)

# The per-request context's key in the ASGI scope, the module defining it, the modules that
# may use it: the dependency module reads the context, the edge creates it.
CONTEXT_KEY = "CONTEXT_SCOPE_KEY"
CONTEXT_KEY_HOME = "app/policy/context.py"
CONTEXT_KEY_USERS = frozenset({"app/deps.py", "app/middleware/edge.py"})
# The one write into the scope: the edge putting the context there.
SCOPE_WRITER = "app/middleware/edge.py"
# Names a request (or other connection) goes by, for `<request>.state`.
REQUEST_NAMES = frozenset({"request", "req", "websocket", "connection", "conn"})


@dataclass(frozen=True, slots=True)
class Constructor:
    """A call that creates a client or an engine: the last part of the called name (after
    import aliases are resolved), as the convention writes it, and its one place."""

    called: str
    written: str
    home: str


CONSTRUCTORS: tuple[Constructor, ...] = (
    Constructor("ClientSession", "aiohttp.ClientSession(", "app/upstreams/caller.py"),
    Constructor("Redis", "Redis(", "app/shared/redis.py"),
    Constructor("StrictRedis", "Redis(", "app/shared/redis.py"),
    Constructor("from_url", "Redis.from_url( / from_url(", "app/shared/redis.py"),
    Constructor("from_pool", "from_pool(", "app/shared/redis.py"),
    Constructor("RedisCluster", "RedisCluster(", "app/shared/redis.py"),
    Constructor("Sentinel", "Sentinel(", "app/shared/redis.py"),
    Constructor("create_async_engine", "create_async_engine(", "app/store/database.py"),
    Constructor("AsyncClient", "httpx.AsyncClient(", "app/security/web_identity.py"),
)


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    # Relative to the root, with forward slashes: what a message names.
    path: str
    is_package: bool
    tree: ast.Module


@dataclass(frozen=True, slots=True)
class Import:
    importer: Module
    target: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.importer.path}:{self.line}"


def load_modules(root: Path) -> dict[str, Module]:
    """Every module of the `app` package under `root`, by dotted name."""
    modules: dict[str, Module] = {}
    for file in sorted((root / PACKAGE).rglob("*.py")):
        relative = file.relative_to(root)
        parts = relative.with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=relative.as_posix())
        modules[name] = Module(name, relative.as_posix(), is_package, tree)
    return modules


def _in_package(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _known_module(name: str, modules: Mapping[str, Module]) -> str | None:
    """The module that `import name` loads last: the longest known prefix of `name`."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _from_base(node: ast.ImportFrom, module: Module) -> str:
    """The absolute module a `from ... import` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: Module, modules: Mapping[str, Module]) -> Iterator[Import]:
    """Every import of another module of `app` in `module`, wherever it is written."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            targets = [_known_module(alias.name, modules) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module)
            targets = [
                f"{base}.{alias.name}"
                if f"{base}.{alias.name}" in modules
                else _known_module(base, modules)
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target is None or target in (module.name, PACKAGE) or not _in_package(target):
                continue
            yield Import(module, target, node.lineno)


def _import_graph(modules: Mapping[str, Module]) -> dict[str, dict[str, Import]]:
    """importer -> imported -> the first import statement making that edge."""
    graph: dict[str, dict[str, Import]] = {name: {} for name in modules}
    for module in modules.values():
        for found in imports_of(module, modules):
            graph[module.name].setdefault(found.target, found)
    return graph


def _cyclic_components(graph: Mapping[str, Collection[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_through(start: str, graph: Mapping[str, Collection[str]], within: set[str]) -> list[str]:
    """A shortest cycle from `start` back to it, through nodes of `within` (start ... start)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph.get(node, ())):
            if successor not in within:
                continue
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if successor not in came_from:
                came_from[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is in a cyclic component but on no cycle")


def cycle_violations(root: Path) -> list[str]:
    """One message per import cycle between modules of `app`, naming each import in it."""
    modules = load_modules(root)
    graph = _import_graph(modules)
    violations = []
    for component in _cyclic_components(graph):
        cycle = _cycle_through(component[0], graph, set(component))
        edges = [graph[a][b] for a, b in itertools.pairwise(cycle)]
        steps = "; ".join(f"{edge.where}: imports {edge.target}" for edge in edges)
        violations.append(f"{edges[0].where}: import cycle {' -> '.join(cycle)} ({steps})")
    return violations


def layer_of(name: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> tuple[int, str] | None:
    """The layer (index, entry) a module belongs to: the longest entry its name starts with."""
    best: tuple[int, str] | None = None
    for level, entries in enumerate(layers):
        for entry in entries:
            if (name == entry or name.startswith(entry + ".")) and (
                best is None or len(entry) > len(best[1])
            ):
                best = (level, entry)
    return best


def layer_violations(root: Path, layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """Modules in no layer, imports of a higher layer, and packages of one layer that import
    each other both ways (directly or round a longer loop)."""
    modules = load_modules(root)
    violations = []
    for module in modules.values():
        if module.name != PACKAGE and layer_of(module.name, layers) is None:
            violations.append(f"{module.path}:1: {module.name} is in no layer; add it to LAYERS")
    # entry -> entry of the same layer -> the first import making that edge
    sideways: dict[str, dict[str, Import]] = {}
    for module in modules.values():
        own = layer_of(module.name, layers)
        if own is None:
            continue
        for found in imports_of(module, modules):
            other = layer_of(found.target, layers)
            if other is None:
                continue
            if other[0] > own[0]:
                violations.append(
                    f"{found.where}: {module.name} (L{own[0]} {own[1]}) imports "
                    f"{found.target} (L{other[0]} {other[1]}), a higher layer"
                )
            elif other[0] == own[0] and other[1] != own[1]:
                sideways.setdefault(own[1], {}).setdefault(other[1], found)
    for component in _cyclic_components(sideways):
        members = set(component)
        for entry in component:
            for other_entry, found in sorted(sideways[entry].items()):
                if other_entry in members:
                    violations.append(
                        f"{found.where}: {found.importer.name} imports {found.target}, closing "
                        f"a loop between {' and '.join(component)} (packages of one layer "
                        "import each other one way only)"
                    )
    return violations


def _assigned(target: ast.expr) -> Iterator[ast.expr]:
    """Each expression assigned to, tuple and starred targets unpacked."""
    if isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _assigned(element)
    elif isinstance(target, ast.Starred):
        yield from _assigned(target.value)
    else:
        yield target


def _is_scope(node: ast.expr) -> bool:
    """`scope` or `<anything>.scope` (e.g. `request.scope`)."""
    return (isinstance(node, ast.Name) and node.id == "scope") or (
        isinstance(node, ast.Attribute) and node.attr == "scope"
    )


def _is_request_state(node: ast.expr) -> bool:
    """`request.state` (or that of another name a connection goes by)."""
    if not (isinstance(node, ast.Attribute) and node.attr == "state"):
        return False
    owner = node.value
    name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
    return name in REQUEST_NAMES


def _context_key_value(modules: Mapping[str, Module]) -> str | None:
    """The string `CONTEXT_SCOPE_KEY` stands for, read from the module defining it."""
    for module in modules.values():
        if module.path != CONTEXT_KEY_HOME:
            continue
        for node in module.tree.body:
            if (
                isinstance(node, ast.Assign | ast.AnnAssign)
                and any(
                    isinstance(t, ast.Name) and t.id == CONTEXT_KEY
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                )
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                return node.value.value
    return None


_TYPED = "stages talk through the typed RequestContext"


def _uses_context_key(node: ast.AST) -> bool:
    return (
        (isinstance(node, ast.Name) and node.id == CONTEXT_KEY)
        or (isinstance(node, ast.Attribute) and node.attr == CONTEXT_KEY)
        or (
            isinstance(node, ast.ImportFrom)
            and any(alias.name == CONTEXT_KEY for alias in node.names)
        )
    )


def _writes(node: ast.AST, path: str) -> Iterator[str]:
    """What `node` writes into the scope or onto `request.state`, as messages."""
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign | ast.Delete):
        targets = [t for target in node.targets for t in _assigned(target)]
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    for target in targets:
        if isinstance(target, ast.Subscript) and _is_scope(target.value):
            key = target.slice
            creates_context = (
                path == SCOPE_WRITER and isinstance(key, ast.Name) and key.id == CONTEXT_KEY
            )
            if not creates_context:
                yield f"writes into the ASGI scope; {_TYPED}"
        elif isinstance(target, ast.Attribute) and _is_request_state(target.value):
            yield f"sets an attribute on request.state; {_TYPED}"
    if isinstance(node, ast.Call):
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in ("setdefault", "update", "__setitem__", "pop")
            and _is_scope(func.value)
        ):
            yield f"changes the ASGI scope ({func.attr}); {_TYPED}"
        elif (
            isinstance(func, ast.Name)
            and func.id in ("setattr", "delattr")
            and node.args
            and _is_request_state(node.args[0])
        ):
            yield f"{func.id} on request.state; {_TYPED}"


def context_violations(root: Path) -> list[str]:
    """Uses of the context's scope key outside `app/deps.py` and the edge, and any other
    write into the ASGI scope or `request.state`."""
    modules = load_modules(root)
    key_value = _context_key_value(modules)
    violations: set[tuple[str, int, str]] = set()
    for module in modules.values():
        path = module.path
        may_use_key = path in CONTEXT_KEY_USERS or path == CONTEXT_KEY_HOME
        for node in ast.walk(module.tree):
            line = getattr(node, "lineno", 0)
            if not may_use_key and _uses_context_key(node):
                what = f"uses {CONTEXT_KEY}; only app/deps.py reads the request's context"
                violations.add((path, line, what))
            if (
                key_value is not None
                and path != CONTEXT_KEY_HOME
                and isinstance(node, ast.Constant)
                and node.value == key_value
            ):
                violations.add((path, line, f"spells out the context's scope key {key_value!r}"))
            violations.update((path, line, what) for what in _writes(node, path))
    return [f"{path}:{line}: {what}" for path, line, what in sorted(violations)]


def _aliases(module: Module) -> dict[str, str]:
    """Local name -> the dotted name it was imported as (`Session` -> `aiohttp.ClientSession`)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname is not None:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module)
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    return aliases


def _called_name(func: ast.expr, aliases: Mapping[str, str]) -> str | None:
    """The dotted name a call calls, its first part resolved through the imports."""
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(aliases.get(func.id, func.id))
    elif not parts:
        return None
    return ".".join(reversed(parts))


def construction_violations(
    root: Path, constructors: tuple[Constructor, ...] = CONSTRUCTORS
) -> list[str]:
    """Calls creating a client or an engine outside their one place."""
    by_called = {constructor.called: constructor for constructor in constructors}
    violations = []
    for module in load_modules(root).values():
        aliases = _aliases(module)
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Call):
                continue
            called = _called_name(node.func, aliases)
            if called is None:
                continue
            constructor = by_called.get(called.rpartition(".")[2])
            if constructor is not None and module.path != constructor.home:
                violations.append(
                    f"{module.path}:{node.lineno}: calls {called}; {constructor.written} "
                    f"belongs in {constructor.home} only"
                )
    return sorted(violations)


def _report(violations: list[str]) -> str:
    return "\n".join(violations)


# The conventions, on the real tree.


def test_no_import_cycles_between_modules() -> None:
    violations = cycle_violations(ROOT)
    assert not violations, _report(violations)


def test_layers_only_point_down() -> None:
    violations = layer_violations(ROOT)
    assert not violations, _report(violations)


def test_the_request_context_is_the_only_per_request_state() -> None:
    violations = context_violations(ROOT)
    assert not violations, _report(violations)


def test_clients_and_engines_are_created_in_their_one_place() -> None:
    violations = construction_violations(ROOT)
    assert not violations, _report(violations)


def test_each_named_place_exists_and_does_what_the_rule_says() -> None:
    """A rule pointing at a file that moved or no longer holds the call would pass on nothing."""
    modules = {module.path: module for module in load_modules(ROOT).values()}
    for home in sorted({constructor.home for constructor in CONSTRUCTORS}):
        assert home in modules, f"{home} is named by a convention but does not exist"
        aliases = _aliases(modules[home])
        called = {
            name.rpartition(".")[2]
            for node in ast.walk(modules[home].tree)
            if isinstance(node, ast.Call) and (name := _called_name(node.func, aliases))
        }
        own = {c.called for c in CONSTRUCTORS if c.home == home}
        assert called & own, f"{home} no longer creates what the convention places there"
    assert _context_key_value(load_modules(ROOT)) is not None, f"{CONTEXT_KEY_HOME} lost the key"
    for path in (*CONTEXT_KEY_USERS, SCOPE_WRITER):
        assert path in modules, f"{path} is named by a convention but does not exist"


# The tests of the tests: each rule reports a planted violation with its file and line.


def plant(root: Path, files: Mapping[str, str]) -> Path:
    """A small `app` package under `root`: the given files, and an `__init__.py` per folder."""
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    for folder in [root / PACKAGE, *(root / PACKAGE).rglob("*")]:
        if folder.is_dir() and not (folder / "__init__.py").exists():
            (folder / "__init__.py").write_text("", encoding="utf-8")
    return root


def one_with(violations: list[str], *fragments: str) -> str:
    """The one violation that contains every fragment; fails when there is not exactly one."""
    found = [v for v in violations if all(fragment in v for fragment in fragments)]
    assert len(found) == 1, f"expected one violation with {fragments}, got:\n{_report(violations)}"
    return found[0]


@pytest.mark.parametrize(
    "back_import",
    [
        "import os\n\nfrom app.store.a import Thing\n",
        "import os\n\nimport app.store.a\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.store.a import Thing\n",
        "def later():\n    import os\n    from app.store import a\n",
        "import os\nimport sys\nfrom . import a\n",
    ],
    ids=["from", "import", "type-checking", "in-function", "relative"],
)
def test_a_planted_cycle_is_named_with_each_import(tmp_path: Path, back_import: str) -> None:
    plant(
        tmp_path,
        {
            "app/store/a.py": "from app.store.b import Other\n",
            "app/store/b.py": back_import,
            "app/store/c.py": "from app.store.a import Thing\n",
        },
    )
    violation = one_with(cycle_violations(tmp_path), "import cycle")
    assert "app/store/a.py:1: imports app.store.b" in violation
    assert "app/store/b.py:3: imports app.store.a" in violation
    assert "app/store/c.py" not in violation


def test_a_tree_without_cycles_passes(tmp_path: Path) -> None:
    plant(
        tmp_path,
        {
            "app/store/a.py": "from app.store.b import Other\nfrom app.settings import S\n",
            "app/store/b.py": "from app import settings\n",
            "app/settings.py": "S = 1\n",
        },
    )
    assert cycle_violations(tmp_path) == []


@pytest.mark.parametrize(
    "upward",
    [
        "import asyncio\nfrom app.frontends.web import views\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING: import app.frontends.web.views\n",
        "def late():\n    from app.frontends.web.views import View\n",
    ],
    ids=["top", "type-checking", "in-function"],
)
def test_a_planted_upward_import_is_named(tmp_path: Path, upward: str) -> None:
    plant(
        tmp_path,
        {
            "app/store/snapshot.py": upward,
            "app/frontends/web/views.py": "from app.store.snapshot import Snapshot\n",
        },
    )
    violation = one_with(layer_violations(tmp_path), "a higher layer")
    assert violation.startswith("app/store/snapshot.py:2: app.store.snapshot (L3 app.store)")
    assert "app.frontends.web.views (L9 app.frontends)" in violation


def test_a_module_in_no_layer_is_named(tmp_path: Path) -> None:
    plant(tmp_path, {"app/utils.py": "X = 1\n", "app/openapi_export.py": "X = 1\n"})
    assert layer_violations(tmp_path) == [
        "app/utils.py:1: app.utils is in no layer; add it to LAYERS"
    ]


def test_packages_of_one_layer_import_each_other_one_way_only(tmp_path: Path) -> None:
    one_way = {
        "app/frontends/web.py": "from app.admin.schemas import Page\n",
        "app/admin/schemas.py": "from app.deps import StateDep\nfrom app.store import models\n",
        "app/deps.py": "from app.state import GatewayState\n",
        "app/state.py": "",
        "app/store/models.py": "",
    }
    plant(tmp_path, one_way)
    assert layer_violations(tmp_path) == []

    # No module cycle (web -> admin.schemas, admin.consumers -> frontends.valuation), but the
    # two packages now lean on each other.
    plant(
        tmp_path,
        {
            "app/admin/consumers.py": "import os\n\nfrom app.frontends import valuation\n",
            "app/frontends/valuation.py": "",
        },
    )
    assert cycle_violations(tmp_path) == []
    violations = layer_violations(tmp_path)
    assert len(violations) == 2, _report(violations)
    one_with(violations, "app/frontends/web.py:1: app.frontends.web imports app.admin.schemas")
    one_with(violations, "app/admin/consumers.py:3: app.admin.consumers imports")


def test_the_real_layers_place_every_named_room() -> None:
    assert layer_of("app.shared.redis") == (1, "app.shared")
    assert layer_of("app.openapi") == (9, "app.openapi")
    assert layer_of("app.openapi_export") == (10, "app.openapi_export")
    assert layer_of("app.policy.chain") == (7, "app.policy")
    assert layer_of("app.traffic.breaker") == (2, "app.traffic")
    assert layer_of("app.upstreams.caller") == (5, "app.upstreams")


CONTEXT_HOME_SOURCE = 'CONTEXT_SCOPE_KEY = "gateway.context"\n'


def test_the_context_key_and_state_writes_are_allowed_only_where_they_belong(
    tmp_path: Path,
) -> None:
    plant(
        tmp_path,
        {
            "app/policy/context.py": CONTEXT_HOME_SOURCE,
            "app/deps.py": """
                from app.policy.context import CONTEXT_SCOPE_KEY

                def context_of(request):
                    return request.scope.get(CONTEXT_SCOPE_KEY), request.state.gateway
            """,
            "app/middleware/edge.py": """
                from app.policy.context import CONTEXT_SCOPE_KEY

                async def edge(scope, context, message):
                    scope[CONTEXT_SCOPE_KEY] = context
                    message["headers"] = []
                    path = scope["path"]
            """,
            "app/auth/router.py": """
                def identity(request):
                    return getattr(request.state.gateway, "identity", None)
            """,
        },
    )
    assert context_violations(tmp_path) == []


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import os\nfrom app.policy.context import CONTEXT_SCOPE_KEY as KEY\n", "uses"),
        ("import app.policy.context as c\nx = 1; y = c.CONTEXT_SCOPE_KEY\n", "uses"),
        ("def f(request):\n    return request.scope['gateway.context']\n", "spells out"),
        ("def f(request, p):\n    request.scope['principal'] = p\n", "writes into the ASGI scope"),
        ("async def f(scope, p):\n    scope['principal'] = p\n", "writes into the ASGI scope"),
        ("def f(request, p):\n    request.scope.setdefault('p', p)\n", "changes the ASGI scope"),
        ("def f(request, p):\n    request.state.principal = p\n", "sets an attribute"),
        ("def f(request, p):\n    a, request.state.b = p\n", "sets an attribute"),
        ("def f(request, p):\n    setattr(request.state, 'principal', p)\n", "setattr"),
    ],
    ids=[
        "imported-key",
        "attribute-key",
        "literal-key",
        "request-scope-write",
        "scope-write",
        "scope-setdefault",
        "state-write",
        "state-tuple-write",
        "state-setattr",
    ],
)
def test_a_planted_context_violation_is_named(tmp_path: Path, source: str, what: str) -> None:
    plant(
        tmp_path,
        {"app/policy/context.py": CONTEXT_HOME_SOURCE, "app/security/rbac.py": source},
    )
    one_with(context_violations(tmp_path), "app/security/rbac.py:2:", what)


def test_the_edge_writes_only_the_context_into_the_scope(tmp_path: Path) -> None:
    plant(
        tmp_path,
        {
            "app/policy/context.py": CONTEXT_HOME_SOURCE,
            "app/middleware/edge.py": """
                from app.policy.context import CONTEXT_SCOPE_KEY

                async def edge(scope, context):
                    scope[CONTEXT_SCOPE_KEY] = context
                    scope["route_template"] = "/x"
            """,
        },
    )
    assert context_violations(tmp_path) == [
        "app/middleware/edge.py:5: writes into the ASGI scope; stages talk through the typed "
        "RequestContext"
    ]


@pytest.mark.parametrize(
    ("source", "called"),
    [
        ("import aiohttp\n\nsession = aiohttp.ClientSession()\n", "aiohttp.ClientSession"),
        ("from aiohttp import ClientSession as S\n\ns = S()\n", "aiohttp.ClientSession"),
        ("from redis.asyncio import Redis\n\nr = Redis()\n", "redis.asyncio.Redis"),
        ("from redis.asyncio import Redis\n\nr = Redis.from_url(u)\n", "Redis.from_url"),
        ("import redis.asyncio as aioredis\n\nr = aioredis.from_url(u)\n", "from_url"),
        ("from redis.asyncio import Redis\n\nr = Redis.from_pool(p)\n", "Redis.from_pool"),
        ("from redis.asyncio.cluster import RedisCluster\n\nr = RedisCluster()\n", "RedisCluster"),
        ("import sqlalchemy.ext.asyncio as sa\n\ne = sa.create_async_engine(u)\n", "create_async"),
        ("import httpx\n\nclient = httpx.AsyncClient()\n", "httpx.AsyncClient"),
    ],
    ids=[
        "aiohttp",
        "aiohttp-alias",
        "redis",
        "redis-from-url",
        "from-url",
        "from-pool",
        "cluster",
        "engine",
        "httpx",
    ],
)
def test_a_planted_construction_is_named(tmp_path: Path, source: str, called: str) -> None:
    plant(tmp_path, {"app/frontends/web/compose.py": source})
    one_with(construction_violations(tmp_path), "app/frontends/web/compose.py:3: calls", called)


def test_each_construction_is_allowed_in_its_place(tmp_path: Path) -> None:
    plant(
        tmp_path,
        {
            "app/upstreams/caller.py": "import aiohttp\ns = aiohttp.ClientSession()\n",
            "app/shared/redis.py": (
                "from redis.asyncio import BlockingConnectionPool, Redis\n"
                "pool = BlockingConnectionPool.from_url(u)\nr = Redis.from_pool(pool)\n"
            ),
            "app/store/database.py": (
                "from sqlalchemy.ext.asyncio import create_async_engine\n"
                "e = create_async_engine(u)\n"
            ),
            "app/security/web_identity.py": "import httpx\nc = httpx.AsyncClient()\n",
        },
    )
    assert construction_violations(tmp_path) == []
