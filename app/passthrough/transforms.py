"""A route's declared transforms, compiled: header and query parameter changes, JSON body
maps, applied on the request before it is forwarded and on the response before it is sent.

Names change in one order everywhere: remove, rename, add (an added value replaces one the
request or response had). A JSON body map: pick a subtree, remove fields, rename fields,
add constants; a list (at the top, or the picked subtree) is mapped item by item, and a
list on a field's dotted path too (`articles.headline` renames every article's headline). A body
that is not JSON passes unchanged: a map only says how to reshape JSON.
"""

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.store.route_declarations import BodyMap, HeaderChanges, QueryChanges

RawHeaders = list[tuple[bytes, bytes]]

# The dotted path of a field: its parents' names, then its own.
_Path = tuple[str, ...]


def _dotted(path: str) -> _Path:
    return tuple(path.split("."))


@dataclass(frozen=True, slots=True)
class HeaderTransform:
    remove: frozenset[bytes]
    rename: tuple[tuple[bytes, bytes], ...]
    add: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def of(cls, changes: HeaderChanges) -> "HeaderTransform | None":
        if not (changes.add or changes.remove or changes.rename):
            return None
        return cls(
            remove=frozenset(name.lower().encode() for name in changes.remove),
            rename=tuple(
                (old.lower().encode(), new.lower().encode()) for old, new in changes.rename.items()
            ),
            add=tuple(
                (name.lower().encode(), value.encode()) for name, value in changes.add.items()
            ),
        )

    def apply(self, headers: RawHeaders) -> RawHeaders:
        renamed = dict(self.rename)
        added = {name for name, _ in self.add}
        changed = []
        for name, value in headers:
            if name in self.remove:
                continue
            name = renamed.get(name, name)
            if name in added:
                continue
            changed.append((name, value))
        changed.extend(self.add)
        return changed


@dataclass(frozen=True, slots=True)
class QueryTransform:
    remove: frozenset[str]
    rename: dict[str, str]
    add: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, changes: QueryChanges) -> "QueryTransform | None":
        if not (changes.add or changes.remove or changes.rename):
            return None
        return cls(
            remove=frozenset(changes.remove),
            rename=dict(changes.rename),
            add=tuple(changes.add.items()),
        )

    def apply(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        added = {name for name, _ in self.add}
        changed = []
        for name, value in pairs:
            if name in self.remove:
                continue
            name = self.rename.get(name, name)
            if name in added:
                continue
            changed.append((name, value))
        changed.extend(self.add)
        return changed


@dataclass(frozen=True, slots=True)
class BodyTransform:
    pick: _Path | None
    remove: tuple[_Path, ...]
    rename: tuple[tuple[_Path, str], ...]
    add: tuple[tuple[_Path, Any], ...]

    @classmethod
    def of(cls, body: BodyMap | None) -> "BodyTransform | None":
        if body is None or not (body.pick or body.remove or body.rename or body.add):
            return None
        return cls(
            pick=_dotted(body.pick) if body.pick else None,
            remove=tuple(_dotted(p) for p in body.remove),
            rename=tuple((_dotted(p), new) for p, new in body.rename.items()),
            add=tuple((_dotted(p), value) for p, value in body.add.items()),
        )

    def apply_bytes(self, body: bytes) -> bytes | None:
        """The mapped document; None when `body` is not JSON (it then passes unchanged)."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return orjson.dumps(self.apply(document))

    def apply(self, document: Any) -> Any:
        if self.pick is not None:
            document = _get(document, self.pick)
        if isinstance(document, list):
            return [self._one(item) for item in document]
        return self._one(document)

    def _one(self, document: Any) -> Any:
        if not isinstance(document, dict):
            return document
        for path in self.remove:
            for parent in _parents(document, path):
                parent.pop(path[-1], None)
        for path, new in self.rename:
            for parent in _parents(document, path):
                if path[-1] in parent:
                    parent[new] = parent.pop(path[-1])
        for path, value in self.add:
            target: Any = document
            for name in path[:-1]:
                child = target.get(name) if isinstance(target, dict) else None
                if not isinstance(child, dict):
                    child = {}
                    target[name] = child
                target = child
            target[path[-1]] = copy.deepcopy(value)
        return document


def _get(document: Any, path: Sequence[str]) -> Any:
    for name in path:
        if not isinstance(document, dict):
            return None
        document = document.get(name)
    return document


def _parents(document: Any, path: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The objects holding the field at `path`; a list on the way is walked item by item
    (`articles.headline`: the headline of every article)."""
    if isinstance(document, list):
        for item in document:
            yield from _parents(item, path)
        return
    if not isinstance(document, dict):
        return
    if len(path) == 1:
        yield document
        return
    yield from _parents(document.get(path[0]), path[1:])
