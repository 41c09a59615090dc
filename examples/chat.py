"""An LLM-free example graph: it greets and echoes what you say, counting the turns."""

from __future__ import annotations

from typing import Annotated

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: int


def reply(state: State) -> State:
    said = state["messages"][-1].content if state.get("messages") else ""
    return {
        "messages": [AIMessage(content=f"You said: {said}")],
        "turns": state.get("turns", 0) + 1,
    }


builder = StateGraph(State)
builder.add_node("reply", reply)
builder.add_edge(START, "reply")
builder.add_edge("reply", END)
graph = builder.compile()
graph.name = "chat"
