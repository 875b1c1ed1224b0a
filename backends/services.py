"""Registry of the simulated services and assembly of a servable ASGI app."""

import importlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fastapi import FastAPI

    from backends.faults import FaultInjector, FaultSettings

DEFAULT_SEED = 42

# Service name -> module with ``create_app(*, instance, seed)``.  Imported lazily: the
# launcher and `run-all` only need the names, and a serving process only one service.
SERVICE_MODULES: dict[str, str] = {
    "market-data": "backends.market_data",
    "portfolio": "backends.portfolio",
    "orders": "backends.orders",
    "news": "backends.news",
    "bots": "backends.bots",
    "identity": "backends.identity",
}
SERVICE_NAMES: tuple[str, ...] = tuple(SERVICE_MODULES)


class ServiceFactory(Protocol):
    def __call__(self, *, instance: str, seed: int) -> "FastAPI": ...


def build_service(
    service: str,
    *,
    instance: str | None = None,
    seed: int = DEFAULT_SEED,
    faults: "FaultSettings | None" = None,
) -> "FaultInjector":
    """The named service wrapped in fault injection, ready for an ASGI server."""
    from backends.faults import FaultInjector

    if service not in SERVICE_MODULES:
        raise ValueError(f"Unknown service {service!r}; expected one of {', '.join(SERVICE_NAMES)}")
    create_app: ServiceFactory = importlib.import_module(SERVICE_MODULES[service]).create_app
    app = create_app(instance=instance or f"{service}-1", seed=seed)
    return FaultInjector(app, faults)
