"""Boundary models: RunEvent validation and batch pre-checks (behaviour 22), JSON shapes, UTC handling."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, cast

import pytest
from pydantic import ValidationError

from flightdeck_operator.engine.models import (
    RUN_EVENT_DATA,
    InvalidEventsError,
    Policy,
    PolicyResult,
    RunEvent,
    utc_micros,
    validate_events,
)
from tests.factories import event_dict


def test_run_event_defaults_and_unknown_keys() -> None:
    event = RunEvent.model_validate(event_dict(surprise="ignored"))
    assert event.api_version == "v1"
    assert event.type == "run_end"
    assert event.workspace_id == "ws_local"
    assert event.request is None
    assert event.labels == {}
    assert event.usage.tools == []
    assert event.usage.model.cached_input_tokens == 0
    assert "surprise" not in event.model_dump()
    minimal = event_dict()
    del minimal["metrics"]
    defaults = RunEvent.model_validate(minimal).metrics
    assert (defaults.latency_ms, defaults.success, defaults.error_type) == (None, True, None)


def test_run_event_is_frozen() -> None:
    event = RunEvent.model_validate(event_dict())
    with pytest.raises(ValidationError):
        event.run_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("value", ["V1", "v2", "", None])
def test_unsupported_api_version_message(value: object) -> None:
    with pytest.raises(InvalidEventsError) as caught:
        validate_events([event_dict(), event_dict(api_version=value)])
    assert str(caught.value) == (
        f"Unsupported api_version for POST /v1/events: {value!r} (only 'v1' is accepted)."
    )


def test_missing_api_version_is_accepted() -> None:
    raw = event_dict()
    assert "api_version" not in raw
    assert len(validate_events([raw])) == 1


def test_one_invalid_event_rejects_the_batch_with_reference_prefix() -> None:
    bad = event_dict()
    bad["usage"]["model"]["input_tokens"] = -1
    with pytest.raises(InvalidEventsError) as caught:
        validate_events([event_dict(), bad])
    message = str(caught.value)
    assert message.startswith("Invalid RunEvent: 1 validation error for RunEvent\nusage.model.input_tokens\n")
    assert "Input should be greater than or equal to 0" in message


def test_non_object_item_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEventsError, match=r"^Invalid RunEvent: "):
        validate_events(["not an object"])


def test_timestamps_normalise_to_utc_microseconds() -> None:
    utc = RunEvent.model_validate(event_dict(timestamp="2026-05-05T10:00:00.000001Z"))
    offset = RunEvent.model_validate(event_dict(timestamp="2026-05-05T12:00:00.000001+02:00"))
    naive = RunEvent.model_validate(event_dict(timestamp="2026-05-05T10:00:00.000001"))
    assert utc.timestamp_us == offset.timestamp_us == naive.timestamp_us == 1_777_975_200_000_001
    assert offset.timestamp.utcoffset() == dt.timedelta(hours=2)  # kept as sent, for forensics
    assert utc_micros(dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.UTC)) == -1_000_000


def test_policy_none_and_zero_are_distinct() -> None:
    policy = Policy.model_validate({"min_candidate_runs": 0, "unknown": 1})
    assert policy.min_candidate_runs == 0
    assert policy.min_baseline_runs is None
    assert policy.require_high_diff_confidence is True
    assert policy.policy_id == "default"
    with pytest.raises(ValidationError):
        Policy(max_error_rate=1.5)
    with pytest.raises(ValidationError):
        Policy(max_latency_ms=-1)


def test_policy_result_json_ends_in_z() -> None:
    result = PolicyResult(
        passed=False,
        reasons=("r",),
        evaluated_at=dt.datetime(2026, 5, 5, 14, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    )
    assert json.loads(result.model_dump_json()) == {
        "passed": False,
        "reasons": ["r"],
        "evaluated_at": "2026-05-05T12:00:00.123456Z",
    }


# --- the plain-data mirror of RunEvent (the ingestion hot path) --------------------------------------


def _normalised(schema: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(schema).replace('Data"', '"').replace("Data/", "/")
    return cast("dict[str, Any]", json.loads(text))


def test_run_event_data_mirrors_run_event_field_for_field() -> None:
    mirror = _normalised(RUN_EVENT_DATA.json_schema())
    model = RunEvent.model_json_schema()
    # A default_factory has no JSON schema default; check it separately.
    without_metrics = {k: v for k, v in event_dict().items() if k != "metrics"}
    assert RUN_EVENT_DATA.validate_python(without_metrics)["metrics"] == (
        model["properties"]["metrics"].pop("default")
    )
    del mirror["description"], model["description"]
    assert mirror == model
    for name, definition in model["$defs"].items():  # same field order: same JSON key order
        assert list(mirror["$defs"][name]["properties"]) == list(definition["properties"])
    assert list(mirror["properties"]) == list(model["properties"])


_EQUIVALENCE_CASES: list[dict[str, Any]] = [
    event_dict(),
    event_dict(timestamp="2026-03-01T10:00:00.5+05:30", latency_ms=None, surprise={"x": 1}),
    event_dict(timestamp="2026-03-01T10:00:00"),
    event_dict() | {"timestamp": 1_772_000_000},
    event_dict(timestamp="not a time"),
    event_dict(input_tokens=-1),
    event_dict(input_tokens=10**12 + 1),
    event_dict(cached_input_tokens=7, success=False, api_version="v1", type="run_start"),
    event_dict(type="run_middle"),
    event_dict(api_version="v2"),
    event_dict(labels={"team": "a", "ü": "→"}, request={"trace_id": "t"}, workspace_id="ws"),
    event_dict(labels={"n": 1}),
    event_dict(request=None, metrics={}),
    event_dict(metrics={"latency_ms": "12", "success": "false", "error_type": "Timeout"}),
    event_dict(metrics={"latency_ms": 10**10 + 1}),
    {k: v for k, v in event_dict().items() if k != "usage"},
]
for _tools in ([{"tool_name": "search"}], [{"tool_name": "s", "invocations": 2, "cost_units": 1.5}]):
    _case = event_dict()
    _case["usage"]["tools"] = _tools
    _EQUIVALENCE_CASES.append(_case)
_bad_tools = event_dict()
_bad_tools["usage"]["tools"] = [{"tool_name": "s", "cost_units": -1}]
_EQUIVALENCE_CASES.append(_bad_tools)


@pytest.mark.parametrize("raw", _EQUIVALENCE_CASES)
def test_run_event_data_accepts_and_serialises_as_run_event(raw: dict[str, Any]) -> None:
    body = json.dumps(raw).encode()
    try:
        event = RunEvent.model_validate_json(body)
    except ValidationError:
        with pytest.raises(ValidationError):
            RUN_EVENT_DATA.validate_json(body)
        return
    data = RUN_EVENT_DATA.validate_json(body)
    assert data == event.model_dump()
    assert RUN_EVENT_DATA.dump_json(data) == event.model_dump_json().encode()
    assert RunEvent.model_validate_json(RUN_EVENT_DATA.dump_json(data)) == event
