"""Our input types build themselves from a plan, through Strawberry's `from_input` hook.

Strawberry converts an input field by field on every request, resolving each field's type again
(`StrawberryField.resolve_type`) and walking `convert_argument`'s isinstance chain for each value:
~395 µs for a `RunInput` (23 fields), on every `createRun`, `runAndWait`, `runStream`. The plan
does that work once per type: per field its GraphQL and python names and a converter for its
type; scalars and enums are taken as graphql-core parsed them. Anything unusual (GlobalID, an
input type we leave alone) goes to `InputContext.convert`, Strawberry's own conversion, so the
result is Strawberry's.

Types with a `Maybe` field keep Strawberry's conversion: its `MaybeNullValidationRule` skips
types that have `from_input`, and we want that validation. Generic inputs are left alone too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

import strawberry
from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryObjectDefinition,
    StrawberryOptional,
    StrawberryType,
    has_object_definition,
)
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.lazy_type import LazyType
from strawberry.types.unset import UNSET

Keys = tuple[str | int, ...]
# `None` stands for "the value as it is", so the common case costs no call.
Converter = Callable[[Any, InputContext, Keys], Any]
# GraphQL name, python name, the field's keys for `InputContext.convert`, converter.
FieldPlan = tuple[str, str, Keys, Converter | None]


class InputPlan:
    """The `from_input` of one input type. Compiled at first use, once per schema (its name
    converter and scalar registry); the fields with no default get an implicit `None`, as in
    Strawberry, and the others are left to the dataclass default when absent."""

    def __init__(self, definition: StrawberryObjectDefinition) -> None:
        self.definition = definition
        self.implicit_none = {
            field.python_name: None
            for field in definition.fields
            if field.default_value is MISSING and field.default_factory is MISSING
        }
        self._compiled: dict[tuple[int, int], tuple[object, tuple[FieldPlan, ...]]] = {}

    def __call__(self, cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
        key = (id(context.config), id(context.scalar_registry))
        compiled = self._compiled.get(key)
        fields = compiled[1] if compiled is not None else self._compile(key, context)
        kwargs: dict[str, Any] = self.implicit_none.copy()
        for graphql_name, python_name, keys, convert in fields:
            if graphql_name in value:
                item = value[graphql_name]
                kwargs[python_name] = item if convert is None else convert(item, context, keys)
        return cls(**kwargs)

    def _compile(self, key: tuple[int, int], context: InputContext) -> tuple[FieldPlan, ...]:
        definition = self.definition
        fields = tuple(
            (
                graphql_name := context.config.name_converter.from_field(field),
                field.python_name,
                (graphql_name,),
                _converter(field.resolve_type(type_definition=definition), context),
            )
            for field in definition.fields
        )
        # The config and registry are kept with the plan so their ids stay theirs.
        self._compiled[key] = ((context.config, context.scalar_registry), fields)
        return fields


def _converter(type_: StrawberryType | type, context: InputContext) -> Converter | None:
    if isinstance(type_, LazyType):
        type_ = type_.resolve_type()
    if isinstance(type_, StrawberryMaybe):
        return _delegate(type_)
    if isinstance(type_, StrawberryOptional):
        return _optional(type_.of_type, context)
    if isinstance(type_, StrawberryList):
        return _list(type_.of_type, context)
    if type_ is GlobalID:
        return _delegate(type_)
    if (
        is_scalar(type_, context.scalar_registry)
        or isinstance(type_, StrawberryEnumDefinition)
        or has_enum_definition(type_)
    ):
        return None
    if has_object_definition(type_) and isinstance(
        type_.__strawberry_definition__.from_input, InputPlan
    ):
        return _nested(type_)
    return _delegate(type_)


def _optional(of_type: StrawberryType | type, context: InputContext) -> Converter | None:
    inner = _converter(of_type, context)
    if inner is None:
        return None

    def optional(value: Any, context: InputContext, keys: Keys) -> Any:
        return value if value is None or value is UNSET else inner(value, context, keys)

    return optional


def _list(of_type: StrawberryType | type, context: InputContext) -> Converter:
    item = _converter(of_type, context)

    def leaves(value: Any, context: InputContext, keys: Keys) -> Any:
        # A copy: graphql-core gives every request that omits the value the same default.
        return value if value is None or value is UNSET else list(value)

    def items(value: Any, context: InputContext, keys: Keys) -> Any:
        if value is None or value is UNSET:
            return value
        return [
            x if item is None else item(x, context, (*keys, index)) for index, x in enumerate(value)
        ]

    return leaves if item is None else items


def _nested(cls: type) -> Converter:
    definition: StrawberryObjectDefinition = cls.__strawberry_definition__  # type: ignore[attr-defined]

    def nested(value: Any, context: InputContext, keys: Keys) -> Any:
        if value is None or value is UNSET:
            return value
        hook = definition.from_input
        if hook is None:
            return context.convert(value, cls, *keys)
        return hook(
            cls,
            value,
            InputContext(
                info=context.info,
                config=context.config,
                scalar_registry=context.scalar_registry,
                path=(*context.path, *keys),
            ),
        )

    return nested


def _delegate(type_: StrawberryType | type) -> Converter:
    def delegate(value: Any, context: InputContext, keys: Keys) -> Any:
        return context.convert(value, type_, *keys)

    return delegate


def _eligible(definition: StrawberryObjectDefinition) -> bool:
    if not definition.is_input or definition.is_graphql_generic:
        return False
    if definition.concrete_of is not None or definition.type_var_map:
        return False
    if definition.from_input is not None and not isinstance(definition.from_input, InputPlan):
        return False
    return not any(
        isinstance(field.resolve_type(type_definition=definition), StrawberryMaybe)
        for field in definition.fields
    )


def install_input_conversion(schema: strawberry.Schema) -> list[type]:
    """Gives each eligible input type of `schema` its plan (once: the definitions belong to the
    classes, shared by every schema built from them); returns the types that have one."""
    installed: list[type] = []
    for concrete in schema.schema_converter.type_map.values():
        definition = concrete.definition
        if not isinstance(definition, StrawberryObjectDefinition) or not _eligible(definition):
            continue
        if definition.from_input is None:
            definition.from_input = InputPlan(definition)
        installed.append(definition.origin)
    return installed
