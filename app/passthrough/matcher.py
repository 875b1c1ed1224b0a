"""The compiled route table: which pass-through route a request takes.

Built once per config snapshot. Routes are filed in a tree by path segment, so a lookup
walks the request's segments once, whatever the number of routes (`make bench` compares one
route with a thousand). At each node a literal segment is tried before a `{parameter}`, so
`/orders/open` wins over `/orders/{order_id}`; a whole-path template wins over a prefix, and
a longer prefix over a shorter one. Among routes on the same path, the first in `route_id`
order whose method, host and headers match takes the request.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from starlette.datastructures import Headers

from app.store.route_declarations import RouteDeclaration, path_segments
from app.store.snapshot import RouteConfig

ANY_METHOD: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MatchedPath:
    """A route whose path matched, with the parameters it captured and, for a prefix route,
    the rest of the path (`""` or `/...`)."""

    route: RouteConfig
    parameters: dict[str, str]
    rest: str


@dataclass(slots=True)
class _Node:
    literal: dict[str, "_Node"] = field(default_factory=dict)
    parameter: "_Node | None" = None
    parameter_names: list[str] = field(default_factory=list)
    # Routes whose template ends here, and those whose prefix ends here.
    exact: list[tuple[RouteConfig, tuple[str, ...]]] = field(default_factory=list)
    prefixes: list[RouteConfig] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Condition:
    methods: frozenset[str]
    host: str | None
    wildcard_host: bool
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, declaration: RouteDeclaration) -> "_Condition":
        match = declaration.match
        methods = frozenset(match.methods)
        if "GET" in methods:
            methods |= {"HEAD"}
        host = match.host
        wildcard = host is not None and host.startswith("*.")
        return cls(
            methods=methods,
            host=host[1:] if wildcard and host is not None else host,
            wildcard_host=wildcard,
            headers=tuple((name.lower(), value) for name, value in match.headers.items()),
        )

    def accepts_method(self, method: str) -> bool:
        return not self.methods or method in self.methods

    def accepts_request(self, host: str, headers: Headers) -> bool:
        if self.host is not None:
            if self.wildcard_host:
                if not host.endswith(self.host):
                    return False
            elif host != self.host and host.partition(":")[0] != self.host:
                return False
        return all(headers.get(name) == value for name, value in self.headers)


class RouteTable:
    """The routes of one snapshot, compiled for lookup."""

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self.routes = tuple(routes)
        self._root = _Node()
        self._conditions: dict[int, _Condition] = {}
        for route in self.routes:
            self._file(route)

    def _file(self, route: RouteConfig) -> None:
        declaration = route.declaration
        self._conditions[route.route_id] = _Condition.of(declaration)
        match = declaration.match
        template = match.path if match.path is not None else match.path_prefix
        assert template is not None
        node = self._root
        names: list[str] = []
        for segment in path_segments(template):
            if segment.startswith("{"):
                names.append(segment[1:-1])
                if node.parameter is None:
                    node.parameter = _Node()
                node = node.parameter
            else:
                node = node.literal.setdefault(segment, _Node())
        if match.path is not None:
            node.exact.append((route, tuple(names)))
        else:
            node.prefixes.append(route)

    def paths(self, path: str) -> Iterator[MatchedPath]:
        """The routes whose path matches `path` (relative to the prefix, starting with `/`),
        best first."""
        segments = path_segments(path) if path not in {"", "/"} else []
        yield from self._exact(self._root, segments, 0, [])
        # Prefixes, longest first: those ending at each node along the literal walk.
        along: list[tuple[_Node, int]] = [(self._root, 0)]
        node = self._root
        for index, segment in enumerate(segments):
            found = node.literal.get(segment)
            if found is None:
                break
            node = found
            along.append((node, index + 1))
        for node, depth in reversed(along):
            if node.prefixes:
                rest = "/" + "/".join(segments[depth:]) if depth < len(segments) else ""
                if rest and path.endswith("/"):
                    rest += "/"
                for route in node.prefixes:
                    yield MatchedPath(route, {}, rest)

    def _exact(
        self, node: _Node, segments: list[str], index: int, captured: list[str]
    ) -> Iterator[MatchedPath]:
        if index == len(segments):
            for route, names in node.exact:
                yield MatchedPath(route, dict(zip(names, captured, strict=True)), "")
            return
        segment = segments[index]
        found = node.literal.get(segment)
        if found is not None:
            yield from self._exact(found, segments, index + 1, captured)
        if node.parameter is not None:
            captured.append(segment)
            yield from self._exact(node.parameter, segments, index + 1, captured)
            captured.pop()

    def match(
        self, *, method: str, path: str, host: str, headers: Headers
    ) -> tuple[MatchedPath | None, frozenset[str]]:
        """The route the request takes; when none does, the methods the routes whose path
        and conditions matched would take (empty: no route has this path)."""
        allowed: set[str] = set()
        for candidate in self.paths(path):
            condition = self._conditions[candidate.route.route_id]
            if not condition.accepts_request(host, headers):
                continue
            if condition.accepts_method(method):
                return candidate, ANY_METHOD
            allowed |= condition.methods
        return None, frozenset(allowed)
