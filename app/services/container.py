"""All services of one process, opened together and closed together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from arq.connections import ArqRedis

from app.auth.context import Authorization
from app.auth.handlers import AuthHandlers
from app.db.engine import Database
from app.db.schema_version import ensure_up_to_date
from app.messaging.queue import Broker, connect_queue
from app.messaging.streams import EventStreams
from app.messaging.wakeups import RunWakeups
from app.persistence.checkpointer import PostgresCheckpointer
from app.persistence.store import open_store
from app.runtime.graphs import GraphRegistry
from app.runtime.langgraph_config import LanggraphConfig
from app.services.assistants import AssistantService
from app.services.crons import CronService
from app.services.run_execution import RunExecution
from app.services.run_streams import RunStreamService
from app.services.runs import RunService
from app.services.store import StoreService
from app.services.system import SystemService
from app.services.thread_ttl import ThreadTTLConfig
from app.services.threads import ThreadService
from app.services.webhook_policy import WebhookPolicy
from app.services.webhooks import WebhookService
from app.services.worker_presence import WorkerPresence
from app.settings import Settings

log = logging.getLogger("lgql.services")


@dataclass
class Services:
    settings: Settings
    langgraph_config: LanggraphConfig
    database_uri: str
    redis_uri: str
    db: Database
    redis: ArqRedis
    broker: Broker
    wakeups: RunWakeups
    streams: EventStreams
    graphs: GraphRegistry
    checkpointer: PostgresCheckpointer
    assistants: AssistantService
    threads: ThreadService
    runs: RunService
    execution: RunExecution
    run_streams: RunStreamService
    auth: Authorization
    store: StoreService
    crons: CronService
    webhooks: WebhookService
    system: SystemService
    workers: WorkerPresence


@asynccontextmanager
async def open_services(
    settings: Settings,
    langgraph_config: LanggraphConfig,
    *,
    database_uri: str,
    redis_uri: str,
    migrate: bool = False,
    graphs: GraphRegistry | None = None,
) -> AsyncIterator[Services]:
    """Connect, check (or apply, with `migrate`) the migrations, load graphs, sync default assistants.

    Raises DatabaseBehindError when the database is behind and `migrate` is false, GraphLoadError
    when a graph cannot be imported. `graphs`, already loaded from `langgraph_config`, are used
    as they are (`lgql dev` imports them before it starts the engines).
    """
    if migrate:
        # Alembic only where migrations are applied (app.db.schema_version).
        from app.db.migrate import upgrade

        # Postgres itself when DATABASE_URI names a PgBouncer (LGQL_MIGRATION_DATABASE_URI).
        before, after = await upgrade(settings.migration_database_uri or database_uri)
        if before != after:
            log.info("database migrated from %s to %s", before or "(empty)", after)
    else:
        await ensure_up_to_date(database_uri)
    thread_ttl = ThreadTTLConfig.from_langgraph(langgraph_config.checkpointer)
    auth = Authorization(
        await asyncio.to_thread(
            AuthHandlers.load, langgraph_config, dev=settings.dev, auth_type=settings.auth_type
        )
    )
    if graphs is None:
        graphs = await GraphRegistry.load(langgraph_config)
    db = await Database.connect(
        database_uri, pool_size=settings.db_pool_size, pgbouncer=settings.pgbouncer
    )
    try:
        redis = await connect_queue(redis_uri, settings.redis_key_prefix)
    except BaseException:
        await db.close()
        raise
    broker = Broker(redis, settings.redis_key_prefix)
    wakeups = RunWakeups(redis, settings.redis_key_prefix)
    try:
        await redis.ping()
        checkpointer = PostgresCheckpointer(db.pool)
        store = StoreService(
            await open_store(db.pool, langgraph_config),
            max_page_size=settings.max_page_size,
            auth=auth,
        )
        assistants = AssistantService(db, graphs, auth)
        streams = EventStreams(
            redis,
            settings.redis_key_prefix,
            retention_seconds=settings.resumable_stream_ttl_seconds,
            maxlen=settings.stream_max_events,
        )
        threads = ThreadService(db, graphs, checkpointer, thread_ttl, auth, streams=streams)
        execution = RunExecution(
            db=db,
            broker=broker,
            wakeups=wakeups,
            streams=streams,
            graphs=graphs,
            checkpointer=checkpointer,
            threads=threads,
            lease_seconds=settings.run_lease_seconds,
        )
        runs = RunService(
            db,
            broker,
            assistants,
            threads,
            checkpointer,
            execution,
            webhook_policy=WebhookPolicy.from_config(settings, langgraph_config.webhooks),
        )
        services = Services(
            settings=settings,
            langgraph_config=langgraph_config,
            database_uri=database_uri,
            redis_uri=redis_uri,
            db=db,
            redis=redis,
            broker=broker,
            wakeups=wakeups,
            streams=streams,
            graphs=graphs,
            checkpointer=checkpointer,
            assistants=assistants,
            threads=threads,
            runs=runs,
            execution=execution,
            run_streams=RunStreamService(db, streams, broker, runs, threads),
            auth=auth,
            store=store,
            crons=CronService(db, runs, assistants, threads),
            webhooks=WebhookService(settings, langgraph_config, db, broker),
            system=SystemService(db, redis, settings.redis_key_prefix, graphs),
            workers=WorkerPresence(redis, settings.redis_key_prefix),
        )
        await services.assistants.ensure_default_assistants()
        try:
            yield services
        finally:
            await services.webhooks.close()
    finally:
        await broker.close()
        await redis.aclose()
        await db.close()
