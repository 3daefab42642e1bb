"""Promotion windows: half-open boundaries, deny over allow, overlaps, DST, next change, validation.

The property test checks window_state against a brute force: every fire time from a start well
before ``now`` (plain forward cronsim iteration), then the definition applied minute by minute.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from flightdeck_operator.engine.windows import (
    DURATION_PATTERN,
    MAX_FIRES_PER_RULE,
    WindowKind,
    WindowRule,
    WindowState,
    check_schedule,
    check_time_zone,
    parse_duration,
    window_state,
)

UTC = dt.UTC
BERLIN = "Europe/Berlin"
MINUTE = dt.timedelta(minutes=1)
TINY = dt.timedelta(microseconds=1)


def at(text: str) -> dt.datetime:
    """An ISO instant with ``Z``: ``at("2026-11-27T18:00Z")``."""
    return dt.datetime.fromisoformat(text)


def deny(schedule: str, duration: str, time_zone: str = "UTC", name: str = "freeze") -> WindowRule:
    return WindowRule(name, WindowKind.DENY, schedule, parse_duration(duration), time_zone)


def allow(schedule: str, duration: str, time_zone: str = "UTC", name: str = "hours") -> WindowRule:
    return WindowRule(name, WindowKind.ALLOW, schedule, parse_duration(duration), time_zone)


# Friday 2026-11-27 18:00 UTC, 60 hours: until Monday 2026-11-30 06:00 UTC.
WEEKEND = deny("0 18 * * 5", "60h", name="weekend-freeze")
FRIDAY_18 = at("2026-11-27T18:00Z")
MONDAY_06 = at("2026-11-30T06:00Z")


# --- boundaries ---------------------------------------------------------------------------------


def test_no_rules_is_always_open() -> None:
    assert window_state([], FRIDAY_18) == WindowState(
        open=True, message="Promotion open (no window applies)", active=(), next_change=None, next_open=None
    )


def test_deny_window_is_half_open() -> None:
    before = window_state([WEEKEND], FRIDAY_18 - TINY)
    assert before.open
    assert before.next_change == FRIDAY_18
    assert before.next_open is None
    assert before.message == "Promotion open (no window applies)"

    start = window_state([WEEKEND], FRIDAY_18)
    assert not start.open
    assert start.active == ("weekend-freeze",)
    assert start.next_change == start.next_open == MONDAY_06
    assert start.message == "Promotion closed by deny window 'weekend-freeze' until 2026-11-30T06:00:00Z"

    assert not window_state([WEEKEND], MONDAY_06 - TINY).open
    end = window_state([WEEKEND], MONDAY_06)
    assert end.open
    assert end.active == ()
    assert end.next_change == at("2026-12-04T18:00Z")


def test_returned_instants_are_utc_whatever_the_zone_of_now() -> None:
    state = window_state([WEEKEND], FRIDAY_18.astimezone(dt.timezone(dt.timedelta(hours=-8))))
    assert state.next_change == MONDAY_06
    assert state.next_change is not None
    assert state.next_change.utcoffset() == dt.timedelta(0)


def test_allow_window_opens_and_closes() -> None:
    hours = allow("0 9 * * 1-5", "8h", name="business-hours")
    inside = window_state([hours], at("2026-11-25T12:00Z"))
    assert inside.open
    assert inside.active == ("business-hours",)
    assert inside.next_change == at("2026-11-25T17:00Z")
    assert inside.next_open is None
    assert inside.message == "Promotion open in allow window 'business-hours' until 2026-11-25T17:00:00Z"

    outside = window_state([hours], at("2026-11-25T17:00Z"))
    assert not outside.open
    assert outside.active == ()
    assert outside.next_change == outside.next_open == at("2026-11-26T09:00Z")
    assert outside.message == (
        "Promotion closed: outside every allow window (next opens 2026-11-26T09:00:00Z)"
    )
    # Friday evening: the next allow window is Monday's.
    assert window_state([hours], at("2026-11-27T20:00Z")).next_open == at("2026-11-30T09:00Z")


def test_one_active_allow_window_is_enough() -> None:
    morning = allow("0 9 * * *", "3h", name="morning")
    afternoon = allow("0 14 * * *", "3h", name="afternoon")
    state = window_state([morning, afternoon], at("2026-11-25T15:00Z"))
    assert state.open
    assert state.active == ("afternoon",)
    assert not window_state([morning, afternoon], at("2026-11-25T13:00Z")).open


def test_deny_beats_allow() -> None:
    hours = allow("0 9 * * 1-5", "8h", name="business-hours")
    incident = deny("0 11 * * 3", "2h", name="incident-review")
    state = window_state([hours, incident], at("2026-11-25T12:00Z"))  # a Wednesday
    assert not state.open
    assert state.active == ("business-hours", "incident-review")
    assert state.next_open == at("2026-11-25T13:00Z")
    assert state.message == "Promotion closed by deny window 'incident-review' until 2026-11-25T13:00:00Z"


def test_several_deny_windows_are_all_named() -> None:
    state = window_state(
        [deny("0 0 * * *", "2h", name="a"), deny("0 1 * * *", "2h", name="b")], at("2026-11-25T01:30Z")
    )
    assert state.message == "Promotion closed by deny windows 'a', 'b' until 2026-11-25T03:00:00Z"


# --- overlaps and simultaneous boundaries ---------------------------------------------------------


def test_overlapping_fires_extend_the_window() -> None:
    # 00:00-05:00 and 04:00-09:00: one stretch, so the change is at 09:00, not 05:00.
    rule = deny("0 0,4 * * *", "5h")
    state = window_state([rule], at("2026-11-25T01:00Z"))
    assert not state.open
    assert state.next_open == at("2026-11-25T09:00Z")
    assert not window_state([rule], at("2026-11-25T05:00Z")).open
    assert window_state([rule], at("2026-11-25T09:00Z")).open


def test_adjacent_fires_leave_no_gap() -> None:
    # Every 6 hours for 6 hours: the end of one fire is the start of the next, always closed.
    state = window_state([deny("0 */6 * * *", "6h")], at("2026-11-25T06:00Z"))
    assert not state.open
    assert state.next_change is None
    assert state.message == "Promotion closed by deny window 'freeze' (no opening found in the look-ahead)"


def test_boundaries_at_the_same_instant_are_applied_together() -> None:
    # A freeze ending at 09:00 exactly as the allow window starts: one change, at 09:00.
    rules = [deny("0 3 * * *", "6h", name="night"), allow("0 9 * * *", "8h", name="day")]
    state = window_state(rules, at("2026-11-25T05:00Z"))
    assert not state.open
    assert state.next_open == at("2026-11-25T09:00Z")
    # Two allow windows back to back: open from 09:00 to 17:00 without a change at 12:00.
    shifts = [allow("0 9 * * *", "3h", name="am"), allow("0 12 * * *", "5h", name="pm")]
    assert window_state(shifts, at("2026-11-25T10:00Z")).next_change == at("2026-11-25T17:00Z")


# --- time zones and DST (Europe/Berlin: CEST->CET on 2026-10-25, CET->CEST on 2026-03-29) -----------


def test_time_zone_shifts_the_window() -> None:
    freeze = deny("0 18 * * 5", "60h", BERLIN, name="weekend-freeze")
    # Winter: Friday 18:00 CET is 17:00 UTC.
    assert window_state([freeze], at("2026-11-27T16:59Z")).next_change == at("2026-11-27T17:00Z")
    assert window_state([freeze], at("2026-11-27T17:00Z")).next_open == at("2026-11-30T05:00Z")


def test_weekend_freeze_across_the_autumn_change() -> None:
    # Friday 18:00 CEST (16:00 UTC) + 60 elapsed hours = Monday 04:00 UTC, 05:00 on the wall clock.
    freeze = deny("0 18 * * 5", "60h", BERLIN, name="weekend-freeze")
    state = window_state([freeze], at("2026-10-24T12:00Z"))
    assert not state.open
    assert state.message == "Promotion closed by deny window 'weekend-freeze' until 2026-10-26T04:00:00Z"
    assert window_state([freeze], at("2026-10-23T16:00Z")).next_open == at("2026-10-26T04:00Z")
    reopened = window_state([freeze], at("2026-10-26T04:00Z"))
    assert reopened.open
    assert reopened.next_change == at("2026-10-30T17:00Z")  # next Friday 18:00 CET


def test_weekend_freeze_across_the_spring_change() -> None:
    freeze = deny("0 18 * * 5", "60h", BERLIN, name="weekend-freeze")
    assert window_state([freeze], at("2026-03-27T16:59Z")).next_change == at("2026-03-27T17:00Z")
    assert window_state([freeze], at("2026-03-29T12:00Z")).next_open == at("2026-03-30T05:00Z")


def test_fixed_time_in_the_spring_gap_fires_after_the_gap() -> None:
    # 02:00 does not exist on 2026-03-29: the job runs at 03:00 CEST (01:00 UTC), as Debian cron does.
    rule = deny("0 2 * * *", "1h", BERLIN)
    assert window_state([rule], at("2026-03-28T01:30Z")).active == ("freeze",)  # 02:30 CET
    before = window_state([rule], at("2026-03-29T00:59Z"))
    assert before.open
    assert before.next_change == at("2026-03-29T01:00Z")
    assert window_state([rule], at("2026-03-29T01:00Z")).next_open == at("2026-03-29T02:00Z")
    assert window_state([rule], at("2026-03-29T02:00Z")).next_change == at("2026-03-30T00:00Z")  # CEST


def test_fixed_time_in_the_repeated_hour_fires_once() -> None:
    # 02:30 on 2026-10-25 happens twice; the job runs on the first pass (02:30 CEST, 00:30 UTC).
    rule = deny("30 2 * * *", "90m", BERLIN)
    # 01:15 UTC is 02:15 CET, the second pass: the 00:30 UTC fire still covers it.
    second_pass = window_state([rule], at("2026-10-25T01:15Z"))
    assert not second_pass.open
    assert second_pass.next_open == at("2026-10-25T02:00Z")
    # 01:45 UTC (02:45 CET, after the wall time of the fire): no second fire, still the first one.
    assert window_state([rule], at("2026-10-25T01:45Z")).next_open == at("2026-10-25T02:00Z")
    after = window_state([rule], at("2026-10-25T02:00Z"))
    assert after.open
    assert after.next_change == at("2026-10-26T01:30Z")  # 02:30 CET


def test_hourly_schedule_follows_real_time_through_the_repeated_hour() -> None:
    # "0 * * * *" runs at 02:00 CEST and again at 02:00 CET (00:00 and 01:00 UTC).
    rule = deny("0 * * * *", "10m", BERLIN)
    assert not window_state([rule], at("2026-10-25T00:05Z")).open
    state = window_state([rule], at("2026-10-25T01:05Z"))
    assert not state.open
    assert state.next_open == at("2026-10-25T01:10Z")


# --- next change: horizon and the fire bound -------------------------------------------------------


def test_horizon_limits_the_look_ahead() -> None:
    christmas = deny("0 0 24 12 *", "3d", name="christmas")
    now = at("2026-01-15T00:00Z")
    assert window_state([christmas], now).next_change == at("2026-12-24T00:00Z")
    assert window_state([christmas], now, horizon=dt.timedelta(days=30)).next_change is None
    # Closed with the opening beyond the horizon.
    inside = window_state([christmas], at("2026-12-25T00:00Z"), horizon=dt.timedelta(hours=1))
    assert not inside.open
    assert inside.next_open is None


def test_every_minute_schedule_is_bounded() -> None:
    # Continuously active: its stretch never ends, so the reading stops at the fire bound.
    rules = [allow("* * * * *", "1m", name="always"), WEEKEND]
    monday = window_state(rules, at("2026-11-23T12:00Z"))
    assert monday.open
    assert monday.active == ("always",)
    assert monday.next_change is None  # Friday is further than MAX_FIRES_PER_RULE minutes away
    assert MAX_FIRES_PER_RULE < 5 * 24 * 60
    thursday = window_state(rules, at("2026-11-26T20:00Z"))
    assert thursday.next_change == FRIDAY_18


def test_now_must_be_aware_and_horizon_positive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window_state([WEEKEND], dt.datetime(2026, 11, 27, 18))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="horizon must be positive"):
        window_state([WEEKEND], FRIDAY_18, horizon=dt.timedelta(0))


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("0 18 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 0 18 * * 5", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("", "expected 5 fields (minute hour day-of-month month day-of-week), got 0"),
        ("60 * * * *", "bad minute"),
        ("0 24 * * *", "bad hour"),
        ("0 0 32 * *", "bad day-of-month"),
        ("0 0 30 2 *", "bad day-of-month"),  # never fires
        ("0 0 * 13 *", "bad month"),
        ("0 0 * * 8", "bad day-of-week"),
        ("*/0 * * * *", "bad minute"),
        ("a b c d e", "bad minute"),
    ],
)
def test_invalid_schedules(schedule: str, why: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid cron schedule") as error:
        check_schedule(schedule)
    assert str(error.value) == f"invalid cron schedule '{schedule}': {why}"


@pytest.mark.parametrize("schedule", ["0 18 * * 5", "*/15 9-17 * * MON-FRI", "0 0 L * *", "0 0 * * 7"])
def test_valid_schedules(schedule: str) -> None:
    check_schedule(schedule)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "Europe", "../etc/passwd", "/etc/localtime", "utc"])
def test_unknown_time_zones(name: str) -> None:
    with pytest.raises(ValueError, match=r"^unknown time zone") as error:
        check_time_zone(name)
    assert str(error.value) == f"unknown time zone '{name}'"


def test_rules_are_validated_on_construction() -> None:
    with pytest.raises(ValueError, match="invalid cron schedule"):
        deny("0 18 * *", "1h")
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Berln'"):
        deny("0 18 * * 5", "1h", "Europe/Berln")
    with pytest.raises(ValueError, match="duration must be positive"):
        WindowRule("x", WindowKind.DENY, "0 18 * * 5", dt.timedelta(0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1m", dt.timedelta(minutes=1)),
        ("90m", dt.timedelta(minutes=90)),
        ("36h", dt.timedelta(hours=36)),
        ("2d", dt.timedelta(days=2)),
        ("99999d", dt.timedelta(days=99999)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["0m", "01h", "90", "h", "1.5h", "90s", "2H", "-1h", " 90m", "90m\n", "100000m", "1w", ""]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as error:
        parse_duration(text)
    assert f"'{text}'" in str(error.value)


def test_duration_pattern_is_the_one_the_crd_carries() -> None:
    assert DURATION_PATTERN == r"^[1-9][0-9]{0,4}[mhd]$"


# --- property: window_state agrees with the definition, minute by minute ------------------------------

# Santiago changes its clocks at midnight. Not Australia/Lord_Howe: cronsim assumes whole-hour DST
# shifts, and around Lord Howe's 30-minute change its fire times depend on where iteration starts.
ZONES = ["UTC", BERLIN, "America/New_York", "America/Santiago", "Asia/Kolkata"]
# DST changes of 2026 in those zones, to aim `now` near them.
TRANSITIONS = [
    at("2026-03-08T07:00Z"),
    at("2026-03-29T01:00Z"),
    at("2026-04-05T03:00Z"),
    at("2026-09-06T04:00Z"),
    at("2026-10-25T01:00Z"),
    at("2026-11-01T06:00Z"),
]

schedules = st.builds(
    " ".join,
    st.tuples(
        st.sampled_from(["*", "*/15", "0", "30", "0,30", "5-10", "45"]),
        st.sampled_from(["*", "2", "*/6", "9-17", "0,12", "1", "23"]),
        st.sampled_from(["*", "*", "1", "15", "L"]),
        st.sampled_from(["*", "*", "3,10", "11"]),
        st.sampled_from(["*", "*", "1-5", "5", "0,6"]),
    ),
)
durations = st.one_of(
    st.integers(1, 600).map(lambda n: f"{n}m"),
    st.integers(1, 36).map(lambda n: f"{n}h"),
    st.integers(1, 2).map(lambda n: f"{n}d"),
)
rule_specs = st.tuples(st.sampled_from(list(WindowKind)), schedules, durations, st.sampled_from(ZONES))
instants = st.one_of(
    # Hypothesis takes naive bounds and attaches the time zone itself.
    st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2027, 12, 31), timezones=st.just(UTC)),  # noqa: DTZ001
    st.builds(
        lambda base, seconds: base + dt.timedelta(seconds=seconds),
        st.sampled_from(TRANSITIONS),
        st.floats(-2 * 86400, 86400, allow_nan=False),
    ),
)


def zone_of(name: str) -> dt.tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def brute_force(rules: Sequence[WindowRule], now: dt.datetime, horizon: dt.timedelta) -> tuple[bool, ...]:
    """Open/closed at now and at every whole minute up to now + horizon, from the definition."""
    longest = max(rule.duration for rule in rules)
    start, stop = now - longest - dt.timedelta(days=1), now + horizon
    fires: list[list[dt.datetime]] = []
    for rule in rules:
        times: list[dt.datetime] = []
        for fire in CronSim(rule.schedule, start.astimezone(zone_of(rule.time_zone))):
            if fire.astimezone(UTC) > stop:
                break
            times.append(fire.astimezone(UTC))
        fires.append(sorted(set(times)))

    def active(index: int, t: dt.datetime) -> bool:
        latest = bisect.bisect_right(fires[index], t) - 1
        return latest >= 0 and fires[index][latest] + rules[index].duration > t

    def is_open(t: dt.datetime) -> bool:
        on = [active(index, t) for index in range(len(rules))]
        allows = [a for rule, a in zip(rules, on, strict=True) if rule.kind is WindowKind.ALLOW]
        denied = any(a for rule, a in zip(rules, on, strict=True) if rule.kind is WindowKind.DENY)
        return not denied and (not allows or any(allows))

    minute = now.replace(second=0, microsecond=0) + MINUTE
    states = [is_open(now)]
    while minute <= stop:
        states.append(is_open(minute))
        minute += MINUTE
    return tuple(states)


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(rule_specs, min_size=1, max_size=3),
    now=instants,
    horizon_hours=st.integers(1, 48),
)
def test_window_state_matches_the_definition(
    specs: list[tuple[WindowKind, str, str, str]], now: dt.datetime, horizon_hours: int
) -> None:
    rules = [
        WindowRule(f"w{index}", kind, schedule, parse_duration(duration), zone)
        for index, (kind, schedule, duration, zone) in enumerate(specs)
    ]
    horizon = dt.timedelta(hours=horizon_hours)
    state = window_state(rules, now, horizon=horizon)
    expected = brute_force(rules, now, horizon)
    assert state.open == expected[0]

    # Every boundary is a whole UTC minute, so the first differing minute is the next change.
    first_minute = now.replace(second=0, microsecond=0) + MINUTE
    changes = [i for i, is_open in enumerate(expected[1:]) if is_open != expected[0]]
    expected_change = first_minute + changes[0] * MINUTE if changes else None
    assert state.next_change == expected_change
    assert state.next_open == (None if state.open else expected_change)

    if state.next_change is not None:
        assert window_state(rules, state.next_change - TINY, horizon=horizon).open == state.open
        assert window_state(rules, state.next_change, horizon=horizon).open != state.open
