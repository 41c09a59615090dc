"""Settings read from the environment.

LangGraph Server's variable names are kept where a concept is shared (``DATABASE_URI``, ``REDIS_URI``,
``N_JOBS_PER_WORKER``, ``LOG_LEVEL``…) so existing deployments carry over; lgql's own start with ``LGQL_``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URI", "DATABASE_URL", "POSTGRES_URI"),
        description="Postgres URL; unset under `lgql dev` means the embedded Postgres.",
    )
    redis_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URI", "REDIS_URL"),
        description="Redis/Valkey URL; unset under `lgql dev` means the embedded Valkey.",
    )
    redis_key_prefix: str = Field(default="lgql", validation_alias="REDIS_KEY_PREFIX")
    config: Path = Field(default=Path("langgraph.json"), validation_alias="LGQL_CONFIG")
    host: str = Field(default="127.0.0.1", validation_alias="LGQL_HOST")
    port: int = Field(default=2024, validation_alias="LGQL_PORT")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    data_dir: Path = Field(
        default=Path(".lgql"),
        validation_alias="LGQL_DATA_DIR",
        description="Where the embedded engines keep their data (relative to the working directory).",
    )
    # GraphQL limits: on by default, a public API must not need configuring to be safe.
    max_page_size: int = Field(default=100, validation_alias="LGQL_MAX_PAGE_SIZE")
    max_query_depth: int = Field(default=12, validation_alias="LGQL_MAX_QUERY_DEPTH")
    max_aliases: int = Field(default=30, validation_alias="LGQL_MAX_ALIASES")
    max_tokens: int = Field(default=5000, validation_alias="LGQL_MAX_TOKENS")
    introspection: bool = Field(default=True, validation_alias="LGQL_INTROSPECTION")
    allowed_origins: str = Field(
        default="",
        # LGQL_CORS_ALLOW_ORIGINS: its name when it governed CORS alone.
        validation_alias=AliasChoices("LGQL_ALLOWED_ORIGINS", "LGQL_CORS_ALLOW_ORIGINS"),
        description="Comma-separated origins whose pages may call the API, over HTTP (CORS) and "
        "WebSocket (* for any); wins over langgraph.json `http.cors`.",
    )
    graphiql: bool = Field(default=True, validation_alias="LGQL_GRAPHIQL")
    db_pool_size: int = Field(default=10, validation_alias="LGQL_DB_POOL_SIZE")
    pgbouncer: bool | None = Field(
        default=None,
        validation_alias="LGQL_PGBOUNCER",
        description="`DATABASE_URI` names a PgBouncer in transaction mode: no named prepared "
        "statements (unset: found out at start-up; docs/operations.md).",
    )
    migration_database_uri: str | None = Field(
        default=None,
        validation_alias="LGQL_MIGRATION_DATABASE_URI",
        description="Postgres URL migrations use (`lgql migrate`, `lgql dev`): Postgres itself "
        "when `DATABASE_URI` names a PgBouncer. Unset: `DATABASE_URI`.",
    )
    n_jobs_per_worker: int = Field(default=10, validation_alias="N_JOBS_PER_WORKER")
    api_run_slots: int = Field(
        default=0,
        ge=0,
        validation_alias="LGQL_API_RUN_SLOTS",
        description="Runs a client waits for (runAndWait, runStream, /runs/wait, /runs/stream) "
        "an API process executes itself, at most this many at a time, instead of handing them "
        "to a worker; 0: every run goes to the workers.",
    )
    bg_job_timeout_secs: float = Field(
        default=86400,
        validation_alias="BG_JOB_TIMEOUT_SECS",
        description="Wall-clock limit of a run; past it the run ends TIMEOUT.",
    )
    bg_job_max_retries: int = Field(
        default=3,
        validation_alias="BG_JOB_MAX_RETRIES",
        description="Attempts a run gets when its worker dies under it; then it ends ERROR.",
    )
    bg_job_shutdown_grace_period_secs: float = Field(
        default=180,
        validation_alias="BG_JOB_SHUTDOWN_GRACE_PERIOD_SECS",
        description="On SIGTERM a worker lets its runs finish this long, then hands them back.",
    )
    resumable_stream_ttl_seconds: float = Field(
        default=120,
        validation_alias="RESUMABLE_STREAM_TTL_SECONDS",
        description="How long a run's events stay replayable after it ends.",
    )
    stream_max_events: int = Field(
        default=100_000,
        validation_alias="LGQL_STREAM_MAX_EVENTS",
        description="Events kept per run stream (older ones are trimmed).",
    )
    run_lease_seconds: float = Field(
        default=10,
        validation_alias="LGQL_RUN_LEASE_SECONDS",
        description="A running run's lease; its worker renews it, another takes over when it lapses.",
    )
    sweep_interval_seconds: float = Field(
        default=2,
        validation_alias="LGQL_SWEEP_INTERVAL_SECONDS",
        description="How often workers look for lapsed leases and due delayed runs.",
    )

    cron_interval_seconds: float = Field(
        default=5,
        validation_alias=AliasChoices("LGQL_CRON_INTERVAL_SECONDS", "CRON_SCHEDULER_SLEEP_TIME"),
        description="How often workers look for due crons.",
    )
    dev: bool = Field(
        default=False,
        validation_alias="LGQL_DEV",
        description="Set by `lgql dev`: a local server, where webhooks may target this machine.",
    )
    webhook_allow_private: bool | None = Field(
        default=None,
        validation_alias="LGQL_WEBHOOK_ALLOW_PRIVATE",
        description="Let webhooks target loopback and private networks (default: only under `lgql dev`).",
    )
    webhook_allowed_hosts: str = Field(
        default="",
        validation_alias="LGQL_WEBHOOK_ALLOWED_HOSTS",
        description="Comma-separated hosts (`*.corp.com` patterns) webhooks may target; empty = any public host.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias="LGQL_WEBHOOK_SECRET",
        description="Signs every webhook with an HMAC-SHA256 header when set.",
    )
    webhook_timeout_seconds: float = Field(
        default=30,
        validation_alias="LGQL_WEBHOOK_TIMEOUT_SECONDS",
        description="Time a webhook receiver gets to answer one delivery attempt.",
    )
    webhook_max_attempts: int = Field(
        default=5,
        validation_alias="LGQL_WEBHOOK_MAX_ATTEMPTS",
        description="Delivery attempts of a webhook before it is given up (logged, marked failed).",
    )
    # Hostile input (docs/hardening.md): caps on what one request may carry, and CORS.
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024,
        validation_alias=AliasChoices("LGQL_MAX_BODY_BYTES", "HTTP_MAX_REQUEST_BODY_BYTES"),
        description="Larger HTTP request bodies are refused with 413 PAYLOAD_TOO_LARGE.",
    )
    max_json_depth: int = Field(
        default=32,
        validation_alias="LGQL_MAX_JSON_DEPTH",
        description="Deepest nesting of arrays and objects a `JSON` input value may have.",
    )
    max_json_bytes: int = Field(
        default=1024 * 1024,
        validation_alias="LGQL_MAX_JSON_BYTES",
        description="Largest serialized size (bytes) of one `JSON` input value.",
    )
    cors_allow_credentials: bool | None = Field(
        default=None,
        validation_alias="LGQL_CORS_ALLOW_CREDENTIALS",
        description="Let cross-origin requests carry cookies and auth; wins over langgraph.json `http.cors`.",
    )

    auth_type: str | None = Field(
        default=None,
        validation_alias="LANGGRAPH_AUTH_TYPE",
        description="`noop` turns langgraph.json's custom auth off (as on LangGraph Server).",
    )

    # Observability (docs/observability.md).
    log_format: str = Field(
        default="text",
        validation_alias="LGQL_LOG_FORMAT",
        description="`text` (one line: time level logger: message) or `json` (one object a line).",
    )
    log_json: bool = Field(
        default=False,
        validation_alias="LOG_JSON",
        description="LangGraph Server's switch for JSON logs: true means `LGQL_LOG_FORMAT=json`.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        validation_alias="LGQL_METRICS_TOKEN",
        description="When set, `/metrics` (API and worker) asks for `Authorization: Bearer <token>`.",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        validation_alias="LGQL_WORKER_METRICS_PORT",
        description="Port of a worker's `/metrics` listener (off when unset; `lgql worker --metrics-port`).",
    )
    worker_metrics_host: str = Field(
        default="0.0.0.0",
        validation_alias="LGQL_WORKER_METRICS_HOST",
        description="Interface a worker's `/metrics` listener binds (all, for a scraper on another host).",
    )

    @model_validator(mode="after")
    def _log_json(self) -> Settings:
        if self.log_json:
            self.log_format = "json"
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()


def origins(settings: Settings) -> list[str]:
    return [o.strip() for o in settings.allowed_origins.split(",") if o.strip()]
