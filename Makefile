# The documented interface: run, test, lint, migrate, openapi, bench.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run run-prod test lint format migrate openapi sdk bench lock clean

# The locked dependencies, then the project itself (editable, no dependencies): that puts
# the `gateway` command (app/cli.py) in .venv/bin.
install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

migrate: $(STAMP)
	$(PY) -m alembic upgrade head

# The gateway through its own server (app/serve.py); no drain on SIGTERM unless asked.
run: migrate
	@echo "Starting the simulated platform and the gateway on http://$(HOST):$(PORT)"
	@echo "  Swagger UI:   http://$(HOST):$(PORT)/docs"
	@echo "  Example call (in another terminal, once it is up):"
	@echo "    curl -s 'http://$(HOST):$(PORT)/web/v1/dashboard' -H \"Authorization: Bearer \$$($(PY) -m backends token --user alice)\""
	@echo "Ctrl-C stops everything."
	@$(PY) -m app.store.demo
	@trap 'kill $$platform 2>/dev/null; wait $$platform 2>/dev/null' EXIT; \
	$(PY) -m backends run-all & platform=$$!; \
	GATEWAY_DRAIN_S=$${GATEWAY_DRAIN_S:-0} $(PY) -m app.serve --host $(HOST) --port $(PORT)

# WORKERS processes on one socket, on PostgreSQL and Redis (a node, a cluster or Sentinel;
# see the README's Deployment section), after the migrations; SIGTERM drains, then stops:
#   DATABASE_URL=postgresql+asyncpg://... REDIS_URL=redis+cluster://h1:6379,h2:6379 \
#     make run-prod WORKERS=4 HOST=0.0.0.0
WORKERS ?= 2
run-prod: $(STAMP)
	@case "$$DATABASE_URL" in postgresql*) ;; *) echo "run-prod needs DATABASE_URL=postgresql+asyncpg://..."; exit 2;; esac
	@test -n "$$REDIS_URL$$GATEWAY_REDIS__CLUSTER_NODES$$GATEWAY_REDIS__SENTINELS" || { echo "run-prod needs REDIS_URL (or GATEWAY_REDIS__CLUSTER_NODES / GATEWAY_REDIS__SENTINELS)"; exit 2; }
	$(PY) -m alembic upgrade head
	$(PY) -m app.serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The committed API documents (openapi/) and the config file's JSON Schema (schemas/).
openapi: $(STAMP)
	$(PY) -m app.openapi_export
	$(PY) -m app.cli config schema > schemas/gateway-config.schema.json

# Clients generated from the committed web document (git-ignored, see sdk/README.md):
# TypeScript (openapi-typescript + openapi-fetch, pinned in sdk/typescript/package-lock.json,
# compiled with tsc --strict) and Python (openapi-python-client, pinned in the dev extras).
sdk: $(STAMP)
	cd sdk/typescript && npm ci --no-audit --no-fund && npm run generate && npm run build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/openapi-python-client generate \
		--path openapi/web-v1.json --meta none --output-path sdk/python/stockbot_web --overwrite

# wrk and valgrind where they can be installed (root, apt); without them the bench falls
# back to its Python load generator and skips instruction counts, and says so.
bench: $(STAMP)
	@command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null || echo "wrk not installed: using the Python load generator"
	@command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null || echo "valgrind not installed: no instruction counts"
	$(PY) -m bench

# Re-resolve the locked dependencies from pyproject.toml.
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
