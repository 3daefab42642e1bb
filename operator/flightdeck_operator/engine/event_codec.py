"""A faster reader for ``POST /v1/events`` batches (msgspec), for the inputs it can vouch for.

``decode_batch`` reads a body in one pass into ``FastEvent`` structs, field for field the shape of
``RunEventData`` (names, order, constraints, defaults), but stricter: JSON types only as JSON has
them (no ``"1000"`` for a token count, no number for a timestamp), timestamps only as RFC 3339
strings ``YYYY-MM-DDTHH:MM:SS[.ffffff][Z|±HH:MM]``. Whatever it does not accept, it refuses
(``None``), and the caller validates the body the usual way (pydantic), which accepts exactly what
it accepted before and gives the same error messages. So the accepted inputs and the messages are
unchanged; only the common case is faster.

What it accepts, it reads to the same values pydantic reads, and ``encode_event`` writes the same
JSON bytes ``RUN_EVENT_DATA`` writes (tests/unit/test_event_codec.py checks both on a corpus).
The one known difference in writing, floats of 1e16 and more (``1e16`` against ``1e+16``), is
refused: a tool's ``cost_units`` that large goes the usual way.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any, Final, Literal

import msgspec

from flightdeck_operator.engine.models import MAX_LATENCY_MS, MAX_TOKENS_PER_RUN

TokenCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_PER_RUN)]
LatencyMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]

# Timestamps the fast path reads itself (datetime.fromisoformat agrees with pydantic on these).
_RFC3339: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})?")
_LARGEST_PLAIN_FLOAT: Final = 1e16  # from here on the two encoders spell the exponent differently


class RequestStruct(msgspec.Struct, kw_only=True):
    session_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None


class MetricsStruct(msgspec.Struct, kw_only=True):
    latency_ms: LatencyMs | None = None
    success: bool = True
    error_type: str | None = None


class ModelUsageStruct(msgspec.Struct, kw_only=True):
    provider: str
    model: str
    input_tokens: TokenCount
    output_tokens: TokenCount
    cached_input_tokens: TokenCount = 0


class ToolUsageStruct(msgspec.Struct, kw_only=True):
    tool_name: str
    invocations: NonNegativeInt = 0
    cost_units: NonNegativeFloat = 0.0  # pydantic writes the default as a float too


class RunUsageStruct(msgspec.Struct, kw_only=True):
    model: ModelUsageStruct
    tools: list[ToolUsageStruct] = msgspec.field(default_factory=list)


class FastEvent(msgspec.Struct, kw_only=True):
    """``RunEventData`` as a struct. ``timestamp`` is read as any JSON value, checked to be RFC 3339
    text (``decode_batch``) and replaced by its datetime."""

    api_version: Literal["v1"] = "v1"
    type: Literal["run_start", "run_end"] = "run_end"
    timestamp: Any
    workspace_id: str = "ws_local"
    agent_id: str
    release_id: str
    run_id: str
    tenant_id: str
    task_id: str
    environment: str
    request: RequestStruct | None = None
    metrics: MetricsStruct = msgspec.field(default_factory=MetricsStruct)
    usage: RunUsageStruct
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class _Batch(msgspec.Struct):
    events: Annotated[list[FastEvent], msgspec.Meta(min_length=1)]


_decoder: Final = msgspec.json.Decoder(_Batch)
_encoder: Final = msgspec.json.Encoder()


def decode_batch(body: bytes) -> list[FastEvent] | None:
    """The batch's events, or ``None`` when the fast path cannot vouch for the body."""
    try:
        events = _decoder.decode(body).events
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    fromisoformat = dt.datetime.fromisoformat
    match = _RFC3339.fullmatch
    for event in events:
        text = event.timestamp
        if not isinstance(text, str) or match(text) is None:
            return None
        try:
            event.timestamp = fromisoformat(text)
        except ValueError:  # e.g. hour 24 or a leap second: pydantic has its own say
            return None
        for tool in event.usage.tools:
            cost = tool.cost_units
            if cost >= _LARGEST_PLAIN_FLOAT or not math.isfinite(cost):
                return None
    return events


def encode_event(event: FastEvent) -> bytes:
    """The event's JSON, byte for byte ``RUN_EVENT_DATA``'s (the stored ``event_json``)."""
    return _encoder.encode(event)
