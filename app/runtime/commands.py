"""LangGraph's JSON `Command` (`{"update", "resume", "goto"}`) as a `langgraph.types.Command`."""

from __future__ import annotations

from typing import Any

from langgraph.types import Command, Send


def command_from_json(command: dict[str, Any]) -> Command[Any]:
    """`goto` may name nodes or carry `{"node", "input"}` sends; an `update` given as a list of
    pairs is LangGraph's list of (channel, value) writes."""
    goto = command.get("goto")
    if goto is not None:
        goto = [_send_or_node(g) for g in goto] if isinstance(goto, list) else _send_or_node(goto)
    update = command.get("update")
    if isinstance(update, list):
        update = [tuple(pair) for pair in update]
    return Command(
        resume=command.get("resume"),
        update=update,
        goto=goto if goto is not None else (),
    )


def _send_or_node(value: Any) -> Any:
    if isinstance(value, dict):
        return Send(value["node"], value.get("input"))
    return value
