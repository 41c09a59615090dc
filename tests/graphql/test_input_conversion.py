"""Our inputs' `from_input` plans (schema/input_conversion.py) give what Strawberry's own
conversion gives, for every input type of the schema, and requests still work end to end."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    Undefined,
    coerce_input_value,
)
from strawberry.types.arguments import convert_argument
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.maybe import Some

from schema.input_conversion import InputPlan, install_input_conversion
from schema.schema import build_schema
from schema.types.assistant import UpdateAssistantInput
from schema.types.cron import UpdateCronInput
from schema.types.run import CommandInput, RunInput
from schema.types.store import PutStoreItemInput
from schema.types.thread import CreateThreadInput, ThreadTTLInput, UpdateThreadInput
from tests.conftest import GraphQLClient, make_settings
from tests.helpers import RUN_AND_WAIT, new_thread

SCHEMA = build_schema(make_settings("input-conversion"))
INSTALLED = install_input_conversion(SCHEMA)
INPUT_TYPES: dict[str, type] = {
    name: concrete.definition.origin
    for name, concrete in SCHEMA.schema_converter.type_map.items()
    if isinstance(concrete.definition, StrawberryObjectDefinition) and concrete.definition.is_input
}


@contextlib.contextmanager
def strawberry_only() -> Iterator[None]:
    """Strawberry's own conversion, field by field: every plan taken off for the while."""
    saved = {cls: cls.__strawberry_definition__.from_input for cls in INSTALLED}  # type: ignore[attr-defined]
    for cls in saved:
        cls.__strawberry_definition__.from_input = None  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for cls, hook in saved.items():
            cls.__strawberry_definition__.from_input = hook  # type: ignore[attr-defined]


def input_type(name: str) -> GraphQLInputObjectType:
    graphql_type = SCHEMA._schema.get_type(name)
    assert isinstance(graphql_type, GraphQLInputObjectType)
    return graphql_type


def convert(name: str, value: dict[str, Any]) -> Any:
    """`value` (as a client sends it) coerced by graphql-core, then converted by Strawberry."""
    coerced = coerce_input_value(value, input_type(name))
    return convert_argument(
        coerced, INPUT_TYPES[name], SCHEMA.schema_converter.scalar_registry, SCHEMA.config
    )


def assert_same(ours: Any, theirs: Any, where: str = "") -> None:
    assert type(ours) is type(theirs), (where, ours, theirs)
    if dataclasses.is_dataclass(ours):
        for field in dataclasses.fields(ours):
            name = f"{where}.{field.name}"
            assert_same(getattr(ours, field.name), getattr(theirs, field.name), name)
    elif isinstance(ours, Some):
        assert_same(ours.value, theirs.value, f"{where}.value")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), (where, ours, theirs)
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert ours == theirs, (where, ours, theirs)


def scalar_value(type_: GraphQLScalarType, rng: random.Random) -> Any:
    choices: dict[str, list[Any]] = {
        "String": ["", "a", "étoile", "*"],
        "ID": [str(uuid.UUID(int=rng.getrandbits(128)))],
        "Float": [0, 1.5, 30],
        "Int": [0, 7],
        "Boolean": [True, False],
        "DateTime": ["2030-01-02T03:04:05+00:00"],
        "JSON": [{"a": [1, {"b": None}]}, [1, "x"], "s", 3, True],
    }
    return rng.choice(choices[type_.name])


def make_value(type_: GraphQLInputType, rng: random.Random, mode: str) -> Any:
    """A client's value of `type_`. `mode`: "all" sets every field, "required" only the required
    ones, "nulls" sets the nullable ones to null, "random" picks for each."""
    if isinstance(type_, GraphQLNonNull):
        return make_value(type_.of_type, rng, mode)
    if isinstance(type_, GraphQLList):
        return [make_value(type_.of_type, rng, mode) for _ in range(rng.randint(1, 3))]
    if isinstance(type_, GraphQLEnumType):
        return rng.choice(list(type_.values))
    if isinstance(type_, GraphQLScalarType):
        return scalar_value(type_, rng)
    assert isinstance(type_, GraphQLInputObjectType)
    value: dict[str, Any] = {}
    for name, field in type_.fields.items():
        required = isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined
        nullable = not isinstance(field.type, GraphQLNonNull)
        choice = mode if mode != "random" else rng.choice(["all", "required", "nulls"])
        if required or choice == "all":
            value[name] = make_value(field.type, rng, mode)
        elif choice == "nulls" and nullable:
            value[name] = None
    return value


@pytest.mark.parametrize("name", sorted(INPUT_TYPES))
def test_same_as_strawberry_for_every_input_type(name: str) -> None:
    rng = random.Random(name)
    graphql_type = input_type(name)
    values = [make_value(graphql_type, rng, mode) for mode in ("all", "required", "nulls")]
    values += [make_value(graphql_type, rng, "random") for _ in range(40)]
    for value in values:
        ours = convert(name, value)
        with strawberry_only():
            theirs = convert(name, value)
        assert_same(ours, theirs, name)


def test_run_input_with_every_kind_of_field() -> None:
    value = {
        "assistantId": "steps",
        "threadId": str(uuid.uuid4()),
        "input": {"count": 1},
        "command": {"resume": None, "update": {"count": 2}, "goto": ["step_2"]},
        "config": {"tags": ["t"], "configurable": {"k": 1}},
        "context": {"user": "u"},
        "metadata": {"m": 1},
        "streamMode": ["VALUES", "UPDATES"],
        "streamSubgraphs": True,
        "interruptBefore": ["step_3"],
        "interruptAfter": ["*"],
        "checkpointId": "c",
        "checkpointNs": "ns",
        "checkpointMap": {"": "c"},
        "webhook": "http://127.0.0.1:9/hook",
        "multitaskStrategy": "ROLLBACK",
        "ifNotExists": "CREATE",
        "onCompletion": "KEEP",
        "onDisconnect": "CANCEL",
        "afterSeconds": 1.5,
        "durability": "EXIT",
        "idempotencyKey": "key",
    }
    ours = convert("RunInput", value)
    with strawberry_only():
        theirs = convert("RunInput", value)
    assert_same(ours, theirs)
    assert isinstance(ours.command, CommandInput)
    assert ours.command.resume == Some(None)
    # The omitted `resume` stays absent (`None`), unlike the explicit null above.
    assert convert("RunInput", {"assistantId": "a", "command": {}}).command.resume is None
    required_only = convert("RunInput", {"assistantId": "a"})
    assert required_only == RunInput(assistant_id="a")


def test_lists_are_copies() -> None:
    # graphql-core shares defaults and coerced lists; a run must never change another's.
    coerced = coerce_input_value(
        {"assistantId": "a", "streamMode": ["VALUES"]}, input_type("RunInput")
    )
    converted = convert_argument(
        coerced, RunInput, SCHEMA.schema_converter.scalar_registry, SCHEMA.config
    )
    assert isinstance(converted, RunInput)
    assert converted.stream_mode == coerced["streamMode"]
    assert converted.stream_mode is not coerced["streamMode"]


def test_nested_inputs_through_a_maybe_type() -> None:
    # UpdateThreadInput keeps Strawberry's conversion; its ThreadTTLInput is built by its plan.
    converted = convert("UpdateThreadInput", {"ttl": {"minutes": 5}})
    assert isinstance(converted.ttl, Some)
    assert isinstance(converted.ttl.value, ThreadTTLInput)
    assert converted.ttl.value.minutes == 5
    assert convert("UpdateThreadInput", {"ttl": None}).ttl == Some(None)
    assert convert("UpdateThreadInput", {}).ttl is None


def test_installed_types() -> None:
    assert RunInput in INSTALLED
    assert CreateThreadInput in INSTALLED
    assert ThreadTTLInput in INSTALLED
    with_maybe = [
        CommandInput,
        UpdateThreadInput,
        UpdateCronInput,
        UpdateAssistantInput,
        PutStoreItemInput,
    ]
    for cls in with_maybe:
        assert cls not in INSTALLED
        # so that MaybeNullValidationRule still checks them
        assert cls.__strawberry_definition__.from_input is None  # type: ignore[attr-defined]
    for cls in INSTALLED:
        assert isinstance(cls.__strawberry_definition__.from_input, InputPlan)  # type: ignore[attr-defined]
    # Building another schema changes nothing.
    assert install_input_conversion(build_schema(make_settings("input-conversion"))) == INSTALLED


# --- end to end, over HTTP ---------------------------------------------------------------------


async def test_run_and_wait_with_many_fields(gql_client: GraphQLClient, unique: str) -> None:
    tid = await new_thread(gql_client)
    fields = {
        "assistantId": "steps",
        "threadId": tid,
        "input": {"count": 1},
        "config": {"tags": [unique]},
        "metadata": {"who": unique},
        "streamMode": ["VALUES", "UPDATES"],
        "streamSubgraphs": True,
        "streamResumable": True,
        "context": {"user": unique},
        "interruptAfter": ["step_3"],
        "checkpointNs": "",
        "multitaskStrategy": "REJECT",
        "ifNotExists": "REJECT",
        "onDisconnect": "CANCEL",
        "afterSeconds": 0,
        "durability": "SYNC",
        "idempotencyKey": f"conversion-{unique}",
    }
    document = RUN_AND_WAIT.replace("createdAt", "createdAt kwargs")
    result = (await gql_client.data(document, {"input": fields}))["runAndWait"]
    run = result["run"]
    # interruptAfter stopped it after three of the five steps
    assert run["status"] == "SUCCESS", result
    assert result["values"] == {"count": 4}
    assert run["threadId"] == tid
    assert run["multitaskStrategy"] == "REJECT"
    assert run["metadata"]["who"] == unique
    kwargs = run["kwargs"]
    assert kwargs["stream_mode"] == ["values", "updates"]
    assert kwargs["subgraphs"] is True
    assert kwargs["resumable"] is True
    assert kwargs["on_disconnect"] == "cancel"
    assert kwargs["context"] == {"user": unique}
    assert kwargs["interrupt_after"] == ["step_3"]
    assert kwargs["durability"] == "sync"
    assert kwargs["config"]["tags"] == [unique]
    # The same key and input: the same run, not a second one.
    again = (await gql_client.data(document, {"input": fields}))["runAndWait"]
    assert again["run"]["id"] == run["id"]


async def test_maybe_fields_still_set_to_null(gql_client: GraphQLClient) -> None:
    end = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    cron = (
        await gql_client.data(
            "mutation($input: CreateCronInput!) { createCron(input: $input) { id endTime } }",
            {"input": {"assistantId": "echo", "schedule": "0 0 1 1 *", "endTime": end.isoformat()}},
        )
    )["createCron"]
    assert datetime.fromisoformat(cron["endTime"]) == end
    update = "mutation($id: ID!, $input: UpdateCronInput!) { updateCron(id: $id, input: $input) { endTime timezone } }"
    kept = await gql_client.data(update, {"id": cron["id"], "input": {"timezone": "UTC"}})
    assert datetime.fromisoformat(kept["updateCron"]["endTime"]) == end
    cleared = await gql_client.data(update, {"id": cron["id"], "input": {"endTime": None}})
    assert cleared["updateCron"]["endTime"] is None
    await gql_client.data("mutation($id: ID!) { deleteCron(id: $id) }", {"id": cron["id"]})

    tid = await new_thread(gql_client, ttl={"minutes": 60})
    ttl_of = "query($id: ID!) { thread(id: $id) { ttl { minutes strategy } } }"
    assert (await gql_client.data(ttl_of, {"id": tid}))["thread"]["ttl"]["minutes"] == 60
    await gql_client.data(
        "mutation($id: ID!) { updateThread(id: $id, input: {ttl: null}) { id } }", {"id": tid}
    )
    assert (await gql_client.data(ttl_of, {"id": tid}))["thread"]["ttl"] is None
