"""Admin endpoint over the config snapshot this process serves: its version, when and from
where it was loaded, and the stored rows it refused.

A refused row is one the hot path could not serve (a value outside the ranges it enforces,
or one that cannot be read, usually written around the admin API); the snapshot leaves it
out and keeps the rest. Each process answers for its own snapshot.
"""

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.deps import ConfigStoreDep

router = APIRouter(prefix="/config", tags=["admin: traffic"])


class RefusedRowView(BaseModel):
    """A stored row left out of the snapshot."""

    table: str = Field(examples=["plans"])
    id: int = Field(description="The row's primary key")
    reason: str


class ConfigView(BaseModel):
    """The config snapshot this process serves."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": 12,
                    "revision": 40,
                    "loaded_at": "2026-11-26T10:40:00Z",
                    "source": "database",
                    "stale": False,
                    "routes": ["market-data-quotes", "news-latest"],
                    "refused": [
                        {
                            "table": "plans",
                            "id": 4,
                            "reason": "rate_per_second must be at least 1.16e-05 (one a day), "
                            "not 1e-300",
                        }
                    ],
                }
            ]
        }
    )

    version: int = Field(
        description="This process's count: changes whenever the configuration it serves changes"
    )
    revision: int = Field(
        description="The config store's revision the snapshot was read at: the same in every "
        "process serving the same configuration; a process behind the others catches up"
    )
    loaded_at: datetime | None = Field(description="When the content was read from the database")
    source: Literal["database", "disk"] = Field(
        description="`disk`: the database was unavailable at start-up and the process serves "
        "the snapshot the last load wrote to disk, until the database answers"
    )
    stale: bool = Field(description="Served from disk, not yet confirmed by the database")
    routes: list[str] = Field(description="The pass-through routes this process serves, by name")
    refused: list[RefusedRowView]


@router.get("", response_model=ConfigView)
async def get_config(config: ConfigStoreDep) -> ConfigView:
    """This process's config snapshot: version, when and from where it was loaded, refused rows."""
    snapshot = config.current
    return ConfigView(
        version=snapshot.version,
        revision=snapshot.revision,
        loaded_at=snapshot.loaded_at,
        source=snapshot.source,
        stale=config.stale,
        routes=[route.declaration.name for route in snapshot.routes],
        refused=[
            RefusedRowView(table=row.table, id=row.row_id, reason=row.reason)
            for row in snapshot.refused
        ],
    )
