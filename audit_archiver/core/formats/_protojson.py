"""The proto3 JSON form of protobuf messages, fast, exactly as ``json_format`` gives it.

``google.protobuf.json_format`` walks a message field by field in Python,
recursively, with several calls per value: for an OTLP log record that is
about 100 us, ten times what archiving the record costs. The two functions
here give the same dictionaries from precomputed per-type plans, iteratively:

- :func:`message_dict`: ``json_format.MessageToDict(message)``.
- :func:`normalized_dict`: ``MessageToDict(ParseDict(value, Type()))`` for a
  ``value`` in the *canonical* proto3 JSON form (what exporters write: known
  field names in lowerCamelCase, no nulls, integers as JSON numbers or as
  canonical decimal strings, enums by name or number, base64 bytes).

Invariants:

- Exact or nothing: every value either converts to exactly what the official
  functions return, or the function declines (``message_dict`` then calls
  ``MessageToDict`` itself; ``normalized_dict`` returns None and the caller
  parses with ``ParseDict``). Declined: field kinds the plans do not cover
  (float32, maps, well-known types, closed enums), any value outside the
  canonical form (nulls, aliases, unknown fields, strings where numbers belong,
  out-of-range numbers), and nesting deeper than
  :data:`~audit_archiver.core.event.MAX_DEPTH` (such an event is refused anyway).
- No recursion: nesting costs a list entry, not a stack frame.
- Tests compare both functions with ``json_format`` on every fixture and on
  generated messages and JSON (``tests/unit/core/formats/test_protojson.py``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from typing import Any, NamedTuple

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from audit_archiver.core.event import MAX_DEPTH

__all__ = ["message_dict", "normalized_dict"]

# Value kinds a plan handles (anything else declines).
_MESSAGE, _STRING, _BYTES, _BOOL, _INT32, _INT64, _DOUBLE, _ENUM = range(8)
_INT32_RANGE = {
    FieldDescriptor.TYPE_INT32: (-(1 << 31), 1 << 31),
    FieldDescriptor.TYPE_SINT32: (-(1 << 31), 1 << 31),
    FieldDescriptor.TYPE_SFIXED32: (-(1 << 31), 1 << 31),
    FieldDescriptor.TYPE_UINT32: (0, 1 << 32),
    FieldDescriptor.TYPE_FIXED32: (0, 1 << 32),
}
_INT64_RANGE = {
    FieldDescriptor.TYPE_INT64: (-(1 << 63), 1 << 63),
    FieldDescriptor.TYPE_SINT64: (-(1 << 63), 1 << 63),
    FieldDescriptor.TYPE_SFIXED64: (-(1 << 63), 1 << 63),
    FieldDescriptor.TYPE_UINT64: (0, 1 << 64),
    FieldDescriptor.TYPE_FIXED64: (0, 1 << 64),
}
_SIMPLE_KINDS = {
    FieldDescriptor.TYPE_STRING: _STRING,
    FieldDescriptor.TYPE_BYTES: _BYTES,
    FieldDescriptor.TYPE_BOOL: _BOOL,
    FieldDescriptor.TYPE_DOUBLE: _DOUBLE,
}
_AS_IS = frozenset((_STRING, _BOOL, _INT32))
_CANONICAL_INT = re.compile(r"-?[1-9][0-9]*|0")
_NOT_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


class _Field(NamedTuple):
    """How one field converts."""

    name: str
    json_name: str
    kind: int
    presence: bool
    repeated: bool
    oneof: str | None
    bounds: tuple[int, int]  # integers: [low, high)
    plan: str  # messages: the full name of the field's type
    enum_names: dict[int, str | int]  # enums: JSON value by number
    enum_numbers: dict[str, int]  # enums: number by name


class _Plan(NamedTuple):
    """How one message type converts; ``fields`` None when it is not covered."""

    fields: tuple[_Field, ...] | None
    by_json_name: dict[str, _Field]
    by_name: dict[str, _Field]
    oneof: str | None  # every field is in this one oneof (AnyValue): one lookup


_PLANS: dict[str, _Plan] = {}
_NO_FIELD = _Field("", "", -1, False, False, None, (0, 0), "", {}, {})


def _plan(descriptor: Descriptor) -> _Plan:
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        plan = _PLANS[descriptor.full_name] = _build_plan(descriptor)
        for field in plan.fields or ():
            message_type = descriptor.fields_by_name[field.name].message_type
            if field.kind == _MESSAGE and message_type is not None:
                _plan(message_type)
    return plan


def _build_plan(descriptor: Descriptor) -> _Plan:
    if descriptor.full_name.startswith("google.protobuf.") or descriptor.GetOptions().map_entry:
        return _Plan(None, {}, {}, None)
    fields = []
    for field in descriptor.fields:
        entry = _field(descriptor, field)
        if entry is None:
            return _Plan(None, {}, {}, None)
        fields.append(entry)
    oneofs = {field.oneof for field in fields}
    only = oneofs.pop() if len(oneofs) == 1 else None
    return _Plan(
        tuple(fields),
        {field.json_name: field for field in fields},
        {field.name: field for field in fields},
        only,
    )


def _field(descriptor: Descriptor, field: FieldDescriptor) -> _Field | None:
    oneof = field.containing_oneof
    real_oneof = oneof.name if oneof is not None and len(oneof.fields) > 1 else None
    kind = _SIMPLE_KINDS.get(field.type)
    bounds = _INT32_RANGE.get(field.type) or _INT64_RANGE.get(field.type) or (0, 0)
    if field.type in _INT32_RANGE:
        kind = _INT32
    elif field.type in _INT64_RANGE:
        kind = _INT64
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        kind = _MESSAGE
    elif field.type == FieldDescriptor.TYPE_ENUM:
        kind = _ENUM
    if kind is None or (kind == _DOUBLE and not field.has_presence):
        return None  # float32; a double without presence (is -0.0 set?): declined
    names: dict[int, str | int] = {}
    numbers: dict[str, int] = {}
    if kind == _ENUM:
        enum_type = field.enum_type
        if enum_type is None or enum_type.is_closed or field.is_repeated:
            return None
        for value in enum_type.values:
            names[value.number] = _official_enum_name(descriptor, field, value.number)
            numbers[value.name] = value.number
    return _Field(
        field.name,
        field.json_name,
        kind,
        field.has_presence,
        field.is_repeated,
        real_oneof,
        bounds,
        field.message_type.full_name if kind == _MESSAGE and field.message_type else "",
        names,
        numbers,
    )


def _official_enum_name(descriptor: Descriptor, field: FieldDescriptor, number: int) -> str | int:
    """The JSON value ``json_format`` writes for enum value ``number`` (asked once)."""
    message = _message_class(descriptor)()
    setattr(message, field.name, number)
    value: str | int = json_format.MessageToDict(message).get(field.json_name, number)
    return value


def _message_class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory  # only when planning

    return message_factory.GetMessageClass(descriptor)


class _Declined(Exception):  # noqa: N818  # control flow, never leaves this module
    """The fast path cannot promise the official result."""


def message_dict(message: Message, level: int = 1) -> dict[str, Any]:
    """``json_format.MessageToDict(message)``, computed fast when it can be.

    Args:
        message: any message (types the plans do not cover go to ``json_format``).
        level: the nesting level of the result in the archived event (the
            event object is level 1); beyond :data:`MAX_DEPTH` the fast path
            declines.
    """
    try:
        return _message_dict(message, level)
    except _Declined:
        result: dict[str, Any] = json_format.MessageToDict(message)
        return result


_BY_CLASS: dict[type[Message], _Plan] = {}


def _class_plan(cls: type[Message]) -> _Plan:
    plan = _BY_CLASS.get(cls)
    if plan is None:
        plan = _BY_CLASS[cls] = _plan(cls.DESCRIPTOR)  # type: ignore[arg-type]  # upb's own class
    return plan


_Stack = list[tuple[Message, _Plan, dict[str, Any], int]]


def _message_dict(message: Message, level: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    stack: _Stack = [(message, _class_plan(type(message)), root, level)]
    while stack:
        current, plan, out, depth = stack.pop()
        if depth > MAX_DEPTH or plan.fields is None:
            raise _Declined
        if plan.oneof is not None:
            out.update(_choice(current, plan, depth, stack) or {})
            continue
        for field in plan.fields:
            if field.repeated:
                values = getattr(current, field.name)
                if values:
                    out[field.json_name] = _repeated(field, values, depth + 1, stack)
            elif field.kind == _MESSAGE:
                _message_field(current, field, out, depth + 1, stack)
            elif field.presence:
                if current.HasField(field.name):
                    out[field.json_name] = _scalar_out(field, getattr(current, field.name))
            else:
                value = getattr(current, field.name)
                if value:
                    out[field.json_name] = _scalar_out(field, value)
    return root


def _repeated(field: _Field, values: Any, level: int, stack: _Stack) -> list[Any]:
    if level > MAX_DEPTH:
        raise _Declined
    if field.kind != _MESSAGE:
        return [_scalar_out(field, value) for value in values]
    if _is_key_values(values):
        return _key_values(values, level, stack)
    items: list[Any] = []
    plan = None
    for value in values:
        plan = plan or _class_plan(type(value))
        if plan.oneof is not None:
            items.append(_choice(value, plan, level + 1, stack) or {})
        else:
            child: dict[str, Any] = {}
            items.append(child)
            stack.append((value, plan, child, level + 1))
    return items


_KEY_VALUE_SHAPE = (
    ("key", "key", _STRING, False, False, None),
    ("value", "value", _MESSAGE, True, False, None),
    ("key_strindex", "keyStrindex", _INT32, False, False, None),
)
_KEY_VALUE_CLASSES: dict[type[Message], bool] = {}


def _is_key_values(values: Any) -> bool:
    """True when ``values`` are OTLP ``KeyValue`` messages of the shape :func:`_key_values` knows."""
    cls = type(values[0])
    known = _KEY_VALUE_CLASSES.get(cls)
    if known is None:
        plan = _class_plan(cls)
        shape = tuple(field[:6] for field in plan.fields or ())
        value_plan = _class_plan(type(cls().value)) if shape == _KEY_VALUE_SHAPE else None
        known = _KEY_VALUE_CLASSES[cls] = bool(
            value_plan
            and value_plan.oneof
            and value_plan.by_name.get("string_value", _NO_FIELD).kind == _STRING
        )
    return known


def _key_values(pairs: Any, level: int, stack: _Stack) -> list[Any]:
    """Repeated ``KeyValue`` (attributes): the hot path, unrolled; strings inline."""
    if level + 2 > MAX_DEPTH:
        raise _Declined
    items: list[Any] = []
    value_plan = None
    for pair in pairs:
        item: dict[str, Any] = {}
        key = pair.key
        if key:
            item["key"] = key
        value = pair.value
        which = value.WhichOneof("value")
        if which == "string_value":
            item["value"] = {"stringValue": value.string_value}
        elif which is not None:
            value_plan = value_plan or _class_plan(type(value))
            item["value"] = _choice(value, value_plan, level + 2, stack)
        elif pair.HasField("value"):
            item["value"] = {}
        strindex = pair.key_strindex
        if strindex:
            item["keyStrindex"] = strindex
        items.append(item)
    return items


def _message_field(
    message: Message, field: _Field, out: dict[str, Any], level: int, stack: _Stack
) -> None:
    value = getattr(message, field.name)
    plan = _class_plan(type(value))
    if plan.oneof is not None:
        # One call says whether a member is set; presence is asked only when none is.
        choice = _choice(value, plan, level, stack)
        if choice is not None:
            out[field.json_name] = choice
        elif message.HasField(field.name):
            out[field.json_name] = {}
    elif message.HasField(field.name):
        child: dict[str, Any] = {}
        out[field.json_name] = child
        stack.append((value, plan, child, level))


def _choice(message: Message, plan: _Plan, level: int, stack: _Stack) -> dict[str, Any] | None:
    """A message whose fields are one oneof (``AnyValue``), or None when none is set."""
    if level > MAX_DEPTH or plan.fields is None:
        raise _Declined
    which = message.WhichOneof(plan.oneof)
    if which is None:
        return None
    field = plan.by_name[which]
    value = getattr(message, which)
    if field.kind != _MESSAGE:
        return {field.json_name: _scalar_out(field, value)}
    child: dict[str, Any] = {}
    stack.append((value, _class_plan(type(value)), child, level + 1))
    return {field.json_name: child}


def _scalar_out(field: _Field, value: Any) -> Any:
    kind = field.kind
    if kind in _AS_IS:
        return value
    if kind == _INT64:
        return str(value)
    if kind == _BYTES:
        return base64.b64encode(value).decode("ascii")
    if kind == _DOUBLE:
        if math.isnan(value):
            return "NaN"
        return _NOT_FINITE.get(value, value)
    name = field.enum_names.get(value)
    return value if name is None else name  # an open enum's unknown number stays a number


def normalized_dict(value: dict[str, Any], descriptor: Descriptor, level: int = 1) -> Any:
    """``MessageToDict(ParseDict(value, Type(), ignore_unknown_fields=True))``, or None.

    None when ``value`` is not in the canonical form this function covers (see
    the module docstring): the caller then parses it with ``json_format``,
    which gives the result or the error.

    Args:
        value: one message as parsed JSON (``descriptor`` is its type).
        descriptor: the message type.
        level: as for :func:`message_dict`.
    """
    try:
        return _normalized_dict(value, descriptor, level)
    except _Declined:
        return None


def _normalized_dict(value: dict[str, Any], descriptor: Descriptor, level: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    stack: _JsonStack = [(value, descriptor.full_name, root, level)]
    _plan(descriptor)
    while stack:
        current, type_name, out, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Declined
        plan = _PLANS[type_name]
        if plan.fields is None:
            raise _Declined
        oneofs_seen: set[str] = set()
        for key, item in current.items():
            field = plan.by_json_name.get(key)
            if field is None or item is None:
                raise _Declined  # unknown or aliased field (json_format ignores or merges), null
            if field.oneof is not None:
                if field.oneof in oneofs_seen:
                    raise _Declined  # json_format refuses two members of a oneof
                oneofs_seen.add(field.oneof)
            _normalize_member(field, item, out, depth, stack)
    return root


def _normalize_member(
    field: _Field, item: Any, out: dict[str, Any], depth: int, stack: _JsonStack
) -> None:
    """Put one member of a canonical JSON message into ``out`` (messages via ``stack``)."""
    key = field.json_name
    if not field.repeated:
        if field.kind != _MESSAGE:
            converted, is_default = _scalar_in(field, item)
            if field.presence or not is_default:
                out[key] = converted
            return
        if type(item) is not dict:
            raise _Declined
        child: dict[str, Any] = {}
        out[key] = child
        stack.append((item, field.plan, child, depth + 1))
        return
    if type(item) is not list:
        raise _Declined
    if not item:
        return
    if depth + 1 > MAX_DEPTH:
        raise _Declined
    if field.kind != _MESSAGE:
        out[key] = [_scalar_in(field, element)[0] for element in item]
    elif _is_key_value_plan(field.plan):
        out[key] = _normalized_key_values(item, field.plan, depth + 1, stack)
    else:
        items: list[Any] = []
        for element in item:
            if type(element) is not dict:
                raise _Declined
            element_out: dict[str, Any] = {}
            items.append(element_out)
            stack.append((element, field.plan, element_out, depth + 2))
        out[key] = items


@functools.cache
def _is_key_value_plan(type_name: str) -> bool:
    plan = _PLANS[type_name]
    shape = tuple(field[:6] for field in plan.fields or ())
    return shape == _KEY_VALUE_SHAPE and _PLANS[plan.by_name["value"].plan].oneof is not None


_JsonStack = list[tuple[dict[str, Any], str, dict[str, Any], int]]


def _normalized_key_values(
    pairs: list[Any], type_name: str, level: int, stack: _JsonStack
) -> list[Any]:
    """Repeated ``KeyValue`` (attributes) in canonical JSON: the hot path, strings
    inline; any other pair goes through the general loop."""
    if level + 2 > MAX_DEPTH:
        raise _Declined
    value_type = _PLANS[type_name].by_name["value"].plan
    items: list[Any] = []
    for pair in pairs:
        if type(pair) is not dict:
            raise _Declined
        item: dict[str, Any] = {}
        items.append(item)
        key = pair.get("key")
        value = pair.get("value")
        if len(pair) != 2 or type(key) is not str or type(value) is not dict:
            stack.append((pair, type_name, item, level + 1))
            continue
        if key:
            item["key"] = _checked_text(key)
        text = value.get("stringValue")
        if len(value) == 1 and type(text) is str:
            item["value"] = {"stringValue": _checked_text(text)}
        else:
            child: dict[str, Any] = {}
            item["value"] = child
            stack.append((value, value_type, child, level + 2))
    return items


def _checked_text(text: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Declined from None  # a lone surrogate: json_format refuses it
    return text


def _scalar_in(field: _Field, value: Any) -> tuple[Any, bool]:
    """(the JSON value ``MessageToDict`` writes, whether it is the default) for a
    canonical JSON scalar of ``field``.

    Raises:
        _Declined: ``value`` is not of the canonical form.
    """
    return _SCALARS_IN[field.kind](field, value)


def _string_in(_field: _Field, value: Any) -> tuple[Any, bool]:
    if type(value) is not str:
        raise _Declined
    return _checked_text(value), not value


def _int64_in(field: _Field, value: Any) -> tuple[Any, bool]:
    low, high = field.bounds
    if type(value) is int and low <= value < high:
        return str(value), not value
    if type(value) is str and _CANONICAL_INT.fullmatch(value) and low <= int(value) < high:
        return value, value == "0"
    raise _Declined


def _int32_in(field: _Field, value: Any) -> tuple[Any, bool]:
    low, high = field.bounds
    if type(value) is int and low <= value < high:
        return value, not value
    raise _Declined


def _bool_in(_field: _Field, value: Any) -> tuple[Any, bool]:
    if type(value) is bool:
        return value, not value
    raise _Declined


def _enum_in(field: _Field, value: Any) -> tuple[Any, bool]:
    number = field.enum_numbers.get(value) if type(value) is str else None
    if type(value) is int and value in field.enum_names:
        number = value
    if number is None:
        raise _Declined  # a numeric string, an unknown name or number: json_format decides
    return field.enum_names[number], not number


def _double_in(_field: _Field, value: Any) -> tuple[Any, bool]:
    if type(value) is float and math.isfinite(value):
        return value, not value
    if type(value) is not int:
        raise _Declined
    try:
        return float(value), not value
    except OverflowError:
        raise _Declined from None


def _bytes_in(_field: _Field, value: Any) -> tuple[Any, bool]:
    if type(value) is not str:
        raise _Declined
    try:
        encoded = value.encode("utf-8")
        # json_format's own reading: padded, either alphabet, foreign bytes skipped
        decoded = base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise _Declined from None
    return base64.b64encode(decoded).decode("ascii"), not decoded


def _message_in(_field: _Field, _value: Any) -> tuple[Any, bool]:
    raise _Declined  # messages are not scalars (repeated messages never come here)


_SCALARS_IN = {
    _STRING: _string_in,
    _INT64: _int64_in,
    _INT32: _int32_in,
    _BOOL: _bool_in,
    _ENUM: _enum_in,
    _DOUBLE: _double_in,
    _BYTES: _bytes_in,
    _MESSAGE: _message_in,
}
