"""The deployment files, checked as far as a machine without a Docker engine or a cluster
allows: every Kubernetes manifest (the base and each overlay, built by `kubectl kustomize`)
against the Kubernetes schemas bundled with `kubernetes-validate` (offline), the
ServiceMonitor (a CRD the bundle does not hold) against its structure; probes, ports and
the drain period against the application's own routes and settings; the Dockerfile's
essentials; the compose file's wiring."""

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import app.serve
from app.main import create_app
from app.settings import Settings
from tests.fixtures.databases import ROOT, in_ci

K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = ["base", "overlays/dev", "overlays/prod"]
# The newest schemas in the bundle.
KUBERNETES_VERSION = kubernetes_validate.latest_version()
# What the server gives requests in flight after the drain (app/serve.py).
GRACEFUL_SHUTDOWN_S = app.serve._GRACEFUL_SHUTDOWN_S


def _build(kustomization: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        message = "kubectl (for kustomize) is not installed"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S / kustomization)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _build(request.param)


def _one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in manifests if doc["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)}"
    return found[0]


def _gateway_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    pod = _one(manifests, "Deployment")["spec"]["template"]["spec"]
    container: dict[str, Any] = next(c for c in pod["containers"] if c["name"] == "gateway")
    return container


def test_the_bundled_schemas_work_offline() -> None:
    """A broken manifest is caught, so the check below can fail."""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "three", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_every_manifest_matches_the_kubernetes_schemas(manifests: list[dict[str, Any]]) -> None:
    kinds = {doc["kind"] for doc in manifests}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "NetworkPolicy",
        "ServiceMonitor",
        "ServiceAccount",
    } <= kinds
    for doc in manifests:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            _check_service_monitor(doc, manifests)
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _check_service_monitor(monitor: dict[str, Any], manifests: list[dict[str, Any]]) -> None:
    """The CRD's required shape (monitoring.coreos.com/v1), and that it finds the Service's
    named port and the gateway's metrics path."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    service = _one(manifests, "Service")
    labels = service["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    port_names = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["port"] in port_names
        assert endpoint["path"] in _app_paths()
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])


@functools.cache
def _app_paths() -> frozenset[str]:
    """Where the application serves its health checks and metrics (by their handlers)."""
    gateway = create_app(Settings())
    return frozenset(gateway.url_path_for(name) for name in ("healthz", "readyz", "metrics"))


def test_probes_ports_and_drain_agree_with_the_application(
    manifests: list[dict[str, Any]],
) -> None:
    deployment = _one(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _gateway_container(manifests)
    paths = _app_paths()
    probes = {name: container[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["startupProbe"]["httpGet"]["path"] == "/healthz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    served = int(container["command"][container["command"].index("--port") + 1])
    assert ports == {"http": served}
    for probe in probes.values():
        assert probe["httpGet"]["path"] in paths
        assert probe["httpGet"]["port"] in ("http", served)
    assert served == _dockerfile_port()

    # The settings as the pod reads them (ConfigMap, Secret where there is one) are valid,
    # and the drain period is the one the preStop hook and the grace period assume.
    config = _one(manifests, "ConfigMap")["data"]
    secrets = [doc for doc in manifests if doc["kind"] == "Secret"]
    env = {**config, **(secrets[0]["stringData"] if secrets else _placeholder_secrets())}
    settings = _settings_from(env)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop == settings.drain_s
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + settings.drain_s + GRACEFUL_SHUTDOWN_S
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _dockerfile_uid()
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/srv/gateway/" + Path(settings.config_snapshot_path).parent.as_posix() in mounts
    assert "/tmp" in mounts  # the read-only root leaves nothing else writable
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]

    hpa = _one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = _one(manifests, "PodDisruptionBudget")
    template_labels = pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    service = _one(manifests, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= {"http", served}
    policy = _one(manifests, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    job = _one(manifests, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-3:] == [
        "alembic",
        "upgrade",
        "head",
    ]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == container["image"]


def _placeholder_secrets() -> dict[str, str]:
    """Production brings its own Secret; the base's keys stand in for its values."""
    base = yaml.safe_load((K8S / "base" / "secret.yaml").read_text())
    values: dict[str, str] = base["stringData"]
    return values


def _settings_from(env: dict[str, str]) -> Settings:
    """Settings read from `env` alone, as the pod's process would."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("GATEWAY_") or k in env}
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update(env)
        return Settings()
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def test_production_runs_on_a_cluster_and_brings_its_own_secret() -> None:
    built = _build("overlays/prod")
    assert not [doc for doc in built if doc["kind"] == "Secret"]
    assert _one(built, "ConfigMap")["data"]["GATEWAY_ENVIRONMENT"] == "production"
    assert _one(built, "Deployment")["spec"]["replicas"] >= 3
    assert _placeholder_secrets()["REDIS_URL"].startswith("redis+cluster://")


def _dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _final_stage() -> list[str]:
    lines = _dockerfile()
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def _dockerfile_port() -> int:
    exposed = [line for line in _final_stage() if line.upper().startswith("EXPOSE ")]
    assert len(exposed) == 1
    return int(exposed[0].split()[1])


def _dockerfile_uid() -> int:
    users = [line for line in _final_stage() if line.upper().startswith("USER ")]
    return int(users[-1].split()[1].split(":")[0])


def test_dockerfile_essentials() -> None:
    lines = _dockerfile()
    final = _final_stage()
    # Multi-stage, every base pinned to an exact version (or a digest).
    args = dict(
        line.split(None, 1)[1].split("=", 1)
        for line in lines
        if line.upper().startswith("ARG ") and "=" in line
    )
    bases = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    assert len(bases) >= 2
    for base in bases:
        image = args.get(base.strip("${}"), base)
        assert re.search(r"@sha256:[0-9a-f]{64}$|:\d+\.\d+\.\d+[\w.-]*$", image), image
    # Runs as a numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
    assert _dockerfile_uid() != 0
    # The locked dependencies; a health check and the stop signal the drain listens to.
    assert any("requirements.lock" in line for line in lines if line.upper().startswith("RUN "))
    healthcheck = next(line for line in final if line.upper().startswith("HEALTHCHECK "))
    assert "/healthz" in healthcheck and f":{_dockerfile_port()}/" in healthcheck
    assert "STOPSIGNAL SIGTERM" in final
    cmd = next(line for line in final if line.upper().startswith("CMD "))
    assert '"app.serve"' in cmd
    # No secret baked in: no credential-looking ENV or ARG with a value, no key files.
    for line in lines:
        if line.upper().startswith(("ENV ", "ARG ")):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|PEPPER|_KEY)\w*\s*=", line, re.I), line
        if line.upper().startswith(("COPY ", "ADD ")):
            assert not re.search(r"\.env\b|\.pem\b|\.key\b|id_rsa", line), line
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", "var", ".git"} <= set(ignored)


def test_compose_runs_the_gateway_with_its_parts() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"gateway", "postgres", "redis", "platform", "migrate"} <= set(services)
    gateway = services["gateway"]
    env = gateway["environment"]
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert gateway["stop_signal"] == "SIGTERM"
    grace = int(gateway["stop_grace_period"].rstrip("s"))
    assert grace >= float(env["GATEWAY_DRAIN_S"]) + GRACEFUL_SHUTDOWN_S
    assert gateway["read_only"] is True
    assert set(gateway["tmpfs"]) == {"/srv/gateway/var", "/tmp"}
    ports = {int(p.rsplit(":", 1)[1]) for p in gateway["ports"]}
    assert ports == {_dockerfile_port()}
    services_env = yaml.safe_load(env["GATEWAY_SERVICES"])
    for urls in services_env.values():
        assert all(url.startswith("http://platform:") for url in urls)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"DATABASE_URL": "sqlite+aiosqlite:///x.db", "REDIS_URL": "redis://r"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql+asyncpg://db/gw"}, "REDIS_URL"),
    ],
)
def test_run_prod_refuses_to_start_without_postgres_and_redis(
    env: dict[str, str], missing: str
) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GATEWAY_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    ran = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "run-prod"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 2
    assert f"run-prod needs {missing}" in ran.stdout
