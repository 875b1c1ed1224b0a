# The documented interface: run, test, lint, migrate, openapi, bench.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint format migrate openapi bench lock clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

migrate: $(STAMP)
	$(PY) -m alembic upgrade head

run: migrate
	@echo "Starting the simulated platform and the gateway on http://$(HOST):$(PORT)"
	@echo "  Swagger UI:   http://$(HOST):$(PORT)/docs"
	@echo "  Example call (in another terminal, once it is up):"
	@echo "    curl -s 'http://$(HOST):$(PORT)/web/v1/dashboard' -H \"Authorization: Bearer \$$($(PY) -m backends token --user alice)\""
	@echo "Ctrl-C stops everything."
	@trap 'kill $$platform 2>/dev/null; wait $$platform 2>/dev/null' EXIT; \
	$(PY) -m backends run-all & platform=$$!; \
	$(PY) -m uvicorn app.asgi:app --host $(HOST) --port $(PORT) --loop uvloop --http httptools --no-access-log --no-proxy-headers --no-server-header --timeout-graceful-shutdown 10

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

openapi: $(STAMP)
	$(PY) -m app.openapi_export

bench: $(STAMP)
	$(PY) -m bench

# Re-resolve the locked dependencies from pyproject.toml.
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
