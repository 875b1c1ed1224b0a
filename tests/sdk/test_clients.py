"""The generated clients against a running gateway: `make sdk` generates the TypeScript
(compiled with tsc --strict) and Python clients from the committed web document, and a short
script of each calls the dashboard, places a limit order twice with one idempotency key and
reads a 422 as its typed problem. npm is needed (CI has it); without it the test fails under
CI=true and is skipped elsewhere."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backends.launcher import Platform
from tests.fixtures.databases import in_ci
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.identity import bearer_headers

# `make sdk` installs the npm packages and generates both clients inside the first test.
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk"


@pytest.fixture(scope="module")
def generated_clients() -> Path:
    """`make sdk`, once for the module."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        message = "npm and node are needed to build the TypeScript client (apt-get install npm)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    built = subprocess.run(
        ["make", "sdk"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert (SDK / "typescript" / "dist" / "src" / "example.js").is_file()
    assert (SDK / "python" / "stockbot_web" / "client.py").is_file()
    return SDK


async def _run(command: list[str], *, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run a script while this loop goes on serving the gateway; its one JSON line."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


def _check(result: dict[str, Any]) -> None:
    assert isinstance(result["equity"], float | int)
    assert result["degraded"] == []
    assert str(result["order_id"]).strip()
    assert result["replayed"] == "true"
    assert result["same_order"] is True
    assert result["problem_type"] == "/problems/validation-error"
    assert result["problem_fields"] == ["body.quantity"]


async def _token(platform: Platform) -> str:
    headers = await bearer_headers(platform, username="alice")
    return headers["Authorization"].removeprefix("Bearer ")


async def test_the_typescript_client_runs_against_the_gateway(
    generated_clients: Path, gateway: RunningGateway, platform: Platform
) -> None:
    env = {"BASE_URL": gateway.url, "TOKEN": await _token(platform)}
    result = await _run(
        ["node", "dist/src/example.js"], env=env, cwd=generated_clients / "typescript"
    )
    _check(result)


async def test_the_python_client_runs_against_the_gateway(
    generated_clients: Path, gateway: RunningGateway, platform: Platform
) -> None:
    env = {
        "BASE_URL": gateway.url,
        "TOKEN": await _token(platform),
        "PYTHONPATH": str(generated_clients / "python"),
    }
    result = await _run([sys.executable, "python/example.py"], env=env, cwd=generated_clients)
    _check(result)
