"""What a client may ask of a new run (LangGraph's run-create body), checked before anything is
written."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from app.errors import BadUserInput
from app.runtime.run_options import RunOptions
from app.runtime.stream_events import StreamMode
from app.services.common import JsonValue, require_checkpoint_map, require_object


class MultitaskStrategy(enum.StrEnum):
    REJECT = "reject"
    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"


class IfNotExists(enum.StrEnum):
    CREATE = "create"
    REJECT = "reject"


class OnCompletion(enum.StrEnum):
    DELETE = "delete"
    KEEP = "keep"


class OnDisconnect(enum.StrEnum):
    CANCEL = "cancel"
    CONTINUE = "continue"


class Durability(enum.StrEnum):
    SYNC = "sync"
    ASYNC = "async"
    EXIT = "exit"


#: The modes a run may ask for (`StreamMode`'s values).
STREAM_MODES = frozenset(StreamMode)


@dataclass(frozen=True)
class RunCommand:
    resume: JsonValue = None
    update: JsonValue = None
    goto: JsonValue = None
    has_resume: bool = False


@dataclass
class RunRequest:
    """A run to create. `thread_id` None means stateless (a temporary thread)."""

    assistant_id: str
    thread_id: str | None = None
    input: JsonValue = None
    command: RunCommand | None = None
    config: JsonValue = None
    context: JsonValue = None
    metadata: JsonValue = None
    stream_mode: list[str] = field(default_factory=lambda: ["values"])
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: list[str] | None = None
    interrupt_after: list[str] | None = None
    checkpoint_id: str | None = None
    #: The chosen checkpoint's graph namespace (a subgraph's) and LangGraph's `checkpoint_map`
    #: (the checkpoint id for each namespace), as in a checkpoint's config.
    checkpoint_ns: str = ""
    checkpoint_map: JsonValue = None
    webhook: str | None = None
    multitask_strategy: MultitaskStrategy = MultitaskStrategy.ENQUEUE
    if_not_exists: IfNotExists | None = None
    on_completion: OnCompletion | None = None
    on_disconnect: OnDisconnect = OnDisconnect.CONTINUE
    after_seconds: float = 0
    durability: Durability = Durability.ASYNC
    # Not an option of the run: names the request, so a retry finds the run the first one made
    # (`app.services.idempotency`).
    idempotency_key: str | None = None
    # Request headers the run's config carries (LangGraph's `http.configurable_headers`: `x-*`,
    # `user-agent`), set by an HTTP transport; stored under `config.configurable`, below the
    # request's own keys. Not checked against `context` (the server adds them, as LangGraph does).
    configurable_headers: dict[str, str] = field(default_factory=dict)

    def fingerprint_fields(self) -> dict[str, Any]:
        """The request's input, to tell a retry from a different request reusing its key."""
        fields = dataclasses.asdict(self)
        fields.pop("idempotency_key")
        fields.pop("configurable_headers")  # a retry may come with another user-agent
        # Absent, as in requests fingerprinted before a checkpoint could name them.
        for name in ("checkpoint_ns", "checkpoint_map"):
            if not fields[name]:
                fields.pop(name)
        return fields

    def checked(self) -> RunRequest:
        """Raise BadUserInput for any option LangGraph Server would refuse."""
        require_object(self.metadata, "metadata")
        config = require_object(self.config, "config") or {}
        require_object(self.context, "context")
        if not isinstance(self.checkpoint_ns, str):
            raise BadUserInput("`checkpoint_ns` must be a string", field="checkpoint_ns")
        require_checkpoint_map(self.checkpoint_map)
        configurable = config.get("configurable")
        if configurable is not None and not isinstance(configurable, dict):
            raise BadUserInput("`config.configurable` must be a JSON object", field="config")
        if configurable and self.context:
            raise BadUserInput(
                "Cannot specify both configurable and context. Prefer setting context alone.",
                field="context",
            )
        if "recursion_limit" in config and not (
            isinstance(config["recursion_limit"], int) and config["recursion_limit"] > 0
        ):
            raise BadUserInput(
                "`config.recursion_limit` must be a positive integer", field="config"
            )
        if "tags" in config and not (
            isinstance(config["tags"], list) and all(isinstance(t, str) for t in config["tags"])
        ):
            raise BadUserInput("`config.tags` must be a list of strings", field="config")
        if self.command is not None and self.input is not None:
            raise BadUserInput("Give either `input` or `command`, not both", field="command")
        if self.command is not None and self.command.has_resume and self.thread_id is None:
            raise BadUserInput(
                "`command.resume` needs a thread: a stateless run has nothing to resume",
                field="command",
            )
        if self.command is not None and self.command.update is not None:
            update = self.command.update
            if not isinstance(update, dict) and not (
                isinstance(update, list)
                and all(
                    isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in update
                )
            ):
                raise BadUserInput(
                    "`command.update` must be an object or a list of [key, value] pairs",
                    field="command",
                )
        if self.command is not None and self.command.goto is not None:
            goto = self.command.goto
            if not (isinstance(goto, str) or _sends(goto)):
                raise BadUserInput(
                    "`command.goto` must be a node name, a list of them, or {node, input} sends",
                    field="command",
                )
        for mode in self.stream_mode:
            if mode not in STREAM_MODES:
                raise BadUserInput(f"unknown stream mode {mode!r}", field="streamMode")
        if self.after_seconds < 0 or self.after_seconds != self.after_seconds:
            raise BadUserInput("`afterSeconds` must be zero or more", field="afterSeconds")
        if self.webhook is not None:
            parts = urlsplit(self.webhook)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise BadUserInput("`webhook` must be an absolute http(s) URL", field="webhook")
        if self.thread_id is not None and self.on_completion is not None:
            raise BadUserInput(
                "`onCompletion` applies to stateless runs only", field="onCompletion"
            )
        return self

    def add_configurable(self, **values: Any) -> None:
        """Add server-set `config.configurable` keys (a cron's id, the caller's identity) after
        `checked()`: a request with `context` may not carry `configurable` keys of its own."""
        config = dict(self.config or {})
        config["configurable"] = {**(config.get("configurable") or {}), **values}
        self.config = config

    def options(self) -> RunOptions:
        """The run's options, as the worker reads them back from the run row."""
        command = None
        if self.command is not None:
            command = {
                k: v
                for k, v in (
                    ("resume", self.command.resume),
                    ("update", self.command.update),
                    ("goto", self.command.goto),
                )
                if v is not None or (k == "resume" and self.command.has_resume)
            }
        config: dict[str, Any] = dict(self.config or {})
        if self.configurable_headers:
            own = config.get("configurable") or {}
            config["configurable"] = {**self.configurable_headers, **own}
        return RunOptions(
            input=self.input,
            command=command,
            config=config,
            context=self.context or {},
            stream_mode=tuple(self.stream_mode),
            stream_subgraphs=self.stream_subgraphs,
            stream_resumable=self.stream_resumable,
            interrupt_before=self.interrupt_before,
            interrupt_after=self.interrupt_after,
            checkpoint_id=self.checkpoint_id,
            checkpoint_ns=self.checkpoint_ns,
            checkpoint_map=require_checkpoint_map(self.checkpoint_map),
            webhook=self.webhook,
            temporary=self.thread_id is None and self.on_completion is not OnCompletion.KEEP,
            on_disconnect=self.on_disconnect.value,
            durability=self.durability.value,
        )

    def kwargs(self) -> dict[str, Any]:
        """The run's options as stored on the run row (LangGraph's `kwargs`)."""
        return self.options().to_kwargs()


def _sends(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return all(
        isinstance(i, str) or (isinstance(i, dict) and isinstance(i.get("node"), str))
        for i in items
    )


# What authenticate returned may hold the user's own credentials (LangGraph's docs put API
# tokens there for graphs to use): graphs get it in their config, clients and webhooks never.
PRIVATE_CONFIGURABLE_KEYS = ("langgraph_auth_user",)


def public_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A run's `kwargs` as shown to clients and webhook receivers."""
    config = kwargs.get("config")
    if not isinstance(config, dict):
        return kwargs
    configurable = config.get("configurable")
    if not isinstance(configurable, dict) or not any(
        k in configurable for k in PRIVATE_CONFIGURABLE_KEYS
    ):
        return kwargs
    shown = {k: v for k, v in configurable.items() if k not in PRIVATE_CONFIGURABLE_KEYS}
    return {**kwargs, "config": {**config, "configurable": shown}}


#: Never copied into a run's config, whatever langgraph.json says (credentials).
_NEVER_COPIED = frozenset({"authorization", "x-api-key", "x-service-key", "x-tenant-id"})


def _header_patterns(values: Any) -> list[re.Pattern[str]]:
    """langgraph.json header patterns: literals with `*` wildcards (no other regex syntax)."""
    if not isinstance(values, list):
        return []
    return [
        re.compile("".join(".*" if c == "*" else re.escape(c) for c in str(v).lower()) + r"\Z")
        for v in values
    ]


def headers_for_configurable(
    headers: Mapping[str, str], http_config: Mapping[str, Any] | None
) -> dict[str, str]:
    """The request headers LangGraph Server copies into a run's `config.configurable` (for
    `RunRequest.configurable_headers`, whatever transport took the request): those langgraph.json
    `http.configurable_headers` `includes` and does not `excludes` (none without it; never
    credentials), and `x-request-id` as `langgraph_request_id`."""
    rules = (http_config or {}).get("configurable_headers") or {}
    includes = _header_patterns(rules.get("includes") or rules.get("include"))
    excludes = _header_patterns(rules.get("excludes") or rules.get("exclude"))
    copied: dict[str, str] = {}
    for key, value in headers.items():
        name = key.lower()
        if name in _NEVER_COPIED or any(p.match(name) for p in excludes):
            continue
        if any(p.match(name) for p in includes):
            copied[name] = value
    if (request_id := headers.get("x-request-id")) is not None:
        copied["langgraph_request_id"] = request_id
    return copied
