"""Promotion windows: when a PromotionPolicy lets promotions through, and until when.

``PromotionPolicy.spec.promotionWindows`` lists *Deny* windows (change freezes: weekends, holidays)
and *Allow* windows (business hours). A window is a 5-field cron schedule evaluated in its own time
zone plus a duration: it is active at ``t`` iff some fire time ``s`` satisfies ``s <= t < s + D``
(half-open, so a freeze ending at 06:00 lets a promotion through at 06:00 exactly). Fires that start
before the previous one ends extend the window. Promotion is open at ``t`` iff no Deny window is
active and either there are no Allow windows or one of them is active. Windows gate promotions
only; rollbacks are never frozen (the caller decides which actions to gate).

The same answer is needed in three places: the controller's decision (Blocked, reason
PromotionWindowClosed, with ``nextOpen`` for Retry-After), the pointer sweep (``status
.promotionWindow`` for every pointer) and the webhook's dry-run prediction. So it lives here, pure:
no kopf, no Kubernetes client, ``now`` passed in. The only thing read is the time-zone database
(``zoneinfo``, cached; the ``tzdata`` package provides it in slim images).

Why cronsim: it evaluates cron expressions on aware datetimes with Debian cron's DST behaviour, and
iterates in both directions. A job at a fixed local time that falls in the spring-forward gap runs
at the first minute after the gap; one in the repeated hour of the fall-back runs once (the first
pass); a schedule with ``*`` in its minute or hour field follows real time (runs in both passes).
Durations are elapsed time: a 60h freeze starting Friday 18:00 ends 60 real hours later even when
the clocks change in between.
cronsim assumes whole-hour DST shifts: on the day Australia/Lord_Howe moves its clocks by 30
minutes, an hour-field schedule there may skip or repeat part of that hour.

Cost: the next change of the open/closed state is found lazily, merging every rule's boundary
instants in time order and stopping at the first that flips the state. Each rule reads at most
``MAX_FIRES_PER_RULE`` fire times, so a ``* * * * *`` schedule cannot hang the sweep; when that
bound (or the horizon) is reached first, the next change is reported as unknown (``None``).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from flightdeck_operator.engine.models import format_time

__all__ = [
    "DEFAULT_HORIZON",
    "DEFAULT_TIME_ZONE",
    "DURATION_PATTERN",
    "MAX_FIRES_PER_RULE",
    "WindowKind",
    "WindowRule",
    "WindowState",
    "check_schedule",
    "check_time_zone",
    "parse_duration",
    "window_state",
]

# "90m", "36h", "2d": a whole number of minutes, hours or days (no zero, no leading zero). The CRD
# carries the same pattern, so the API server rejects what parse_duration would.
DURATION_PATTERN: Final = r"^[1-9][0-9]{0,4}[mhd]$"
_DURATION: Final = re.compile(DURATION_PATTERN)
_DURATION_UNITS: Final = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}

CRON_FIELDS: Final = 5  # minute hour day-of-month month day-of-week; cronsim also takes seconds
DEFAULT_TIME_ZONE: Final = "UTC"
DEFAULT_HORIZON: Final = timedelta(days=400)  # a yearly freeze is always within sight
MAX_FIRES_PER_RULE: Final = 5_000  # ~3.5 days of a `* * * * *` schedule, ~20 ms of cronsim

_ONE_SECOND: Final = timedelta(seconds=1)
# Any instant works to validate an expression: cronsim parses it in the constructor.
_PROBE_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)

OPEN_NO_WINDOW: Final = "Promotion open (no window applies)"
_NO_OPENING: Final = "no opening found in the look-ahead"


def parse_duration(text: str) -> timedelta:
    """``"90m"`` -> 90 minutes, ``"36h"``, ``"2d"``; anything else is a ValueError."""
    if _DURATION.fullmatch(text) is None:
        raise ValueError(
            f"invalid duration '{text}': expected a whole number (1-99999) of minutes, hours or days, "
            "such as '90m', '36h' or '2d'"
        )
    return int(text[:-1]) * _DURATION_UNITS[text[-1]]


class WindowKind(StrEnum):
    DENY = "Deny"
    ALLOW = "Allow"


def check_schedule(schedule: str) -> None:
    """Raise ValueError unless ``schedule`` is a valid 5-field cron expression.

    Beyond the classic syntax (lists, ranges, steps, ``7`` for Sunday, month and day names) cronsim
    accepts ``L``, ``LW`` and ``MON#2``-style day specifications; so do we.
    """
    fields = schedule.split()
    if len(fields) != CRON_FIELDS:
        raise ValueError(
            f"invalid cron schedule '{schedule}': expected {CRON_FIELDS} fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    try:
        CronSim(schedule, _PROBE_TIME)
    except CronSimError as error:  # "Bad minute", "Bad day-of-month", ...
        raise ValueError(f"invalid cron schedule '{schedule}': {str(error).lower()}") from None


def _zone(name: str) -> tzinfo:
    # cronsim special-cases datetime.UTC (plain arithmetic); ZoneInfo("UTC") would take its slower
    # DST-aware path for the same answers.
    if name == DEFAULT_TIME_ZONE:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, malformed, a directory
        raise ValueError(f"unknown time zone '{name}'") from None


def check_time_zone(name: str) -> None:
    """Raise ValueError unless ``name`` is an IANA time zone (``Europe/Berlin``, ``UTC``)."""
    _zone(name)


@dataclass(frozen=True, slots=True)
class WindowRule:
    """One entry of ``promotionWindows``; validated on construction."""

    name: str
    kind: WindowKind
    schedule: str
    duration: timedelta
    time_zone: str = DEFAULT_TIME_ZONE

    def __post_init__(self) -> None:
        check_schedule(self.schedule)
        check_time_zone(self.time_zone)
        if self.duration <= timedelta(0):
            raise ValueError(f"window '{self.name}': duration must be positive, got {self.duration}")


@dataclass(frozen=True, slots=True)
class WindowState:
    """Whether promotion is open at one instant, why, and when that changes."""

    open: bool
    message: str
    active: tuple[str, ...]  # names of the windows active now (Deny or Allow), in rule order
    next_change: datetime | None  # when `open` flips next (UTC); None: not within the look-ahead
    next_open: datetime | None  # closed: next_change; open: None


def window_state(
    rules: Sequence[WindowRule], now: datetime, *, horizon: timedelta = DEFAULT_HORIZON
) -> WindowState:
    """Evaluate ``rules`` at ``now`` (timezone-aware) and look ``horizon`` ahead for the next change."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("window_state needs a timezone-aware 'now'")
    if horizon <= timedelta(0):
        raise ValueError(f"horizon must be positive, got {horizon}")
    if not rules:
        return WindowState(open=True, message=OPEN_NO_WINDOW, active=(), next_change=None, next_open=None)
    now = now.astimezone(UTC)
    kinds = [rule.kind for rule in rules]
    timelines = [_Timeline.start(rule, now) for rule in rules]
    active = [timeline.active for timeline in timelines]
    is_open = _is_open(kinds, active)
    next_change = _next_change(kinds, timelines, is_open, now + horizon)
    return WindowState(
        open=is_open,
        message=_message(rules, active, is_open, next_change),
        active=tuple(rule.name for rule, on in zip(rules, active, strict=True) if on),
        next_change=next_change,
        next_open=None if is_open else next_change,
    )


def _is_open(kinds: Sequence[WindowKind], active: Sequence[bool]) -> bool:
    allows = [on for kind, on in zip(kinds, active, strict=True) if kind == WindowKind.ALLOW]
    deny_active = any(on for kind, on in zip(kinds, active, strict=True) if kind == WindowKind.DENY)
    return not deny_active and (not allows or any(allows))


# A rule's boundary: (instant, active from then on), or (instant, None): unknown from then on,
# because the rule's fire bound was reached.
_Event = tuple[datetime, bool | None]


@dataclass(slots=True)
class _Timeline:
    """One rule: whether it is active at ``now`` and its later boundaries, lazily."""

    active: bool
    events: Iterator[_Event]

    @classmethod
    def start(cls, rule: WindowRule, now: datetime) -> _Timeline:
        zone = _zone(rule.time_zone)
        latest = _latest_fire(rule.schedule, zone, now)
        # Every fire lasts the same, so the latest one decides whether the window is active now.
        end = latest + rule.duration if latest is not None and latest + rule.duration > now else None
        return cls(active=end is not None, events=_events(rule, zone, now, end))


def _events(rule: WindowRule, zone: tzinfo, now: datetime, end: datetime | None) -> Iterator[_Event]:
    """The rule's boundaries after ``now``; ``end``: when the stretch active at ``now`` ends."""
    for count, fire in enumerate(_fires_after(rule.schedule, zone, now), start=1):
        if end is not None and fire > end:  # a gap before this fire: the window closes meanwhile
            yield end, False
        # Emitted even when it only extends the current stretch: the merge stays lazy (a frequent
        # schedule is read only as far as the other rules need).
        yield fire, True
        end = fire + rule.duration
        if count >= MAX_FIRES_PER_RULE:
            yield end, None  # whether a later fire extends this stretch is not known
            return
    if end is not None:  # no fire ever again (cronsim gives up after 50 years without one)
        yield end, False


def _next_change(
    kinds: Sequence[WindowKind], timelines: Sequence[_Timeline], is_open: bool, limit: datetime
) -> datetime | None:
    """The first instant in ``(now, limit]`` where the open state differs from ``is_open``."""
    active = [timeline.active for timeline in timelines]
    heap: list[tuple[datetime, int, bool | None]] = []

    def advance(index: int) -> None:
        event = next(timelines[index].events, None)
        if event is not None:
            # One pending event per rule, so (instant, index) is unique: the state is never compared.
            heapq.heappush(heap, (event[0], index, event[1]))

    for index in range(len(timelines)):
        advance(index)
    while heap and heap[0][0] <= limit:
        instant = heap[0][0]
        # Apply every boundary at this instant before judging (a freeze ending as an allow begins).
        while heap and heap[0][0] == instant:
            _, index, state = heapq.heappop(heap)
            if state is None:
                return None
            active[index] = state
            advance(index)
        if _is_open(kinds, active) != is_open:
            return instant
    return None


def _fires_after(schedule: str, zone: tzinfo, now: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``now``, in UTC, ascending, without repeats."""
    last = now
    # cronsim drops microseconds and steps one second before matching: its first fire is > now.
    for fire in CronSim(schedule, now.replace(microsecond=0).astimezone(zone)):
        fire_utc = fire.astimezone(UTC)
        # A fixed-time job iterates on local wall time: started in the repeated hour of a fall-back,
        # it yields that hour's first-pass fires (before now); two gap times map to one instant.
        if fire_utc > last:
            last = fire_utc
            yield fire_utc


def _latest_fire(schedule: str, zone: tzinfo, now: datetime) -> datetime | None:
    """The latest fire time at or before ``now`` (UTC), or None if there was none in 50 years."""
    local = now.astimezone(zone)
    # In the second pass of a fall-back hour, wall times later than now's map (first pass) to
    # instants before now: start reverse iteration after the repeated hour, skip what is later.
    shift = _fold_shift(local)
    # Reverse iteration steps one second back before matching: start a second after now.
    start = (now.replace(microsecond=0) + _ONE_SECOND + shift).astimezone(zone)
    for count, fire in enumerate(CronSim(schedule, start, reverse=True), start=1):
        fire_utc = fire.astimezone(UTC)
        if fire_utc <= now:
            return fire_utc
        if count >= MAX_FIRES_PER_RULE:
            break
    return None


def _fold_shift(local: datetime) -> timedelta:
    """How far the clocks went back, if ``local`` is in the second pass of a repeated hour."""
    if not local.fold:
        return timedelta(0)
    first, second = local.replace(fold=0).utcoffset(), local.utcoffset()
    if first is None or second is None or first <= second:
        return timedelta(0)
    return first - second


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _message(
    rules: Sequence[WindowRule], active: Sequence[bool], is_open: bool, next_change: datetime | None
) -> str:
    def active_of(kind: WindowKind) -> list[str]:
        return [rule.name for rule, on in zip(rules, active, strict=True) if on and rule.kind == kind]

    if is_open:
        allowing = active_of(WindowKind.ALLOW)
        if not allowing:
            return OPEN_NO_WINDOW
        noun = "window" if len(allowing) == 1 else "windows"
        until = f" until {format_time(next_change)}" if next_change is not None else ""
        return f"Promotion open in allow {noun} {_quoted(allowing)}{until}"
    denying = active_of(WindowKind.DENY)
    if denying:
        noun = "window" if len(denying) == 1 else "windows"
        until = f"until {format_time(next_change)}" if next_change is not None else f"({_NO_OPENING})"
        return f"Promotion closed by deny {noun} {_quoted(denying)} {until}"
    opens = f"next opens {format_time(next_change)}" if next_change is not None else _NO_OPENING
    return f"Promotion closed: outside every allow window ({opens})"
