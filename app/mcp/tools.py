"""Assistants as MCP tools, over the services: listing them, and calling one as a stateless run.

A tool call is an ordinary run (`RunService.create`, then `RunService.wait`): queued, executed
by a worker, recorded, listed by GraphQL `runs` and joinable with `joinRunStream` while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import jsonschema
import mcp_types as types

from app.errors import ServiceError
from app.pagination import PageRequest, SortOrder
from app.services.assistants import AssistantFilter, AssistantRecord
from app.services.container import Services
from app.services.run_outcome import RunOutcome
from app.services.run_request import OnDisconnect, RunRequest

log = logging.getLogger("lgql.mcp")

# MCP (2025-11-25) tool names: 1 to 128 of A-Z a-z 0-9 _ - .
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_NAME_LENGTH = 128
# Listing walks every visible assistant; this bounds one `tools/list` however many there are.
MAX_TOOLS = 1000
_PAGE = 100
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def tool_name(assistant_name: str) -> str:
    """A valid MCP tool name from an assistant's name: every run of other characters becomes
    `_`, and it is cut at 128 characters ("" when nothing is left)."""
    return _INVALID_CHARS.sub("_", assistant_name.strip())[:MAX_NAME_LENGTH].strip("_")


@dataclass(frozen=True)
class ToolEntry:
    name: str
    assistant: AssistantRecord


class AssistantTools:
    """The tools the current user may see and call: one per visible assistant."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def entries(self) -> list[ToolEntry]:
        """One entry per visible assistant, oldest first, so a name keeps pointing at the same
        assistant when newer ones take the same name (those are skipped, as on LangGraph
        Server, and so are names with no valid character)."""
        seen: set[str] = set()
        out: list[ToolEntry] = []
        after: str | None = None
        while len(out) < MAX_TOOLS:
            page = await self._services.assistants.search(
                AssistantFilter(), PageRequest(first=_PAGE, after=after), order=SortOrder.ASC
            )
            for assistant in page.items:
                name = tool_name(assistant.name or "")
                if not name or name in seen:
                    continue
                seen.add(name)
                out.append(ToolEntry(name, assistant))
            if not page.has_next_page or not page.cursors:
                break
            after = page.cursors[-1]
        return out[:MAX_TOOLS]

    async def input_schema(self, assistant: AssistantRecord) -> dict[str, Any]:
        """The graph's input JSON schema (an object schema, as MCP requires)."""
        try:
            schemas = await self._services.assistants.schemas(assistant)
        except Exception:  # a graph whose schema cannot be built still gets a callable tool
            log.warning("no input schema for assistant %s", assistant.assistant_id, exc_info=True)
            return dict(ANY_OBJECT)
        schema = schemas.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            return dict(ANY_OBJECT)
        return {"type": "object", **schema}

    async def list(self) -> types.ListToolsResult:
        entries = await self.entries()
        schemas = await asyncio.gather(*(self.input_schema(e.assistant) for e in entries))
        tools = [
            types.Tool(
                name=e.name,
                description=e.assistant.description or f"Runs the assistant '{e.assistant.name}'",
                input_schema=schema,
            )
            for e, schema in zip(entries, schemas, strict=True)
        ]
        # What a user sees depends on who they are: never let a client cache serve it to another.
        return types.ListToolsResult(tools=tools, ttl_ms=0, cache_scope="private")

    async def find(self, name: str) -> ToolEntry | None:
        return next((e for e in await self.entries() if e.name == name), None)

    async def call(self, entry: ToolEntry, arguments: dict[str, Any]) -> types.CallToolResult:
        """Run the assistant on `arguments` (a stateless run) and wait for its end. Arguments
        that do not fit the input schema, and graph errors, are `isError` results; if the
        caller goes away (this coroutine is cancelled), the run is cancelled."""
        schema = _shallow(await self.input_schema(entry.assistant))
        try:
            jsonschema.validate(arguments, schema)
        except jsonschema.ValidationError as exc:
            return _error_result(f"Invalid arguments for tool '{entry.name}': {exc.message}")
        except jsonschema.SchemaError:  # the graph's own schema is broken: let the graph judge
            log.warning("input schema of assistant %s is invalid", entry.assistant.assistant_id)
        request = RunRequest(
            assistant_id=str(entry.assistant.assistant_id),
            input=arguments,
            on_disconnect=OnDisconnect.CANCEL,
            metadata={"source": "mcp"},
        )
        try:
            run = await self._services.runs.create(request, attached=True)
        except ServiceError as exc:
            return _error_result(exc.message)
        try:
            outcome = await self._services.runs.wait(run)
        except asyncio.CancelledError:
            _cancel_in_background(self._services, run.run_id)
            raise
        return outcome_result(outcome)


def _shallow(schema: dict[str, Any]) -> dict[str, Any]:
    """The top level of an input schema: required keys and each key's JSON type. Deeper rules
    are the graph's to judge: LangGraph's message schemas are a `oneOf` that a plain
    `{"role": "user", "content": "hi"}` matches several times over, which JSON Schema refuses."""
    properties = schema.get("properties")
    shallow: dict[str, Any] = {"type": "object"}
    if isinstance(properties, dict):
        shallow["properties"] = {
            key: {"type": prop["type"]}
            for key, prop in properties.items()
            if isinstance(prop, dict) and isinstance(prop.get("type"), str | list)
        }
    required = schema.get("required")
    if isinstance(required, list):
        shallow["required"] = [key for key in required if isinstance(key, str)]
    return shallow


_cancelling: set[asyncio.Task[None]] = set()


def _cancel_in_background(services: Services, run_id: uuid.UUID) -> None:
    """Cancel a run whose caller went away (`onDisconnect: CANCEL`). A task of its own: the
    caller's task is being cancelled and can await nothing more; it copies the caller's
    context, so the cancel is checked as that user's."""

    async def cancel() -> None:
        with contextlib.suppress(ServiceError):
            await services.runs.cancel(str(run_id), "interrupt", wait=False)

    task = asyncio.get_running_loop().create_task(cancel())
    _cancelling.add(task)
    task.add_done_callback(_cancelling.discard)


def outcome_result(outcome: RunOutcome) -> types.CallToolResult:
    """A run's outcome as a tool result: its final values as JSON text (and as structured
    content when they are an object); an error, an interrupt or a cancel as `isError`."""
    status = outcome.run.status
    if status == "success" and not outcome.interrupts:
        values = outcome.values
        text = json.dumps(values, ensure_ascii=False, default=str)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content=values if isinstance(values, dict) else None,
            is_error=False,
        )
    if outcome.interrupts:
        interrupts = json.dumps(outcome.interrupts, ensure_ascii=False, default=str)
        return _error_result(
            f"The graph stopped at an interrupt, which a stateless tool call cannot resume: "
            f"{interrupts}"
        )
    message = str(outcome.error) if outcome.error is not None else f"The run ended {status}"
    return _error_result(message)


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )
