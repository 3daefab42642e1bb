"""The fast reader of POST /v1/events (msgspec) against the usual one (pydantic): whatever the fast
reader accepts, the usual one accepts with the same values, and the stored row (``event_json``
included) is byte for byte the same; whatever it cannot vouch for, it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flightdeck_operator.engine.event_codec import decode_batch
from flightdeck_operator.sidecar.schemas import INGEST_BATCH
from flightdeck_operator.store.rows import data_row, fast_row
from tests.factories import event_dict

RECEIVED_US = 1_780_000_000_000_000


def rows_both_ways(body: bytes) -> tuple[list[tuple[Any, ...]] | None, list[tuple[Any, ...]] | None]:
    fast = decode_batch(body)
    try:
        usual = [data_row(event, RECEIVED_US) for event in INGEST_BATCH.validate_json(body)["events"]]
    except ValueError:
        usual = None
    return (None if fast is None else [fast_row(e, RECEIVED_US) for e in fast]), usual


def body_of(*events: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"events": list(events), **top}).encode()


def with_tools(**tool: Any) -> dict[str, Any]:
    event = event_dict()
    event["usage"]["tools"] = [{"tool_name": "search", **tool}]
    return event


ACCEPTED = {
    "plain": body_of(event_dict()),
    "every field": body_of(
        {
            **event_dict(labels={"team": 'é😀\u2028\x00"\\'}, request={"trace_id": "t", "session_id": None}),
            "api_version": "v1",
            "type": "run_start",
            "workspace_id": "ws_2",
            "metrics": {"latency_ms": 0, "success": False, "error_type": "Timeout"},
        }
    ),
    "fraction and offset": body_of(event_dict(timestamp="2026-05-05T10:00:00.5+05:30")),
    "zero offset": body_of(event_dict(timestamp="2026-05-05T10:00:00.000000-00:00")),
    "naive": body_of(event_dict(timestamp="2026-05-05T10:00:00")),
    "unknown keys": body_of({**event_dict(), "extra": [1, {"x": None}]}, other=1),
    "tools": body_of(with_tools(invocations=3, cost_units=1), with_tools(cost_units=0.25), with_tools()),
    "no metrics": body_of({k: v for k, v in event_dict().items() if k != "metrics"}),
    "duplicate key": b'{"events": [' + json.dumps(event_dict())[:-1].encode() + b', "run_id": "last"}]}',
    "limits": body_of(event_dict(input_tokens=10**12, latency_ms=10**10)),
}

REFUSED = {  # the usual reader decides (it may accept some of them, with its own rules)
    "string count": body_of(event_dict(input_tokens="1000")),
    "float count": body_of(event_dict(input_tokens=1000.0)),
    "number timestamp": body_of({**event_dict(), "timestamp": 1_780_000_000}),
    "space separator": body_of(event_dict(timestamp="2026-05-05 10:00:00Z")),
    "lower-case t": body_of(event_dict(timestamp="2026-05-05t10:00:00Z")),
    "seven digits": body_of(event_dict(timestamp="2026-05-05T10:00:00.1234567Z")),
    "hour 24": body_of(event_dict(timestamp="2026-05-05T24:00:00Z")),
    "leap second": body_of(event_dict(timestamp="2016-12-31T23:59:60Z")),
    "huge cost": body_of(with_tools(cost_units=1e20)),
    "negative": body_of(event_dict(output_tokens=-1)),
    "over the limit": body_of(event_dict(input_tokens=10**12 + 1)),
    "api version": body_of({**event_dict(), "api_version": "V1"}),
    "null metrics": body_of({**event_dict(), "metrics": None}),
    "empty": body_of(),
    "not json": b'{"events": [',
    "lone surrogate": b'{"events": ['
    + json.dumps(event_dict())[:-1].encode()
    + b', "agent_id": "\\ud800"}]}',
    "bom": b"\xef\xbb\xbf" + body_of(event_dict()),
}


@pytest.mark.parametrize("body", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_what_the_fast_reader_accepts_is_stored_exactly_as_before(body: bytes) -> None:
    fast, usual = rows_both_ways(body)
    assert fast is not None
    assert fast == usual


@pytest.mark.parametrize("body", REFUSED.values(), ids=REFUSED.keys())
def test_what_it_cannot_vouch_for_goes_the_usual_way(body: bytes) -> None:
    assert decode_batch(body) is None


_text = st.text(max_size=12)
_count = st.one_of(st.integers(min_value=-2, max_value=10**12 + 2), st.text(max_size=3), st.floats())
_stamp = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})?", fullmatch=True),
    st.integers(),
)
_events = st.fixed_dictionaries(
    {
        "timestamp": _stamp,
        "agent_id": _text,
        "release_id": _text,
        "run_id": _text,
        "tenant_id": _text,
        "task_id": _text,
        "environment": _text,
        "usage": st.fixed_dictionaries(
            {
                "model": st.fixed_dictionaries(
                    {"provider": _text, "model": _text, "input_tokens": _count, "output_tokens": _count}
                ),
                "tools": st.lists(
                    st.fixed_dictionaries(
                        {"tool_name": _text},
                        optional={"invocations": _count, "cost_units": st.one_of(st.floats(), _count)},
                    ),
                    max_size=2,
                ),
            }
        ),
    },
    optional={
        "metrics": st.fixed_dictionaries(
            {}, optional={"latency_ms": st.one_of(st.none(), _count), "success": st.booleans()}
        ),
        "labels": st.dictionaries(_text, _text, max_size=2),
        "type": st.sampled_from(["run_start", "run_end", "other"]),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_events, min_size=1, max_size=3))
def test_on_generated_batches_the_fast_reader_never_disagrees(events: list[dict[str, Any]]) -> None:
    body = json.dumps({"events": events}, allow_nan=False).encode() if _finite(events) else None
    if body is None:
        return
    fast, usual = rows_both_ways(body)
    if fast is not None:
        assert fast == usual


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True
