"""FastAPI scaffolding shared by every simulated service: health check and error shape."""

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from backends.catalog import ACCOUNTS, DemoAccount


class Health(BaseModel):
    """Liveness answer naming the service and the instance that replied."""

    status: str
    service: str
    instance: str


def create_service_app(service: str, instance: str) -> FastAPI:
    """A FastAPI app with ``GET /health`` and ``{"detail": "<text>"}`` validation errors."""
    app = FastAPI(title=f"Simulated {service} service", version="1.0.0")
    health = Health(status="ok", service=service, instance=instance)

    @app.get("/health", response_model=Health)
    async def get_health() -> Health:
        """Report that this instance is up."""
        return health

    app.add_exception_handler(RequestValidationError, _validation_error_as_text)
    return app


async def _validation_error_as_text(request: Request, exc: Exception) -> JSONResponse:
    # The platform contract promises a string detail on every error, 422s included,
    # so the gateway can surface it verbatim instead of parsing FastAPI's error list.
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(status_code=422, content={"detail": describe_errors(errors)})


def describe_errors(errors: Sequence[Any]) -> str:
    """Render pydantic/FastAPI validation errors as one readable sentence."""
    messages = []
    for error in errors:
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        # Drop the "body"/"query"/"path" prefix: the field name is what a client needs.
        field_path = ".".join(str(part) for part in error.get("loc", ())[1:])
        messages.append(f"{field_path}: {message}" if field_path else message)
    return "; ".join(messages) or "Invalid request"


def account_or_404(account_id: str) -> DemoAccount:
    """The demo account with this id, or a 404 naming it."""
    account = ACCOUNTS.get(account_id)
    if account is None:
        raise HTTPException(status_code=404, detail=f"Account {account_id} not found")
    return account


def split_symbols(raw: str, *, max_count: int) -> list[str]:
    """Parse a comma-separated symbol list (upper-cased, de-duplicated, order kept)."""
    symbols = list(dict.fromkeys(part.strip().upper() for part in raw.split(",") if part.strip()))
    if len(symbols) > max_count:
        raise HTTPException(status_code=422, detail=f"At most {max_count} symbols per request")
    return symbols
