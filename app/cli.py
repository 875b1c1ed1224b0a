"""The `gateway` command: the config store as code, from a shell.

    gateway config export > gateway.yaml       # the whole configuration, no key secrets
    gateway config diff gateway.yaml           # what applying it would change (exit 1 if any)
    gateway config apply gateway.yaml [--dry-run]
    gateway config schema                      # the document's JSON Schema
    gateway check gateway.yaml                 # validate offline, no database
    gateway routes list
    gateway keys issue CONSUMER [--name production] [--expires-at 2027-06-30T00:00:00Z]

It talks to the config database itself (`DATABASE_URL`, as the gateway; `--database-url`
overrides it). An apply, or an issued key, is one transaction; once it has committed, the
running gateways are told through the change notices (`app.store.notices`: with Redis at
once; each also compares the store's revision, which the change raised, every half second).
Exit status: 0 done (or no differences), 1 a fault in the file, differences found, or a
refused change, 2 a usage error.
"""

import argparse
import asyncio
import io
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.admin.consumers import KeyCreate
from app.admin.declarative import (
    Applied,
    Change,
    Fault,
    GatewayConfig,
    InvalidDocument,
    Location,
    UnexportableRow,
    apply,
    diff,
    document_data,
    export_document,
    json_schema,
    parse_document,
)
from app.errors import GatewayError
from app.security.apikeys import announce_revocation, issue_key, key_hasher
from app.settings import Settings
from app.shared.redis import RedisUnavailable, connect_redis
from app.store.consumers import ApiKeyRepository, ConsumerRepository
from app.store.database import create_engine, is_unavailable, session_factory, transaction
from app.store.models import ApiKey
from app.store.notices import ChangeNotices
from app.store.routes import RevisionRepository
from app.store.snapshot import ConfigStore


class CommandFailed(Exception):
    """What the command prints on stderr before exiting with status 1."""


# Reading a document.


class _DocumentLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (the second would win)."""


def _refuse_duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
    for index, key in enumerate(keys):
        if key in keys[:index]:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", node.value[index][0].start_mark
            )
    return loader.construct_mapping(node, deep=True)


_DocumentLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _refuse_duplicate_keys
)


def _lines(node: yaml.Node | None, loc: Location = ()) -> dict[Location, int]:
    """The line (1-based) each place in the document starts on."""
    if node is None:
        return {}
    lines = {loc: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines.update(_lines(value, (*loc, key.value)))
            lines.setdefault((*loc, key.value), key.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_lines(item, (*loc, index)))
    return lines


def _where(fault: Fault, lines: dict[Location, int]) -> str:
    loc = fault.loc
    while loc and loc not in lines:
        loc = loc[:-1]
    line = lines.get(loc)
    return f"line {line}: {fault}" if line is not None else str(fault)


def _named(text: str, path: str) -> io.StringIO:
    """The text as a stream that YAML's errors name by its file."""
    stream = io.StringIO(text)
    stream.name = "<stdin>" if path == "-" else path
    return stream


def read_document(path: str) -> GatewayConfig:
    """The document in the YAML (or JSON) file at `path` ("-": stdin), every fault named
    with its place and line."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandFailed(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.load(_named(text, path), Loader=_DocumentLoader)  # a SafeLoader
        lines = _lines(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise CommandFailed(f"{path}: not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise CommandFailed(f"{path}: the document must be a mapping (services:, plans:, ...)")
    try:
        return parse_document(data)
    except InvalidDocument as exc:
        faults = "\n".join(f"  {_where(f, lines)}" for f in exc.faults)
        raise CommandFailed(f"{path}: {len(exc.faults)} fault(s):\n{faults}") from None


def write_document(document: GatewayConfig, out: TextIO) -> None:
    yaml.safe_dump(
        document_data(document), out, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


# The store.


@dataclass
class Store:
    """The config database (and Redis, for the change notice) for one command."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]

    async def announce(self, revoked_prefixes: Sequence[str] = ()) -> None:
        """Tell the running gateways that the store changed (and which keys were revoked)."""
        redis = connect_redis(self.settings)
        try:
            notices = ChangeNotices(
                ConfigStore(self.sessions), redis, prefix=self.settings.redis_prefix, refresh_s=0
            )
            await notices.changed()
            for prefix in revoked_prefixes:
                try:
                    await announce_revocation(redis, self.settings, prefix)
                except RedisUnavailable as exc:
                    print(f"could not mark key {prefix} revoked in Redis: {exc}", file=sys.stderr)
        finally:
            if redis is not None:
                await redis.close()


def _settings(args: argparse.Namespace) -> Settings:
    """The gateway's own settings (environment), `--database-url` over `DATABASE_URL`."""
    settings = Settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    return settings


async def _with_store(args: argparse.Namespace, work: Callable[[Store], Awaitable[int]]) -> int:
    settings = _settings(args)
    engine = create_engine(
        settings.database_url,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
    )
    try:
        return await work(Store(settings, session_factory(engine)))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        what = "unavailable" if is_unavailable(exc) else "refused the change"
        raise CommandFailed(f"the config database {what}: {exc}") from None
    except GatewayError as exc:
        raise CommandFailed(exc.detail) from None
    except UnexportableRow as exc:
        raise CommandFailed(
            f"the store holds a row the admin API would not accept, {exc}; correct it first"
        ) from None
    finally:
        await engine.dispose()


async def _current(store: Store) -> GatewayConfig:
    async with store.sessions() as session:
        return await export_document(session)


# Commands.


def _export(args: argparse.Namespace) -> int:
    async def work(store: Store) -> int:
        write_document(await _current(store), sys.stdout)
        return 0

    return asyncio.run(_with_store(args, work))


def _print_changes(changes: Sequence[Change]) -> None:
    for change in changes:
        print(change)


def _diff(args: argparse.Namespace) -> int:
    desired = read_document(args.file)

    async def work(store: Store) -> int:
        changes = diff(await _current(store), desired)
        _print_changes(changes)
        if not changes:
            print("no differences", file=sys.stderr)
        return 1 if changes else 0

    return asyncio.run(_with_store(args, work))


class _DryRun(Exception):
    """Rolls the transaction back once the changes are staged."""


def _apply(args: argparse.Namespace) -> int:
    desired = read_document(args.file)

    async def work(store: Store) -> int:
        applied: Applied | None = None
        try:
            async with transaction(store.sessions) as session:
                applied = await apply(session, desired)
                if args.dry_run or not applied.changes:
                    raise _DryRun
        except _DryRun:
            assert applied is not None
            _print_changes(applied.changes)
            if args.dry_run:
                print(
                    f"dry run: {len(applied.changes)} change(s) would be applied; nothing changed",
                    file=sys.stderr,
                )
            else:
                print("applied 0 change(s): the store already holds the file", file=sys.stderr)
            return 0
        assert applied is not None
        _print_changes(applied.changes)
        await store.announce(applied.revoked_prefixes)
        print(f"applied {len(applied.changes)} change(s)", file=sys.stderr)
        return 0

    return asyncio.run(_with_store(args, work))


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0


def schema_text() -> str:
    """The published schema file's text (`schemas/gateway-config.schema.json`)."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def _check(args: argparse.Namespace) -> int:
    document = read_document(args.file)
    print(
        f"{args.file}: valid: {len(document.services)} service(s), {len(document.plans)} "
        f"plan(s), {len(document.consumers)} consumer(s), "
        f"{len(document.rate_limit_rules)} rate limit rule(s), {len(document.routes)} route(s)"
    )
    return 0


def _routes_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    prefix = settings.passthrough.prefix.rstrip("/")

    async def work(store: Store) -> int:
        routes = (await _current(store)).routes
        rows = [("NAME", "ENABLED", "METHODS", "PATH", "SERVICE", "UPSTREAM PATH", "AUTH")]
        for route in routes:
            match = route.match
            path = prefix + (match.path if match.path is not None else f"{match.path_prefix}/*")
            rows.append(
                (
                    route.name,
                    "yes" if route.enabled else "no",
                    ",".join(match.methods) or "*",
                    path + (f" (host {match.host})" if match.host else ""),
                    route.upstream.service,
                    route.upstream.path or "(the request's)",
                    route.auth + (f" {' '.join(route.scopes)}" if route.scopes else ""),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  ".join(cells).rstrip())
        print(f"{len(routes)} route(s)", file=sys.stderr)
        return 0

    return asyncio.run(_with_store(args, work))


def _keys_issue(args: argparse.Namespace) -> int:
    try:
        body = KeyCreate.model_validate(
            {"name": args.name, "expires_at": args.expires_at}, strict=False
        )
    except ValueError as exc:
        raise CommandFailed(f"invalid key: {exc}") from None

    async def work(store: Store) -> int:
        issued = issue_key(key_hasher(store.settings))
        async with transaction(store.sessions) as session:
            consumer = await ConsumerRepository(session).by_name(args.consumer)
            if consumer is None:
                raise CommandFailed(f"no consumer named {args.consumer!r}")
            key = await ApiKeyRepository(session).add(
                ApiKey(
                    consumer_id=consumer.consumer_id,
                    prefix=issued.prefix,
                    key_hash=issued.key_hash,
                    name=body.name,
                    expires_at=body.expires_at,
                )
            )
            await RevisionRepository(session).advance()
        await store.announce()
        expires = key.expires_at.astimezone(UTC).isoformat() if key.expires_at else "never"
        print(
            f"issued key {key.key_id} (prefix {key.prefix}) for consumer {args.consumer!r}, "
            f"expires {expires}; it is shown only now",
            file=sys.stderr,
        )
        # Alone on stdout, for `KEY=$(gateway keys issue acme)`.
        print(issued.key)
        return 0

    return asyncio.run(_with_store(args, work))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Manage the gateway's configuration as code.",
        epilog="The config database is DATABASE_URL (or GATEWAY_DATABASE_URL), as for the "
        "gateway; running gateways learn of a change through Redis (REDIS_URL) at once.",
    )
    parser.add_argument(
        "--database-url", help="the config database (default: DATABASE_URL, as the gateway)"
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    config = verbs.add_parser(
        "config",
        help="export, compare and apply the whole configuration",
        description="The whole configuration (services and instances, plans, consumers, rate "
        "limit rules, pass-through routes) as one YAML document. API keys are never part of it.",
    )
    config_verbs = config.add_subparsers(dest="config_verb", required=True, metavar="COMMAND")
    export = config_verbs.add_parser(
        "export",
        help="write the stored configuration as YAML to stdout",
        description="Write the stored configuration as YAML to stdout, entries by name; "
        "no ids, timestamps or key secrets.",
    )
    export.set_defaults(run=_export)
    compare = config_verbs.add_parser(
        "diff",
        help="show what applying FILE would change",
        description="Show what applying FILE would create (+), change (~) and delete (-). "
        "Exit status 0 when the store already matches, 1 when it differs.",
    )
    compare.add_argument("file", metavar="FILE", help="the YAML document (- for stdin)")
    compare.set_defaults(run=_diff)
    apply_ = config_verbs.add_parser(
        "apply",
        help="make the store hold exactly FILE, in one transaction",
        description="Create, change and delete rows until the store holds exactly what FILE "
        "says, in one transaction: all of it or nothing. Prints each change; running "
        "gateways reload at once (Redis) or when they see the store's revision rise.",
    )
    apply_.add_argument("file", metavar="FILE", help="the YAML document (- for stdin)")
    apply_.add_argument(
        "--dry-run",
        action="store_true",
        help="stage every change, print them, then roll back: nothing changes",
    )
    apply_.set_defaults(run=_apply)
    schema = config_verbs.add_parser(
        "schema",
        help="print the document's JSON Schema",
        description="Print the JSON Schema of the YAML document (the file published as "
        "schemas/gateway-config.schema.json), for editors and CI.",
    )
    schema.set_defaults(run=_schema)

    check = verbs.add_parser(
        "check",
        help="validate a YAML document offline",
        description="Validate FILE without a database: every value as the admin API checks "
        "it, and the references between entries. Each fault is named with its place and line.",
    )
    check.add_argument("file", metavar="FILE", help="the YAML document (- for stdin)")
    check.set_defaults(run=_check)

    routes = verbs.add_parser(
        "routes", help="config-driven routes", description="Config-driven routes."
    )
    routes_verbs = routes.add_subparsers(dest="routes_verb", required=True, metavar="COMMAND")
    routes_list = routes_verbs.add_parser(
        "list",
        help="list the stored pass-through routes",
        description="List the stored pass-through routes: name, switch, methods, the path "
        "served (under the pass-through prefix), service and upstream path, authentication.",
    )
    routes_list.set_defaults(run=_routes_list)

    keys = verbs.add_parser("keys", help="consumers' API keys", description="API keys.")
    keys_verbs = keys.add_subparsers(dest="keys_verb", required=True, metavar="COMMAND")
    keys_issue = keys_verbs.add_parser(
        "issue",
        help="issue an API key for CONSUMER and print it",
        description="Issue an API key for the consumer named CONSUMER. The key is printed "
        "alone on stdout, once: the store keeps only its hash.",
    )
    keys_issue.add_argument("consumer", metavar="CONSUMER", help="the consumer's name")
    keys_issue.add_argument("--name", default="", help="what the key is for")
    keys_issue.add_argument(
        "--expires-at",
        type=_moment,
        default=None,
        help="when the key stops working, e.g. 2027-06-30T00:00:00Z (default: never)",
    )
    keys_issue.set_defaults(run=_keys_issue)
    return parser


def _moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except CommandFailed as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
