# One image for the API and the workers; the command picks the role:
#   API (default):       python -m uvicorn --factory src.api.main:app_from_env --host 0.0.0.0 --port 8000 ...
#   worker:              python workers.py
#   reconciler:          python workers.py --queue maintenance
#   single container:    scripts/start_web_and_workers.sh   (API + N_WORKERS workers + 1 maintenance)
# Build: docker build --build-arg APP_VERSION=$(git rev-parse --short HEAD) -t clinic-normalizer .

# --- builder: the pinned runtime dependencies in a virtualenv (cached until the lock changes) ---
FROM python:3.11.14-slim-trixie AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY deploy/requirements-runtime.lock /tmp/requirements-runtime.lock
# Exactly the lock's wheels, each checked against its sha256 (--require-hashes); --no-deps: only
# its pins; `pip check` fails the build if the lock is incomplete.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes --only-binary=:all: \
        -r /tmp/requirements-runtime.lock \
    && /opt/venv/bin/pip check

# --- runtime: the virtualenv, the code, a non-root user; no compilers, no dev tools ---
FROM python:3.11.14-slim-trixie AS runtime

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Code stays owned by root (read-only for the app user); only var/ (the SQLite store) is writable.
COPY workers.py ./
COPY src ./src
COPY scripts ./scripts
RUN mkdir -p /app/var && chown app:app /app/var && chmod 0755 scripts/start_web_and_workers.sh

# Last, so a new version rebuilds only these layers. Production refuses to start without it.
ARG APP_VERSION=""
ENV APP_VERSION=${APP_VERSION}

USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM

# Right for each role: the API's /healthz, a worker's heartbeat (as `workers.py --check`), or both
# for the single-container script; told by the container's command or HEALTHCHECK_ROLE.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "src.healthcheck"]

# Exec form: python is PID 1's child under `init: true` (or PID 1 itself) and receives SIGTERM directly.
# Never auto-reload: a reload kills running jobs mid-flight (the job-stall incident).
CMD ["python", "-m", "uvicorn", "--factory", "src.api.main:app_from_env", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "20"]
