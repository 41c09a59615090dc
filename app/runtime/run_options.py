"""A run's options: what its client asked for (LangGraph's run-create body, less what only the
API side uses), stored on the run row as LangGraph's `kwargs` and read back by the worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, frozen=True)
class RunOptions:
    input: Any = None
    #: LangGraph `Command` fields given (`resume`, `update`, `goto`); None: no command.
    command: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    stream_mode: tuple[str, ...] = ("values",)
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: list[str] | str | None = None
    interrupt_after: list[str] | str | None = None
    checkpoint_id: str | None = None
    #: The chosen checkpoint's namespace and LangGraph `checkpoint_map` (a subgraph's checkpoint).
    checkpoint_ns: str = ""
    checkpoint_map: dict[str, str] | None = None
    webhook: str | None = None
    #: A stateless run: its thread is deleted when it ends.
    temporary: bool = False
    on_disconnect: str = "continue"
    durability: str = "async"

    def to_kwargs(self) -> dict[str, Any]:
        """As stored on the run row: LangGraph's `kwargs`, with its key names (the checkpoint's
        namespace and map only when chosen)."""
        kwargs: dict[str, Any] = {
            "input": self.input,
            "command": self.command,
            "config": self.config,
            "context": self.context,
            "stream_mode": list(self.stream_mode),
            "subgraphs": self.stream_subgraphs,
            "resumable": self.stream_resumable,
            "interrupt_before": self.interrupt_before,
            "interrupt_after": self.interrupt_after,
            "checkpoint_id": self.checkpoint_id,
            "webhook": self.webhook,
            "temporary": self.temporary,
            "on_disconnect": self.on_disconnect,
            "durability": self.durability,
        }
        if self.checkpoint_ns:
            kwargs["checkpoint_ns"] = self.checkpoint_ns
        if self.checkpoint_map:
            kwargs["checkpoint_map"] = self.checkpoint_map
        return kwargs

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> RunOptions:
        """A run row's `kwargs` (missing keys: LangGraph's defaults)."""
        return cls(
            input=kwargs.get("input"),
            command=kwargs.get("command") or None,
            config=kwargs.get("config") or {},
            context=kwargs.get("context") or {},
            stream_mode=tuple(kwargs.get("stream_mode") or ("values",)),
            stream_subgraphs=bool(kwargs.get("subgraphs")),
            stream_resumable=bool(kwargs.get("resumable")),
            interrupt_before=_nodes(kwargs.get("interrupt_before")),
            interrupt_after=_nodes(kwargs.get("interrupt_after")),
            checkpoint_id=kwargs.get("checkpoint_id"),
            checkpoint_ns=kwargs.get("checkpoint_ns") or "",
            checkpoint_map=kwargs.get("checkpoint_map") or None,
            webhook=kwargs.get("webhook"),
            temporary=bool(kwargs.get("temporary")),
            on_disconnect=kwargs.get("on_disconnect") or "continue",
            durability=kwargs.get("durability") or "async",
        )


def _nodes(value: Any) -> list[str] | str | None:
    """Breakpoint nodes as LangGraph takes them: every node is the string `"*"`, which clients
    also send as `["*"]` (GraphQL's list form); LangGraph reads a list as node names."""
    return "*" if value == ["*"] else value
