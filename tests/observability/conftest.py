"""Fixtures of the observability tests: the gateway's log lines as its handler writes them."""

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from app.observability.logging import JsonFormatter


class CapturedLog:
    """Every line the gateway's loggers wrote while it was installed, formatted as in
    production (JSON), kept as text so a test can search it for secrets."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "gateway.access"]

    def access_of(self, request_id: str) -> dict[str, Any]:
        (line,) = [line for line in self.access() if line["request_id"] == request_id]
        return line


@pytest.fixture
def captured_log() -> Iterator[CapturedLog]:
    captured = CapturedLog()
    logger = logging.getLogger("gateway")
    level = logger.level
    logger.addHandler(captured.handler)
    logger.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        logger.removeHandler(captured.handler)
        logger.setLevel(level)
