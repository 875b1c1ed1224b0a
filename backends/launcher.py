"""Start simulated services as real subprocesses: for tests, ``make run`` and benchmarks.

    with start_platform() as platform:
        platform.urls  # {"market-data": [url1, url2], "portfolio": [url], ...}

Each backend is ``python -m backends serve ...`` in its own process, bound to a
port of its own; ``start_service`` returns once ``/health`` answers.
"""

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

from backends.services import DEFAULT_SEED, SERVICE_NAMES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 9101
# (service, instance) in port order: run-all binds them to base_port, base_port + 1, ...
PLATFORM_LAYOUT: tuple[tuple[str, str], ...] = (
    ("market-data", "market-data-1"),
    ("market-data", "market-data-2"),
    ("portfolio", "portfolio-1"),
    ("orders", "orders-1"),
    ("news", "news-1"),
    ("bots", "bots-1"),
    # The development OpenID Connect provider: 9107 under run-all.
    ("identity", "identity-1"),
)
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_READY_POLL_SECONDS = 0.05
_PORT_RETRIES = 3

# Children still alive at interpreter exit get killed, so a crashed test run leaves no strays.
_live_processes: "weakref.WeakSet[BackendProcess]" = weakref.WeakSet()


class BackendStartError(RuntimeError):
    """A backend exited or never became healthy during startup."""


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class BackendProcess:
    """One service instance running as a child process."""

    def __init__(
        self,
        service: str,
        *,
        port: int | None = None,
        instance: str | None = None,
        seed: int = DEFAULT_SEED,
        host: str = DEFAULT_HOST,
        extra_args: Sequence[str] = (),
        capture_output: bool = True,
    ) -> None:
        if service not in SERVICE_NAMES:
            raise ValueError(
                f"Unknown service {service!r}; expected one of {', '.join(SERVICE_NAMES)}"
            )
        self.service = service
        self.instance = instance or f"{service}-1"
        self.seed = seed
        self.host = host
        self.extra_args = tuple(extra_args)
        # An OS-chosen port can be taken by someone else before the child binds it; only
        # then is it safe to retry elsewhere.
        self._port_is_ours_to_change = port is None
        self.port = port if port is not None else free_port(host)
        self._capture_output = capture_output
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9101``."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id while one has been spawned."""
        return None if self._process is None else self._process.pid

    @property
    def is_running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def spawn(self) -> None:
        """Start the child without waiting for it to become healthy."""
        if self.is_running:
            return
        command = [
            sys.executable, "-m", "backends", "serve",
            "--service", self.service,
            "--host", self.host,
            "--port", str(self.port),
            "--instance", self.instance,
            "--seed", str(self.seed),
            "--exit-with-parent",
            *self.extra_args,
        ]  # fmt: skip
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_PROJECT_ROOT), environment.get("PYTHONPATH")])
        )
        self._close_stderr()
        # Lives as long as the child (closed by stop/kill) so a failed start can show its stderr.
        self._stderr = tempfile.TemporaryFile() if self._capture_output else None  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            env=environment,
            stdout=subprocess.DEVNULL if self._capture_output else None,
            stderr=self._stderr,
            # Own session: a Ctrl-C in the terminal reaches only the parent, which then
            # stops the children in an orderly way.
            start_new_session=True,
        )
        _live_processes.add(self)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Block until ``/health`` answers; BackendStartError if the child dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running:
                raise BackendStartError(
                    f"{self.instance} exited during startup:\n{self.stderr_text()}"
                )
            if self._healthy():
                return
            time.sleep(_READY_POLL_SECONDS)
        failure = BackendStartError(
            f"{self.instance} not healthy at {self.url} after {timeout:.0f}s:\n{self.stderr_text()}"
        )
        self.kill()
        raise failure

    def start(self, timeout: float = 20.0) -> None:
        """Spawn the child and wait until it is healthy."""
        self.spawn()
        self.finish_start(timeout)

    def finish_start(self, timeout: float = 20.0) -> None:
        """Wait until the spawned child is healthy; move to a fresh port if ours was taken."""
        for attempt in range(_PORT_RETRIES + 1):
            try:
                self.wait_ready(timeout)
                return
            except BackendStartError as error:
                if attempt == _PORT_RETRIES or not self._lost_port_race(error):
                    raise
                self.port = free_port(self.host)
                self.spawn()

    def request_stop(self) -> None:
        """Ask the child to shut down gracefully (SIGTERM) without waiting for it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful shutdown (SIGTERM), escalating to SIGKILL after ``timeout`` seconds."""
        if self._process is None:
            return
        self.request_stop()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._close_stderr()

    def kill(self) -> None:
        """Kill the child abruptly (SIGKILL), as a crash would."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close_stderr()

    def restart(self, timeout: float = 20.0) -> None:
        """Stop if running, then start again on the same port."""
        self.stop()
        self.spawn()
        self.wait_ready(timeout)

    def set_faults(self, **settings: object) -> dict[str, Any]:
        """Merge fault settings (``latency_ms``, ``error_rate``, ...) via ``PUT /__faults``."""
        return self._control("PUT", "/__faults", settings)

    def reset_faults(self) -> dict[str, Any]:
        """Back to the startup fault settings via ``DELETE /__faults``."""
        return self._control("DELETE", "/__faults")

    def stats(self) -> dict[str, Any]:
        """Request counts and last headers per route (``GET /__stats``)."""
        return self._control("GET", "/__stats")

    def reset_stats(self) -> dict[str, Any]:
        """Forget the recorded requests (``DELETE /__stats``)."""
        return self._control("DELETE", "/__stats")

    def stderr_text(self) -> str:
        """What the child wrote to stderr so far (empty when output is not captured)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as response:
                return bool(response.status == 200 and json.load(response).get("status") == "ok")
        except (OSError, ValueError):
            # OSError covers refused connections, resets and timeouts (URLError is one).
            return False

    def _control(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer: dict[str, Any] = json.load(response)
            return answer

    def _lost_port_race(self, error: BackendStartError) -> bool:
        return self._port_is_ours_to_change and "address already in use" in str(error).lower()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"BackendProcess({self.instance!r}, url={self.url!r}, {state})"


def start_service(
    service: str,
    *,
    port: int | None = None,
    instance: str | None = None,
    seed: int = DEFAULT_SEED,
    host: str = DEFAULT_HOST,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 20.0,
    capture_output: bool = True,
) -> BackendProcess:
    """Start one service instance (on a free port unless ``port`` is given), healthy on return."""
    backend = BackendProcess(
        service,
        port=port,
        instance=instance,
        seed=seed,
        host=host,
        extra_args=extra_args,
        capture_output=capture_output,
    )
    backend.start(startup_timeout)
    return backend


class Platform:
    """The whole simulated platform: every service of PLATFORM_LAYOUT, each its own process."""

    def __init__(self, processes: Iterable[BackendProcess]) -> None:
        self.processes = list(processes)

    @property
    def urls(self) -> dict[str, list[str]]:
        """Service name -> base URLs of its instances (market-data has two)."""
        mapping: dict[str, list[str]] = {}
        for backend in self.processes:
            mapping.setdefault(backend.service, []).append(backend.url)
        return mapping

    def services_config(self) -> dict[str, list[str]]:
        """The gateway's service-URL configuration for this platform (same as ``urls``)."""
        return self.urls

    def instances(self, service: str) -> list[BackendProcess]:
        """The processes running ``service``."""
        return [backend for backend in self.processes if backend.service == service]

    def process(self, service: str, index: int = 0) -> BackendProcess:
        """The ``index``-th instance of ``service``."""
        return self.instances(service)[index]

    def reset_faults(self) -> None:
        """Clear injected faults on every running instance."""
        for backend in self.processes:
            if backend.is_running:
                backend.reset_faults()

    def reset_stats(self) -> None:
        """Clear the request statistics of every running instance."""
        for backend in self.processes:
            if backend.is_running:
                backend.reset_stats()

    def stop(self) -> None:
        """Stop every service (in parallel: each may take a moment to drain)."""
        for backend in self.processes:
            backend.request_stop()
        for backend in self.processes:
            backend.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_platform(
    *,
    host: str = DEFAULT_HOST,
    seed: int = DEFAULT_SEED,
    base_port: int | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 20.0,
    capture_output: bool = True,
    services: Collection[str] | None = None,
) -> Platform:
    """Start the platform (free ports, or consecutive from ``base_port``); healthy on return.

    ``services`` limits it to those service names; ports keep their layout positions.
    """
    processes = [
        BackendProcess(
            service,
            port=None if base_port is None else base_port + offset,
            instance=instance,
            seed=seed,
            host=host,
            extra_args=extra_args,
            capture_output=capture_output,
        )
        for offset, (service, instance) in enumerate(PLATFORM_LAYOUT)
        if services is None or service in services
    ]
    platform = Platform(processes)
    try:
        # Spawn everything first so the interpreters boot in parallel, then wait for each.
        for backend in processes:
            backend.spawn()
        for backend in processes:
            backend.finish_start(startup_timeout)
    except BaseException:
        platform.stop()
        raise
    return platform


def services_config(
    *, host: str = DEFAULT_HOST, base_port: int = DEFAULT_BASE_PORT
) -> dict[str, list[str]]:
    """Service name -> URLs in the fixed port layout of ``run-all`` (market-data twice)."""
    mapping: dict[str, list[str]] = {}
    for offset, (service, _) in enumerate(PLATFORM_LAYOUT):
        mapping.setdefault(service, []).append(f"http://{host}:{base_port + offset}")
    return mapping


def run_platform(
    *,
    host: str = DEFAULT_HOST,
    base_port: int = DEFAULT_BASE_PORT,
    seed: int = DEFAULT_SEED,
    extra_args: Sequence[str] = (),
) -> int:
    """Run the platform in the foreground until SIGINT/SIGTERM; returns a process exit code."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        platform = start_platform(
            host=host, seed=seed, base_port=base_port, extra_args=extra_args, capture_output=False
        )
    except BackendStartError as error:
        print(f"Platform failed to start: {error}", file=sys.stderr)
        return 1
    print(f"{'SERVICE':<13} {'INSTANCE':<15} URL")
    for backend in platform.processes:
        print(f"{backend.service:<13} {backend.instance:<15} {backend.url}")
    print("Simulated platform running; press Ctrl-C to stop.", flush=True)
    exit_code = 0
    while not stop_requested.wait(0.5):
        crashed = [backend for backend in platform.processes if not backend.is_running]
        if crashed:
            names = ", ".join(backend.instance for backend in crashed)
            print(
                f"Backend(s) exited unexpectedly: {names}; stopping the platform.", file=sys.stderr
            )
            exit_code = 1
            break
    platform.stop()
    return exit_code


@atexit.register
def _kill_strays() -> None:
    for backend in list(_live_processes):
        backend.kill()
