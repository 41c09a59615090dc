# The production image: `lgql serve` by default, `lgql worker` and `lgql migrate` with another
# command. Embedded engines (`lgql dev`) are not in it: production points DATABASE_URI and
# REDIS_URI at real servers. docs/operations.md has the Kubernetes manifests that run it.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Libraries that cache under $HOME write to /tmp (the root filesystem may be read-only).
    HOME=/tmp

WORKDIR /app
COPY pyproject.toml README.md alembic.ini langgraph.json ./
COPY app ./app
COPY schema ./schema
COPY workers ./workers
COPY lgql ./lgql
COPY migrations ./migrations
COPY examples ./examples
# `.` without extras: no embedded Postgres or Valkey. Bytecode compiled now, as root: the
# process never needs to write next to its code.
RUN pip install . && python -m compileall -q /app \
    && groupadd --system --gid 10001 lgql \
    && useradd --system --uid 10001 --gid lgql --home-dir /tmp --no-create-home lgql

USER 10001:10001
EXPOSE 2024
# The API's liveness (asks nothing of Postgres or Redis). A worker container has no port 2024:
# docker-compose.yml gives it a check of its own.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:2024/ok?check_db=0', timeout=4).status != 200)"]
CMD ["lgql", "serve", "--host", "0.0.0.0", "--port", "2024"]
