# The gateway's image: python -m app.serve on the locked dependencies, as a non-root user.
#
# Build:  docker build -t stockbot-gateway:0.1.0 .
# Run:    docker run -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... stockbot-gateway:0.1.0
#
# The same image runs the migrations (`python -m alembic upgrade head`) and, for local
# stacks, the simulated platform (`python -m backends run-all`); see compose.yaml and
# deploy/k8s/. No secret is baked in: every credential comes from the environment.

# An exact base tag (pin it by digest in your registry mirror: python:3.11.7-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml requirements.lock ./
COPY app ./app
COPY backends ./backends
# The runtime dependencies at the versions in requirements.lock (the lock also holds the
# dev tools, which stay out: only what the project itself requires is installed); the
# project's own package is removed again, the code is copied below as plain files.
RUN pip install --constraint requirements.lock . \
    && pip uninstall --yes stockbot-gateway \
    && pip check

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home \
       --home-dir /srv/gateway --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/gateway
COPY alembic.ini ./
COPY alembic ./alembic
COPY app ./app
COPY backends ./backends
# The only place the gateway writes (the config snapshot file): owned by the user, a
# volume (emptyDir) under a read-only root filesystem.
RUN mkdir var && chown gateway:gateway var
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_DRAIN_S=5
USER 10001:10001
EXPOSE 8000
# On SIGTERM the server drains (/readyz answers 503) for GATEWAY_DRAIN_S, then lets the
# requests in flight finish (10 s at most): give it GATEWAY_DRAIN_S + 15 s before SIGKILL
# (`docker stop --time 20`, compose's stop_grace_period, Kubernetes'
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["python", "-m", "app.serve", "--host", "0.0.0.0", "--port", "8000"]
