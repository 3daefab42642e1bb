"""Boundary models: RunEvent validation and batch pre-checks (behaviour 22), JSON shapes, UTC handling."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from flightdeck_operator.models import (
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
