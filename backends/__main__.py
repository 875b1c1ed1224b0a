"""Command line: ``python -m backends serve ...`` for one service, ``run-all`` for all of them."""

import argparse
import os
import sys

from backends.launcher import DEFAULT_BASE_PORT, DEFAULT_HOST, run_platform
from backends.services import DEFAULT_SEED, SERVICE_NAMES


def _fault_flags(parser: argparse.ArgumentParser) -> None:
    # Environment defaults let `make bench` slow every backend down without editing commands.
    group = parser.add_argument_group("initial faults (also settable later via PUT /__faults)")
    group.add_argument(
        "--latency-ms", type=float, default=float(os.environ.get("BACKENDS_LATENCY_MS", 0))
    )
    group.add_argument(
        "--error-rate", type=float, default=float(os.environ.get("BACKENDS_ERROR_RATE", 0))
    )
    group.add_argument(
        "--error-status", type=int, default=int(os.environ.get("BACKENDS_ERROR_STATUS", 503))
    )
    group.add_argument(
        "--drop-rate", type=float, default=float(os.environ.get("BACKENDS_DROP_RATE", 0))
    )


def _fault_args(arguments: argparse.Namespace) -> list[str]:
    return [
        f"--latency-ms={arguments.latency_ms}",
        f"--error-rate={arguments.error_rate}",
        f"--error-status={arguments.error_status}",
        f"--drop-rate={arguments.drop_rate}",
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backends", description="Simulated trading-platform services."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve one service instance")
    serve.add_argument("--service", required=True, choices=SERVICE_NAMES)
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument(
        "--instance", help="instance name reported by /health (default: <service>-1)"
    )
    serve.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="price-walk seed; equal seeds agree on prices",
    )
    serve.add_argument(
        "--exit-with-parent", action="store_true", help="exit when the launching process dies"
    )
    _fault_flags(serve)

    run_all = commands.add_parser("run-all", help="run every service as subprocesses until Ctrl-C")
    run_all.add_argument("--host", default=DEFAULT_HOST)
    run_all.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    run_all.add_argument("--seed", type=int, default=DEFAULT_SEED)
    _fault_flags(run_all)

    token = commands.add_parser(
        "token", help="print an access token from the development identity provider"
    )
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a demo user: alice, bob or carol")
    who.add_argument("--client", help="an OAuth client with client credentials: partner-acme")
    token.add_argument("--provider", default=f"http://{DEFAULT_HOST}:{DEFAULT_BASE_PORT + 6}")
    return parser


def _print_token(arguments: argparse.Namespace) -> int:
    # The standard library suffices: this runs outside the web stack, once.
    import json
    import urllib.error
    import urllib.request

    body = {"username": arguments.user} if arguments.user else {"client_id": arguments.client}
    request = urllib.request.Request(
        arguments.provider + "/__dev/token",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            print(json.load(response)["access_token"])
    except (urllib.error.URLError, OSError) as error:
        print(f"No token from {arguments.provider}: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    arguments = _parser().parse_args(argv)
    if arguments.command == "token":
        return _print_token(arguments)
    if arguments.command == "run-all":
        return run_platform(
            host=arguments.host,
            base_port=arguments.base_port,
            seed=arguments.seed,
            extra_args=_fault_args(arguments),
        )
    # Imported here so `run-all`, which only supervises children, never loads the web stack.
    from backends.faults import FaultSettings
    from backends.server import serve

    try:
        faults = FaultSettings(
            latency_ms=arguments.latency_ms,
            error_rate=arguments.error_rate,
            error_status=arguments.error_status,
            drop_rate=arguments.drop_rate,
        )
    except ValueError as error:
        print(f"Invalid fault settings: {error}", file=sys.stderr)
        return 2
    serve(
        arguments.service,
        host=arguments.host,
        port=arguments.port,
        instance=arguments.instance,
        seed=arguments.seed,
        faults=faults,
        exit_with_parent=arguments.exit_with_parent,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
