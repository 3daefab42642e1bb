"""Continuous verification of a live release, the response to a confirmed failure, and soak (pure).

After a promotion the live release keeps being checked: every ``interval`` its evidence over the
last ``window`` is held against the policy's **absolute** limits (``maxCostPerRunUsd``,
``maxLatencyMs``, ``maxErrorRate``, and the statistical gates ``errorRate.max``,
``latency.pNN.maxMs``, ``costPerRun.maxUsd``). Comparisons with another release are left to the
promotion decision: once a release is live its predecessor gets no traffic, so there is no
same-time baseline to compare with.

Each check answers **Pass**, **Fail** (a limit is exceeded; for a statistical gate: proven at its
confidence) or **Inconclusive** (fewer than ``minRuns`` runs, or a gate that cannot tell yet).
Inconclusive never triggers anything and breaks a run of failures: a failure is *confirmed* after
``failureThreshold`` Fail checks in a row. A confirmed failure is answered once per live release:
a rollback to the previous release (``onFailure: Rollback``) unless the cooldown since the last
automatic rollback is still running or that release was itself rolled back automatically, else an
alert only.

A release has **soaked** once it has passed every check for the soak time without a break: the
Pass checks since ``verified_since`` span at least the soak time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from .evidence import SideEvidence, price_rollup
from .models import Policy, PricingTable, Rollup, format_time
from .policy import ClassifiedReason, ReasonKind, limit_breaches
from .statistical_policy import breach_text, inconclusive_bound_text, side_statistics
from .statistics import Verdict, evaluate_gate, runs_per_hour
from .statistics.config import StatisticalGates
from .statistics.report import ArrivalRates, GateReport, StatisticsReport, overall_verdict
from .statistics.runs_needed import NOT_EXPECTED

# "60s", "5m", "1h", "7d": a positive whole number of seconds, minutes, hours or days (intervals
# and windows); SPAN_OR_ZERO_PATTERN also allows zero (soak times and cooldowns: "0s" is none).
SPAN_PATTERN: Final = r"^[1-9][0-9]{0,4}[smhd]$"
SPAN_OR_ZERO_PATTERN: Final = r"^(0|[1-9][0-9]{0,4})[smhd]$"
_SPAN: Final = re.compile(SPAN_OR_ZERO_PATTERN)
_UNITS: Final = {
    "s": dt.timedelta(seconds=1),
    "m": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
}
# The subject of the verification's reasons ("live error_rate 0.2100 exceeds max 0.0500").
LIVE: Final = "live"


def parse_span(text: str) -> dt.timedelta:
    """``"90s"`` -> 90 seconds, ``"5m"``, ``"1h"``, ``"2d"``, ``"0s"``; anything else is a ValueError."""
    if _SPAN.fullmatch(text) is None:
        raise ValueError(
            f"invalid duration '{text}': expected a whole number of seconds, minutes, hours or days, "
            "such as '90s', '5m', '1h' or '2d'"
        )
    return int(text[:-1]) * _UNITS[text[-1]]


class OnFailure(StrEnum):
    """What a confirmed failure of the live release leads to."""

    ROLLBACK = "Rollback"  # a PromotionRequest rolling back to the previous release, decided as any
    ALERT = "Alert"  # status, an Event and a notification; nothing moves


class VerificationRules(BaseModel):
    """A policy's ``verification`` block in the engine's terms (durations parsed)."""

    model_config = ConfigDict(frozen=True)

    interval: dt.timedelta
    window: dt.timedelta
    failure_threshold: int = Field(ge=1)
    min_runs: int = Field(ge=0)
    on_failure: OnFailure
    cooldown: dt.timedelta


# --- one check ----------------------------------------------------------------------------------


class LiveCheck(BaseModel):
    """The verdict on one release's evidence over ``[since, until)`` at ``checked_at``."""

    model_config = ConfigDict(frozen=True)

    release_id: str
    checked_at: dt.datetime
    since: dt.datetime
    until: dt.datetime
    verdict: Verdict
    reasons: tuple[ClassifiedReason, ...]
    rollup: Rollup
    # Only when the policy has statistical gates with an absolute limit.
    statistics: StatisticsReport | None = None

    @property
    def reason_texts(self) -> tuple[str, ...]:
        return tuple(r.text for r in self.reasons)


def absolute_gates(gates: StatisticalGates | None) -> StatisticalGates | None:
    """Only the limits on the live release alone (comparisons with a baseline dropped); None when
    none is left."""
    if gates is None:
        return None
    kept = gates.model_copy(
        update={
            "error_rate": None
            if gates.error_rate is None or gates.error_rate.max is None
            else gates.error_rate.model_copy(update={"max_increase": None}),
            "latency": tuple(
                limits.model_copy(update={"max_ratio": None})
                for limits in gates.latency
                if limits.max_ms is not None
            ),
            "cost_per_run": None
            if gates.cost_per_run is None or gates.cost_per_run.max_usd is None
            else gates.cost_per_run.model_copy(update={"max_ratio": None}),
        }
    )
    return kept if kept.gates() else None


def check_live(
    *,
    evidence: SideEvidence,
    table: PricingTable,
    limits: Policy,
    gates: StatisticalGates | None,
    rules: VerificationRules,
    recent_runs: int = 0,
    now: dt.datetime,
) -> LiveCheck:
    """Check one live release. ``evidence`` covers ``[now - window, now)`` (with moments when
    ``gates`` is set); ``gates`` holds absolute limits only (``absolute_gates``); ``recent_runs``:
    its runs in the gates' rate window. Raises ``EvidenceError`` for a model its table lacks."""
    rollup = price_rollup(evidence.aggregates, table)
    common = {
        "release_id": evidence.release_id,
        "checked_at": now,
        "since": evidence.since,
        "until": evidence.until,
        "rollup": rollup,
    }
    if rollup.runs < rules.min_runs:
        text = (
            f"{rollup.runs} runs of {evidence.release_id} in the last {_span_text(rules.window)}; "
            f"verification needs at least {rules.min_runs}"
        )
        return LiveCheck(
            verdict=Verdict.INCONCLUSIVE,
            reasons=(ClassifiedReason(ReasonKind.INSUFFICIENT_EVIDENCE, text),),
            **common,
        )
    reasons = [
        ClassifiedReason(ReasonKind.POLICY_BREACH, text)
        for text in limit_breaches(limits, rollup, subject=LIVE)
    ]
    statistics = None
    if gates is not None:
        statistics, gate_reasons = _gate_reasons(gates, evidence, table, recent_runs, now)
        reasons += gate_reasons
    kinds = {r.kind for r in reasons}
    if ReasonKind.POLICY_BREACH in kinds:
        verdict = Verdict.FAIL
    elif kinds:
        verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.PASS
    return LiveCheck(verdict=verdict, reasons=tuple(reasons), statistics=statistics, **common)


def _gate_reasons(
    gates: StatisticalGates, evidence: SideEvidence, table: PricingTable, recent_runs: int, now: dt.datetime
) -> tuple[StatisticsReport, list[ClassifiedReason]]:
    live = side_statistics(evidence, table)
    reports: list[GateReport] = []
    reasons: list[ClassifiedReason] = []
    for name, spec in gates.gates():
        result = evaluate_gate(spec, live)
        reports.append(GateReport.of(name, result, NOT_EXPECTED, None))
        if result.verdict is Verdict.FAIL:
            reasons.append(ClassifiedReason(ReasonKind.POLICY_BREACH, breach_text(spec, result, role=LIVE)))
        elif result.verdict is Verdict.INCONCLUSIVE:
            reasons.append(
                ClassifiedReason(
                    ReasonKind.INSUFFICIENT_EVIDENCE, inconclusive_bound_text(spec, result, role=LIVE)
                )
            )
    report = StatisticsReport(
        verdict=overall_verdict([r.verdict for r in reports]),
        confidence=gates.confidence,
        sequential=gates.sequential,
        since=evidence.since,
        until=evidence.until,
        arrival=ArrivalRates(
            window=gates.rate_window,
            candidate_runs_per_hour=runs_per_hour(recent_runs, gates.rate_window_duration),
            baseline_runs_per_hour=0.0,
        ),
        gates=tuple(reports),
    )
    return report, reasons


def _span_text(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- the run of checks of one live release ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tracker:
    """What the checks of one live release (named by the ledger move that made it live) add up to."""

    release_id: str
    move_seq: int
    verdict: Verdict | None = None
    checked_at: dt.datetime | None = None
    consecutive_failures: int = 0
    # The first check of the current unbroken run of Pass verdicts (None: the last one was not Pass).
    verified_since: dt.datetime | None = None

    def confirmed(self, rules: VerificationRules) -> bool:
        """A failure confirmed by ``failureThreshold`` Fail checks in a row."""
        return self.consecutive_failures >= rules.failure_threshold


def track(previous: Tracker | None, check: LiveCheck, *, move_seq: int) -> Tracker:
    """The tracker after ``check``. A different live release (or move) starts afresh; a Fail extends
    the run of failures, anything else ends it; only Pass keeps (or starts) ``verified_since``."""
    if previous is None or (previous.release_id, previous.move_seq) != (check.release_id, move_seq):
        previous = Tracker(release_id=check.release_id, move_seq=move_seq)
    failures = previous.consecutive_failures + 1 if check.verdict is Verdict.FAIL else 0
    since = (previous.verified_since or check.checked_at) if check.verdict is Verdict.PASS else None
    return Tracker(
        release_id=check.release_id,
        move_seq=move_seq,
        verdict=check.verdict,
        checked_at=check.checked_at,
        consecutive_failures=failures,
        verified_since=since,
    )


# --- answering a confirmed failure ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailureResponse:
    """What the operator does about a confirmed failure: roll back to ``target``, or alert only;
    ``held`` says why a policy asking for a rollback only alerts."""

    action: OnFailure
    target: str | None = None
    held: str | None = None
    cooldown_until: dt.datetime | None = None


def respond(
    rules: VerificationRules,
    *,
    previous_release: str | None,
    last_automatic_rollback: dt.datetime | None,
    quarantined: Iterable[str],
    now: dt.datetime,
) -> FailureResponse:
    """Roll back to ``previous_release`` unless the policy only alerts, there is nothing to roll back
    to, the cooldown since the last automatic rollback on this pointer runs, or the previous release
    was rolled back automatically itself (it is not restored automatically until a person promotes it)."""
    if rules.on_failure is OnFailure.ALERT:
        return FailureResponse(OnFailure.ALERT)
    if previous_release is None:
        return FailureResponse(OnFailure.ALERT, held="no previous release to roll back to")
    if last_automatic_rollback is not None and now < last_automatic_rollback + rules.cooldown:
        until = last_automatic_rollback + rules.cooldown
        return FailureResponse(
            OnFailure.ALERT,
            held=f"cooldown: the last automatic rollback on this pointer was at {format_time(last_automatic_rollback)}, "
            f"no other before {format_time(until)}; this failure is only reported (a person decides)",
            cooldown_until=until,
        )
    if previous_release in set(quarantined):
        return FailureResponse(
            OnFailure.ALERT,
            held=f"the previous release {previous_release} was itself rolled back automatically; "
            "it is not made live again automatically until a person promotes it",
        )
    return FailureResponse(OnFailure.ROLLBACK, target=previous_release)


@dataclass(frozen=True, slots=True)
class AutomaticRollback:
    """An automatic rollback on one pointer: the release it took out, and when (the ledger's
    ``verification-failed`` entry with action Rollback)."""

    release_id: str
    seq: int
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class Promotion:
    """A passing promote on one pointer; ``manual``: a person asked for it (not the operator)."""

    release_id: str
    seq: int
    manual: bool


def quarantined(rollbacks: Iterable[AutomaticRollback], promotions: Iterable[Promotion]) -> frozenset[str]:
    """Releases rolled back automatically and not promoted by a person since: the operator never
    makes them live again on its own (neither by a rollback nor by a pipeline)."""
    cleared: dict[str, int] = {}
    for promotion in promotions:
        if promotion.manual:
            cleared[promotion.release_id] = max(cleared.get(promotion.release_id, 0), promotion.seq)
    return frozenset(r.release_id for r in rollbacks if cleared.get(r.release_id, 0) < r.seq)


# --- soak -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SoakProgress:
    """How far the live release of a pointer is in its soak: ``due`` is when it will have soaked if
    every check passes until then (None: not verified now)."""

    soaked: bool
    verified_since: dt.datetime | None
    due: dt.datetime | None


def soak_progress(tracker: Tracker | None, soak_time: dt.timedelta) -> SoakProgress:
    """Soaked when the current unbroken run of Pass checks spans ``soak_time`` (from its first to its
    last check): live and verified for the soak time."""
    if tracker is None or tracker.verdict is not Verdict.PASS or tracker.verified_since is None:
        return SoakProgress(soaked=False, verified_since=None, due=None)
    due = tracker.verified_since + soak_time
    assert tracker.checked_at is not None  # a verdict comes with its time
    return SoakProgress(soaked=tracker.checked_at >= due, verified_since=tracker.verified_since, due=due)
