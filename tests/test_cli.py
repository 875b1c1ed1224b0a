"""The `gateway` command against SQLite and PostgreSQL: export, diff, apply (all or nothing),
check offline, keys that authenticate at a running gateway, and the published schema."""

import asyncio
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from app.cli import main, schema_text
from app.settings import Settings
from app.store.database import create_engine, session_factory
from app.store.routes import RevisionRepository
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.redis import PrefixedRedis, prefixed_redis
from tests.store.store_backends import BACKENDS, migrated_store

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "gateway-config.schema.json"
GATEWAY = Path(sys.executable).parent / "gateway"

SAMPLE = """\
services:
  - name: fundamentals
    timeout_ms: 1500
    balancer: weighted_round_robin
    instances:
      - url: http://10.0.3.17:8080
        weight: 3
      - url: http://10.0.3.18:8080
        enabled: false
    policy:
      retries: {attempts: 2, retry_on: [503]}
      bulkhead: {max_concurrent: 16}
  - name: news-archive
    health_path: /ready
plans:
  - name: partner-basic
    rate_per_second: 5
    quota_per_day: 10000
    scopes: [quotes:read, candles:read]
  - name: partner-pro
    rate_per_minute: 600
    max_in_flight: 20
    scopes: [quotes:read, candles:read, orders:write]
consumers:
  - name: acme-trading
    plan: partner-pro
    account_ids: [ACC-2001]
    oauth_client_id: partner-acme
  - name: beta-fund
    plan: partner-basic
    enabled: false
rate_limit_rules:
  - name: basic-quotes
    key_by: plan
    plan_name: partner-basic
    route_prefix: /partner/v1/quotes
    limit: 20
    period_s: 1
    burst: 40
  - name: per-address
    key_by: address
    limit: 100
    period_s: 60
routes:
  - name: fundamentals-profile
    description: Company profiles
    match: {path: "/fundamentals/{symbol}", methods: [GET]}
    upstream: {service: fundamentals, path: "/profile/{symbol}"}
    auth: partner
    scopes: [quotes:read]
    rate_limits: [{key_by: consumer, limit: 10, period_s: 1}]
    cache: {mode: ttl, ttl_s: 1}
    transforms: {response: {body: {rename: {headline: title}}}}
"""


@pytest.fixture(autouse=True)
def _no_shared_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process commands announce to no Redis unless a test gives one."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    """A migrated, empty config store of each backend."""
    yield from migrated_store(request.param, database_url)


def gateway(
    capsys: pytest.CaptureFixture[str], store_url: str | None, *args: str
) -> tuple[int, str, str]:
    """Run the command in this process: its exit status, stdout and stderr."""
    capsys.readouterr()
    status = main([*(["--database-url", store_url] if store_url else []), *args])
    out, err = capsys.readouterr()
    return status, out, err


def write(tmp_path: Path, text: str, name: str | None = None) -> str:
    path = tmp_path / (name or f"{uuid.uuid4().hex[:8]}.yaml")
    path.write_text(text, encoding="utf-8")
    return str(path)


def export(capsys: pytest.CaptureFixture[str], store_url: str) -> str:
    status, out, err = gateway(capsys, store_url, "config", "export")
    assert status == 0, err
    return out


def edited(text: str, edit: "dict[str, object] | None" = None) -> dict[str, object]:
    return {**yaml.safe_load(text), **(edit or {})}


def test_export_apply_on_an_empty_store_export_gives_the_same_file(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    assert yaml.safe_load(export(capsys, store_url)) == {
        "version": 1,
        "services": [],
        "plans": [],
        "consumers": [],
        "rate_limit_rules": [],
        "routes": [],
    }
    status, out, err = gateway(capsys, store_url, "config", "apply", write(tmp_path, SAMPLE))
    assert status == 0, err
    assert "applied 9 change(s)" in err
    assert "+ consumer acme-trading" in out
    first = export(capsys, store_url)
    exported = yaml.safe_load(first)
    assert [s["name"] for s in exported["services"]] == ["fundamentals", "news-archive"]
    fundamentals = exported["services"][0]
    # Only what the file set is stored of a policy; unset fields keep their defaults.
    assert fundamentals["policy"] == {
        "retries": {"attempts": 2, "retry_on": [503]},
        "bulkhead": {"max_concurrent": 16},
    }
    assert fundamentals["instances"][1] == {
        "url": "http://10.0.3.18:8080",
        "weight": 1,
        "enabled": False,
    }
    assert exported["consumers"][0]["oauth_client_id"] == "partner-acme"
    # A route as declared: what differs from the defaults.
    assert exported["routes"] == [yaml.safe_load(SAMPLE)["routes"][0]]
    assert "key" not in first.lower().replace("key_by", "")

    # Empty the store with an empty document, then apply the export to it.
    status, out, err = gateway(capsys, store_url, "config", "apply", write(tmp_path, "{}\n"))
    assert status == 0, err
    assert "- service fundamentals" in out and "- plan partner-pro" in out
    # A route goes before the service it names.
    assert out.index("- route fundamentals-profile") < out.index("- service fundamentals")
    assert yaml.safe_load(export(capsys, store_url))["services"] == []
    exported_file = write(tmp_path, first)
    status, _, err = gateway(capsys, store_url, "config", "apply", exported_file)
    assert status == 0, err
    assert export(capsys, store_url) == first
    status, out, err = gateway(capsys, store_url, "config", "diff", exported_file)
    assert (status, out) == (0, "")
    assert "no differences" in err


def test_diff_names_each_created_changed_and_deleted_entry(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    assert gateway(capsys, store_url, "config", "apply", write(tmp_path, SAMPLE))[0] == 0
    document = edited(SAMPLE)
    document["plans"][0]["rate_per_second"] = 7.5  # type: ignore[index]
    document["services"][0]["instances"][0]["weight"] = 5  # type: ignore[index]
    document["services"][0]["instances"].append({"url": "http://10.0.3.19:8080"})  # type: ignore[index]
    document["consumers"].append({"name": "gamma", "plan": "partner-basic"})  # type: ignore[attr-defined]
    document["rate_limit_rules"] = document["rate_limit_rules"][:1]  # type: ignore[index]
    document["routes"][0]["enabled"] = False  # type: ignore[index]
    document["routes"][0]["cache"] = {"mode": "origin"}  # type: ignore[index]
    status, out, _ = gateway(
        capsys, store_url, "config", "diff", write(tmp_path, yaml.safe_dump(document))
    )
    assert status == 1
    assert out.splitlines() == [
        "- rate limit rule per-address",
        "~ plan partner-basic: rate_per_second 5.0 -> 7.5",
        "+ instance fundamentals http://10.0.3.19:8080",
        "~ instance fundamentals http://10.0.3.17:8080: weight 3 -> 5",
        "+ consumer gamma",
        "~ route fundamentals-profile: enabled true -> false, "
        "cache {'mode': 'ttl', 'ttl_s': 1} -> {'mode': 'origin'}",
    ]


def test_dry_run_prints_the_changes_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    assert gateway(capsys, store_url, "config", "apply", write(tmp_path, SAMPLE))[0] == 0
    before = export(capsys, store_url)
    document = edited(SAMPLE, {"rate_limit_rules": [], "services": [], "routes": []})
    document["consumers"][0]["plan"] = "partner-basic"  # type: ignore[index]
    status, out, err = gateway(
        capsys,
        store_url,
        "config",
        "apply",
        "--dry-run",
        write(tmp_path, yaml.safe_dump(document)),
    )
    assert status == 0, err
    assert "- service fundamentals" in out
    assert "~ consumer acme-trading: plan 'partner-pro' -> 'partner-basic'" in out
    assert "nothing changed" in err
    assert export(capsys, store_url) == before


def test_an_invalid_last_entry_applies_nothing(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    assert gateway(capsys, store_url, "config", "apply", write(tmp_path, SAMPLE))[0] == 0
    before = export(capsys, store_url)
    document = edited(SAMPLE)
    document["plans"][0]["quota_per_day"] = 1  # type: ignore[index]
    document["rate_limit_rules"].append(  # type: ignore[attr-defined]
        {"name": "too-long", "key_by": "user", "limit": 5, "period_s": 86_401}
    )
    status, out, err = gateway(
        capsys, store_url, "config", "apply", write(tmp_path, yaml.safe_dump(document))
    )
    assert status == 1
    assert out == ""
    assert "rate_limit_rules[2].period_s: Input should be less than or equal to 86400" in err
    assert export(capsys, store_url) == before


async def _execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


def _refuse_new_rules(url: str) -> None:
    """A database that fails the apply part way: after plans, services and consumers."""
    if url.startswith("sqlite"):
        statements = [
            "CREATE TRIGGER refuse_rules BEFORE INSERT ON rate_limit_rules "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ]
    else:
        statements = [
            "CREATE FUNCTION refuse_rules() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_rules BEFORE INSERT ON rate_limit_rules "
            "FOR EACH ROW EXECUTE FUNCTION refuse_rules()",
        ]
    asyncio.run(_execute(url, *statements))


def test_a_database_failure_part_way_applies_nothing(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    document = edited(SAMPLE, {"rate_limit_rules": []})
    assert (
        gateway(capsys, store_url, "config", "apply", write(tmp_path, yaml.safe_dump(document)))[0]
        == 0
    )
    before = export(capsys, store_url)
    _refuse_new_rules(store_url)
    changed = edited(SAMPLE, {"services": [], "routes": []})
    changed["plans"][0]["quota_per_day"] = 5  # type: ignore[index]
    changed["consumers"].append({"name": "gamma"})  # type: ignore[attr-defined]
    status, out, err = gateway(
        capsys, store_url, "config", "apply", write(tmp_path, yaml.safe_dump(changed))
    )
    assert status == 1
    assert "refused by the test" in err
    assert out == ""
    assert export(capsys, store_url) == before


async def _revision(url: str) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return await RevisionRepository(session).current()
    finally:
        await engine.dispose()


def test_the_store_revision_rises_once_per_applied_file(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    """Running gateways that missed the notice see by the revision that they are behind."""
    before = asyncio.run(_revision(store_url))
    sample = write(tmp_path, SAMPLE)
    assert gateway(capsys, store_url, "config", "apply", "--dry-run", sample)[0] == 0
    assert asyncio.run(_revision(store_url)) == before
    assert gateway(capsys, store_url, "config", "apply", sample)[0] == 0
    assert asyncio.run(_revision(store_url)) == before + 1
    status, out, err = gateway(capsys, store_url, "config", "apply", sample)
    assert (status, out) == (0, "")
    assert "applied 0 change(s)" in err
    assert asyncio.run(_revision(store_url)) == before + 1
    assert gateway(capsys, store_url, "keys", "issue", "beta-fund")[0] == 0
    assert asyncio.run(_revision(store_url)) == before + 2


def test_a_row_written_around_the_admin_api_is_named_not_exported(
    capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    asyncio.run(
        _execute(
            store_url,
            "INSERT INTO plans (name, rate_per_second, scopes, created_at) "
            "VALUES ('by-hand', 1e-300, '[]', CURRENT_TIMESTAMP)",
        )
    )
    status, out, err = gateway(capsys, store_url, "config", "export")
    assert (status, out) == (1, "")
    assert "plan 'by-hand': rate_per_second: Input should be greater than or equal to 0.001" in err


def test_an_unreachable_database_is_named_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nowhere"
    status, out, err = gateway(capsys, url, "config", "apply", write(tmp_path, SAMPLE))
    assert (status, out) == (1, "")
    assert "the config database unavailable" in err


def test_an_oauth_client_moves_between_consumers_in_one_apply(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    assert gateway(capsys, store_url, "config", "apply", write(tmp_path, SAMPLE))[0] == 0
    document = edited(SAMPLE)
    document["consumers"][0]["oauth_client_id"] = None  # type: ignore[index]
    document["consumers"][1]["oauth_client_id"] = "partner-acme"  # type: ignore[index]
    status, _, err = gateway(
        capsys, store_url, "config", "apply", write(tmp_path, yaml.safe_dump(document))
    )
    assert status == 0, err
    consumers = yaml.safe_load(export(capsys, store_url))["consumers"]
    assert [c["oauth_client_id"] for c in consumers] == [None, "partner-acme"]


BAD = """\
plans:
  - name: basic
    scopes: [quotes:read]
consumers:
  - name: acme
    plan: gold
  - name: acme
    plan: basic
rate_limit_rules:
  - name: by-plan
    key_by: plan
    plan_name: gold
    limit: 10
    period_s: 1
"""


def test_check_validates_offline_and_names_each_fault(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = gateway(capsys, None, "check", write(tmp_path, SAMPLE, "good.yaml"))
    assert status == 0, err
    assert "valid: 2 service(s), 2 plan(s), 2 consumer(s), 2 rate limit rule(s), 1 route(s)" in out

    status, _, err = gateway(capsys, None, "check", write(tmp_path, BAD, "bad.yaml"))
    assert status == 1
    assert "bad.yaml: 3 fault(s)" in err
    assert "line 6: consumers[0].plan: no plan named 'gold' in plans" in err
    assert "line 7: consumers[1].name: 'acme' appears more than once in consumers" in err
    assert "line 12: rate_limit_rules[0].plan_name: no plan named 'gold' in plans" in err

    strict = "plans:\n  - name: basic\n    max_in_flight: true\n    rate_per_minute: '5'\n"
    status, _, err = gateway(capsys, None, "check", write(tmp_path, strict))
    assert status == 1
    # As strict as the admin API: a flag is not a number, nor text a number.
    assert "line 3: plans[0].max_in_flight: Input should be a valid integer" in err
    assert "line 4: plans[0].rate_per_minute: Input should be a valid integer" in err

    twice = "plans:\n  - name: basic\n    name: other\n"
    status, _, err = gateway(capsys, None, "check", write(tmp_path, twice))
    assert status == 1
    assert "key 'name' is given twice" in err and '.yaml", line 3' in err

    status, _, err = gateway(capsys, None, "check", write(tmp_path, "services: [\n"))
    assert status == 1 and "not valid YAML" in err
    status, _, err = gateway(capsys, None, "check", write(tmp_path, "routez: []\n"))
    assert status == 1 and "routez: Extra inputs are not permitted" in err

    lost = edited(SAMPLE, {"services": []})
    status, _, err = gateway(capsys, None, "check", write(tmp_path, yaml.safe_dump(lost)))
    assert status == 1
    assert "routes[0].upstream.service: no service named 'fundamentals' in services" in err
    # The route's own rules, as the admin API has them.
    lost = edited(SAMPLE)
    lost["routes"][0]["auth"] = "none"  # type: ignore[index]
    status, _, err = gateway(capsys, None, "check", write(tmp_path, yaml.safe_dump(lost)))
    assert status == 1
    assert "routes[0]: a route with auth none cannot require roles or scopes" in err


def test_routes_list_shows_each_route_under_the_prefix(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    assert gateway(capsys, store_url, "config", "apply", write(tmp_path, SAMPLE))[0] == 0
    status, out, err = gateway(capsys, store_url, "routes", "list")
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split() == [
        "NAME",
        "ENABLED",
        "METHODS",
        "PATH",
        "SERVICE",
        "UPSTREAM",
        "PATH",
        "AUTH",
    ]
    assert row.split() == [
        "fundamentals-profile",
        "yes",
        "GET",
        "/api/fundamentals/{symbol}",
        "fundamentals",
        "/profile/{symbol}",
        "partner",
        "quotes:read",
    ]
    assert "1 route(s)" in err


VERBS = [
    [],
    ["config"],
    ["config", "export"],
    ["config", "diff"],
    ["config", "apply"],
    ["config", "schema"],
    ["check"],
    ["routes"],
    ["routes", "list"],
    ["keys"],
    ["keys", "issue"],
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "gateway")
def test_every_verb_has_help(capsys: pytest.CaptureFixture[str], verb: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*verb, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: gateway {' '.join(verb)}".rstrip())
    assert len(out.splitlines()) > 3


def test_the_project_installs_the_command(tmp_path: Path) -> None:
    """`make install` puts `gateway` in the virtual environment's bin, and it runs."""
    result = subprocess.run(
        [str(GATEWAY), "check", write(tmp_path, SAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "valid: 2 service(s)" in result.stdout


def test_the_committed_schema_is_the_generated_one(tmp_path: Path) -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "schemas/gateway-config.schema.json is out of date: run `make openapi`"
    )
    # JSON Schema 2020-12, as editors (the YAML language server) read it: they accept what
    # the command accepts, and refuse what it refuses.
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator.validate(yaml.safe_load(SAMPLE))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(edited(SAMPLE, {"plans": [{"name": "basic", "quota_per_day": 0}]}))


# Against a running gateway: the command in its own process, as an operator runs it.


@pytest.fixture
async def shared_redis() -> AsyncIterator[PrefixedRedis]:
    async with prefixed_redis() as redis:
        yield redis


@pytest.fixture
async def live_gateway(
    settings: Settings, store_url: str, shared_redis: PrefixedRedis
) -> AsyncIterator[RunningGateway]:
    shared = settings.model_copy(
        update={
            "database_url": store_url,
            "redis_url": shared_redis.url,
            "redis_prefix": shared_redis.prefix,
            # Only the change notice can bring the change in time.
            "config_refresh_s": 0,
        }
    )
    async with running_gateway(shared) as gw:
        yield gw


@pytest.fixture
def command(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    store_url: str,
    shared_redis: PrefixedRedis,
) -> Callable[..., Awaitable[tuple[int, str, str]]]:
    """The command as an operator runs it beside the gateway: its own event loop (a thread
    here), the gateway's database and Redis from the environment."""
    monkeypatch.setenv("DATABASE_URL", store_url)
    monkeypatch.setenv("REDIS_URL", shared_redis.url)
    monkeypatch.setenv("GATEWAY_REDIS_PREFIX", shared_redis.prefix)

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = await asyncio.to_thread(main, list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


async def test_applied_consumer_and_issued_key_work_at_a_running_gateway_at_once(
    live_gateway: RunningGateway,
    command: Callable[..., Awaitable[tuple[int, str, str]]],
    tmp_path: Path,
) -> None:
    status, exported, err = await command("config", "export")
    assert status == 0, err
    document = yaml.safe_load(exported)
    # The gateway seeded the platform's services; the file keeps them.
    assert "market-data" in [s["name"] for s in document["services"]]
    document["plans"].append({"name": "cli-plan", "scopes": ["quotes:read"]})
    document["consumers"].append({"name": "cli-partner", "plan": "cli-plan"})
    status, out, err = await command("config", "apply", write(tmp_path, yaml.safe_dump(document)))
    assert status == 0, err
    assert out.splitlines() == ["+ plan cli-plan", "+ consumer cli-partner"]

    status, out, err = await command("keys", "issue", "cli-partner", "--name", "ci")
    assert status == 0, err
    key = out.strip()
    assert key.startswith("sbk_") and len(out.splitlines()) == 1
    assert "consumer 'cli-partner'" in err

    # The change notice reloads the gateway (its periodic refresh is off): the key works
    # as soon as the notice has arrived.
    async def quotes() -> httpx.Response:
        return await live_gateway.client.get(
            "/partner/v1/quotes", params={"symbols": "AAPL"}, headers={"X-API-Key": key}
        )

    response = await quotes()
    give_up_at = asyncio.get_running_loop().time() + 2
    while response.status_code == 401 and asyncio.get_running_loop().time() < give_up_at:
        await asyncio.sleep(0.05)
        response = await quotes()
    assert response.status_code == 200, response.text
    assert response.json()["quotes"][0]["symbol"] == "AAPL"

    status, _, err = await command("keys", "issue", "nobody")
    assert status == 1 and "no consumer named 'nobody'" in err

    # Deleting the consumer by file revokes its key at once (the revoked set in Redis).
    document["consumers"] = [c for c in document["consumers"] if c["name"] != "cli-partner"]
    status, out, err = await command("config", "apply", write(tmp_path, yaml.safe_dump(document)))
    assert status == 0, err
    assert out.splitlines() == ["- consumer cli-partner"]
    response = await quotes()
    assert response.status_code == 401
