"""The `gateway` command against SQLite and PostgreSQL: export, diff, apply (all or nothing),
check offline, keys that authenticate at a running gateway, and the published schema."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fastjsonschema
import pytest
import yaml

from app.cli import main, schema_text
from app.settings import Settings
from app.store.database import create_engine
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
    }
    status, out, err = gateway(capsys, store_url, "config", "apply", write(tmp_path, SAMPLE))
    assert status == 0, err
    assert "applied 8 change(s)" in err
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
    assert "key" not in first.lower().replace("key_by", "")

    # Empty the store with an empty document, then apply the export to it.
    status, out, err = gateway(capsys, store_url, "config", "apply", write(tmp_path, "{}\n"))
    assert status == 0, err
    assert "- service fundamentals" in out and "- plan partner-pro" in out
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
    ]


def test_dry_run_prints_the_changes_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    assert gateway(capsys, store_url, "config", "apply", write(tmp_path, SAMPLE))[0] == 0
    before = export(capsys, store_url)
    document = edited(SAMPLE, {"rate_limit_rules": [], "services": []})
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
    changed = edited(SAMPLE, {"services": []})
    changed["plans"][0]["quota_per_day"] = 5  # type: ignore[index]
    changed["consumers"].append({"name": "gamma"})  # type: ignore[attr-defined]
    status, out, err = gateway(
        capsys, store_url, "config", "apply", write(tmp_path, yaml.safe_dump(changed))
    )
    assert status == 1
    assert "refused by the test" in err
    assert out == ""
    assert export(capsys, store_url) == before


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
    assert "valid: 2 service(s), 2 plan(s), 2 consumer(s), 2 rate limit rule(s)" in out

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
    assert "key 'name' is given twice" in err and "line 3" in err

    status, _, err = gateway(capsys, None, "check", write(tmp_path, "services: [\n"))
    assert status == 1 and "not valid YAML" in err
    status, _, err = gateway(capsys, None, "check", write(tmp_path, "routez: []\n"))
    assert status == 1 and "routez: Extra inputs are not permitted" in err


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


def test_the_project_installs_the_command() -> None:
    result = subprocess.run(
        [str(GATEWAY), "config", "apply", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--dry-run" in result.stdout


def test_the_committed_schema_is_the_generated_one(tmp_path: Path) -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "schemas/gateway-config.schema.json is out of date: "
        "run `gateway config schema > schemas/gateway-config.schema.json`"
    )
    validate = fastjsonschema.compile(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    # What editors check against the schema, they check as the command does.
    validate(yaml.safe_load(SAMPLE))
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate(edited(SAMPLE, {"plans": [{"name": "basic", "quota_per_day": 0}]}))


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


async def run_command(
    store_url: str, redis: PrefixedRedis, *args: str, stdin: str | None = None
) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": store_url,
        "REDIS_URL": redis.url,
        "GATEWAY_REDIS_PREFIX": redis.prefix,
    }
    process = await asyncio.create_subprocess_exec(
        str(GATEWAY),
        *args,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else None), 60
    )
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_applied_consumer_and_issued_key_work_at_a_running_gateway_at_once(
    live_gateway: RunningGateway, store_url: str, shared_redis: PrefixedRedis
) -> None:
    status, exported, err = await run_command(store_url, shared_redis, "config", "export")
    assert status == 0, err
    document = yaml.safe_load(exported)
    # The gateway seeded the platform's services; the file keeps them.
    assert "market-data" in [s["name"] for s in document["services"]]
    document["plans"].append({"name": "cli-plan", "scopes": ["quotes:read"]})
    document["consumers"].append({"name": "cli-partner", "plan": "cli-plan"})
    status, out, err = await run_command(
        store_url, shared_redis, "config", "apply", "-", stdin=yaml.safe_dump(document)
    )
    assert status == 0, err
    assert out.splitlines() == ["+ plan cli-plan", "+ consumer cli-partner"]

    status, out, err = await run_command(
        store_url, shared_redis, "keys", "issue", "cli-partner", "--name", "ci"
    )
    assert status == 0, err
    key = out.strip()
    assert key.startswith("sbk_") and len(out.splitlines()) == 1
    assert "consumer 'cli-partner'" in err

    # The change notice has reloaded the gateway: the key works without waiting for a refresh.
    response = await live_gateway.client.get(
        "/partner/v1/quotes", params={"symbols": "AAPL"}, headers={"X-API-Key": key}
    )
    assert response.status_code == 200, response.text
    assert response.json()["quotes"][0]["symbol"] == "AAPL"

    status, _, err = await run_command(store_url, shared_redis, "keys", "issue", "nobody")
    assert status == 1 and "no consumer named 'nobody'" in err

    # Deleting the consumer by file revokes its key at once.
    document["consumers"] = [c for c in document["consumers"] if c["name"] != "cli-partner"]
    status, out, err = await run_command(
        store_url, shared_redis, "config", "apply", "-", stdin=yaml.safe_dump(document)
    )
    assert status == 0, err
    assert out.splitlines() == ["- consumer cli-partner"]
    response = await live_gateway.client.get(
        "/partner/v1/quotes", params={"symbols": "AAPL"}, headers={"X-API-Key": key}
    )
    assert response.status_code == 401
