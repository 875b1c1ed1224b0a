"""Start the processes a benchmark needs and wait until they answer."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx


def pinned(command: Sequence[str], *, measured: bool) -> list[str]:
    """`command`, confined to its cores when the machine has two or more and `taskset`.

    The process under measurement (gateway or bare baseline) gets core 0 to itself; the
    load tool and the upstream share the others. Otherwise which of them steals from the
    measured process changes from run to run, and so do the ratios.
    """
    cores = os.cpu_count() or 1
    if cores < 2 or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", "0" if measured else f"1-{cores - 1}", *command]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_uvicorn(
    name: str,
    target: str,
    *,
    health_path: str,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    measured: bool = False,
) -> Server:
    """Serve `target` (module:app) with uvicorn on a free port, one worker; `measured` for
    the process whose throughput is compared (see `pinned`)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        # As the gateway runs: X-Forwarded-For is the edge's to judge, no `server` banner.
        "--no-proxy-headers",
        "--no-server-header",
        "--log-level",
        "warning",
        *extra_args,
    ]
    process = subprocess.Popen(
        pinned(command, measured=measured), env={**os.environ, **(env or {})}
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(name, url + health_path, process)
    return Server(name, url, process)


def wait_until_up(name: str, url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} during start-up")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{name} did not answer at {url} within 30 s")
