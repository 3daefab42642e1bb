"""The decoded form of an OTLP span: plain typed records, independent of protobuf and JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeAlias

AttributeValue: TypeAlias = (
    "str | bool | int | float | bytes | tuple[AttributeValue, ...] | Mapping[str, AttributeValue] | None"
)
"""An OTLP ``AnyValue`` as Python: arrays become tuples, key-value lists mappings, empty values None."""

Attributes: TypeAlias = Mapping[str, AttributeValue]


class SpanKind(IntEnum):
    """``Span.SpanKind`` of the OTLP proto; an unknown number decodes as UNSPECIFIED."""

    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode(IntEnum):
    """``Status.StatusCode`` of the OTLP proto; an unknown number decodes as UNSET."""

    UNSET = 0
    OK = 1
    ERROR = 2


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Attributes


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span with its resource and scope.

    Ids are lower-case hex exactly as received: the decoder never rejects a span for its ids (one bad
    span must not fail the whole request), the mapper checks them (``ids_are_valid``).
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None  # None for a root span
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    status_code: StatusCode
    status_message: str
    attributes: Attributes
    resource_attributes: Attributes  # shared by every span of the same resource, never copied
    scope_name: str = ""
    scope_version: str = ""
    events: tuple[SpanEvent, ...] = ()
    # From the span's flags (OTLP 1.1+): True when the parent lives in another process, None when
    # the sender did not say.
    parent_is_remote: bool | None = None
    # What the conventions make of the attributes (``conventions.facts``), worked out once per
    # span on first use: a span is classified many times while a trace is mapped.
    facts: Any = field(default=None, init=False, repr=False, compare=False)
    # ``id_problem``'s answer ("" when the ids are fine), worked out once: screening and mapping
    # both ask.
    checked_ids: str | None = field(default=None, init=False, repr=False, compare=False)


TRACE_ID_HEX_LENGTH = 32
SPAN_ID_HEX_LENGTH = 16
_HEX = "0123456789abcdef"


def _is_hex_id(value: str, length: int) -> bool:
    # All zeros is the W3C/OTLP "invalid" id. strip() leaves something exactly when a character
    # is not a lower-case hex digit (or, with "0", when it is not all zeros).
    return len(value) == length and not value.strip(_HEX) and value.strip("0") != ""


def id_problem(span: SpanRecord) -> str | None:
    """Why the span's ids are unusable, or None when they are fine."""
    checked = span.checked_ids
    if checked is None:
        checked = _id_problem(span) or ""
        object.__setattr__(span, "checked_ids", checked)  # a cache on a frozen record
    return checked or None


def _id_problem(span: SpanRecord) -> str | None:
    if not _is_hex_id(span.trace_id, TRACE_ID_HEX_LENGTH):
        return f"trace id {span.trace_id[:40]!r} is not 32 hex digits (16 non-zero bytes)"
    if not _is_hex_id(span.span_id, SPAN_ID_HEX_LENGTH):
        return f"span id {span.span_id[:40]!r} is not 16 hex digits (8 non-zero bytes)"
    if span.parent_span_id is not None:
        if not _is_hex_id(span.parent_span_id, SPAN_ID_HEX_LENGTH):
            return f"parent span id {span.parent_span_id[:40]!r} is not 16 hex digits (8 non-zero bytes)"
        if span.parent_span_id == span.span_id:
            return "the span is its own parent"
    return None


def ids_are_valid(span: SpanRecord) -> bool:
    return id_problem(span) is None
