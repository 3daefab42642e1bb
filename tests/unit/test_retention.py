"""Which decided requests retention deletes, and why: TTL (request, then policy, then default),
the newest few per pointer kept past their TTL, the global cap (which wins), the minimum age and the
opt-out annotation (which win over everything)."""

from __future__ import annotations

import datetime as dt

from flightdeck_operator.api.retention import (
    DecidedRequest,
    PruneReason,
    RetentionDefaults,
    plan_retention,
)
from flightdeck_operator.api.v1alpha1 import RequestRetention

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
DEFAULTS = RetentionDefaults(ttl_seconds=3600, retain_per_pointer=1, retain_max=100, min_age_seconds=60)


def decided(name: str, minutes_ago: float, *, pointer: str = "ptr", **fields: object) -> DecidedRequest:
    values: dict[str, object] = {
        "namespace": "team-a",
        "name": name,
        "uid": f"uid-{name}",
        "pointer": pointer,
        "decided_at": NOW - dt.timedelta(minutes=minutes_ago),
        **fields,
    }
    return DecidedRequest(**values)  # type: ignore[arg-type]


def pruned(plan: list[object]) -> list[tuple[str, str]]:
    return [(p.request.name, p.reason.value) for p in plan]  # type: ignore[attr-defined]


def test_expired_requests_go_oldest_first_except_the_newest_of_each_pointer() -> None:
    requests = [
        decided("a", 200),
        decided("b", 120),
        decided("c", 90),
        decided("d", 30),  # within the TTL (and the newest of ptr)
        decided("x", 300, pointer="other"),  # long past its TTL, but the newest of its pointer
    ]
    plan = plan_retention(requests, {}, DEFAULTS, NOW)
    assert pruned(plan) == [("a", "ttl"), ("b", "ttl"), ("c", "ttl")]
    assert {p.reason for p in plan} == {PruneReason.TTL}


def test_the_request_then_the_policy_then_the_default_sets_the_ttl() -> None:
    requests = [
        decided("own-ttl", 20, ttl_seconds=600),  # 10 minutes: due
        decided("policy-ttl", 20),  # the policy says 30 minutes: not due
        decided("newest", 1),
    ]
    policies = {("team-a", "ptr"): RequestRetention(ttl_seconds_after_decided=1800, retain_per_pointer=0)}
    assert pruned(plan_retention(requests, policies, DEFAULTS, NOW)) == [("own-ttl", "ttl")]
    # retainPerPointer 0 from the policy: even the newest goes once due.
    zero_ttl = [decided("only", 2, ttl_seconds=0)]
    assert pruned(plan_retention(zero_ttl, policies, DEFAULTS, NOW)) == [("only", "ttl")]
    assert pruned(plan_retention(zero_ttl, {}, DEFAULTS, NOW)) == []  # default keeps the newest one


def test_the_cap_wins_over_the_ttl_and_the_newest_per_pointer() -> None:
    defaults = RetentionDefaults(ttl_seconds=86_400, retain_per_pointer=3, retain_max=3, min_age_seconds=60)
    requests = [decided(f"r{i}", 100 - i) for i in range(6)]  # all within TTL, all "newest 3" or older
    plan = plan_retention(requests, {}, defaults, NOW)
    assert pruned(plan) == [("r0", "cap"), ("r1", "cap"), ("r2", "cap")]


def test_the_minimum_age_and_the_annotation_win_over_everything() -> None:
    defaults = RetentionDefaults(ttl_seconds=0, retain_per_pointer=0, retain_max=0, min_age_seconds=600)
    requests = [
        decided("young", 5),  # decided 5 minutes ago: too young even for the cap
        decided("kept", 500, retain=True),
        decided("old", 500),
    ]
    assert pruned(plan_retention(requests, {}, defaults, NOW)) == [("old", "ttl")]


def test_a_replayed_copy_is_timed_from_its_re_creation() -> None:
    """A GitOps tool re-creates a deleted request; the replay shows the original decision time. Its
    TTL and minimum age count from the re-creation, so it is deleted (and re-created) at most once
    per TTL, not at every sync."""
    recreated = NOW - dt.timedelta(minutes=5)
    requests = [
        decided("replayed", 600, created_at=recreated),  # decided 10 hours ago, re-created 5 min ago
        decided("original", 600, created_at=NOW - dt.timedelta(minutes=601)),
        decided("newest", 1),
    ]
    assert pruned(plan_retention(requests, {}, DEFAULTS, NOW)) == [("original", "ttl")]
    later = NOW + dt.timedelta(minutes=56)  # the re-creation is an hour old: due like any other
    assert pruned(plan_retention(requests, {}, DEFAULTS, later)) == [("original", "ttl"), ("replayed", "ttl")]
