"""Pure pieces of the sidecar and the shared promote code: status-to-answer mapping, request names,
token parsing and caching, loopback detection, the events file reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flightdeck_operator.actions.promotions import (
    ActionInput,
    Verdict,
    is_decided,
    request_name,
    result_from_request,
)
from flightdeck_operator.cli.commands import read_events_file
from flightdeck_operator.engine.models import PromotionAction
from flightdeck_operator.sidecar.auth import (
    Access,
    AuthError,
    StaticTokenAuth,
    TtlCache,
    bearer_token,
    is_loopback,
)


def request_body(
    phase: str, *, decided: bool = True, action: str = "promote", **decision: Any
) -> dict[str, Any]:
    conditions = [
        {"type": "Decided", "status": "True" if decided else "False", "reason": "X", "message": "m"}
    ]
    if phase == "Failed":
        conditions.append(
            {"type": "Stalled", "status": "True", "reason": "NothingToRollBack", "message": "why"}
        )
    return {
        "metadata": {"namespace": "ns", "name": "req"},
        "spec": {"action": action, "release": "rel-b", "pointer": "p"},
        "status": {"phase": phase, "conditions": conditions, "decision": decision},
    }


DECISION = {
    "actionId": "act_0123456789ab",
    "releaseId": "rel-b",
    "agentId": "agent",
    "environment": "local",
    "pointerBefore": "rel-a",
    "pointerChanged": False,
    "policy": {"passed": False, "reasons": ["r1", "r2"], "evaluatedAt": "2026-05-05T12:00:00.5Z"},
}


@pytest.mark.parametrize(
    ("phase", "action", "verdict", "message"),
    [
        ("Blocked", "promote", Verdict.BLOCKED, "Promotion blocked by policy."),
        ("Blocked", "rollback", Verdict.BLOCKED, "Rollback blocked by policy."),
        ("Promoted", "promote", Verdict.PASSED, ""),
        ("RolledBack", "rollback", Verdict.PASSED, ""),
    ],
)
def test_decided_requests_map_to_the_reference_outcome(
    phase: str, action: str, verdict: Verdict, message: str
) -> None:
    changed = verdict is Verdict.PASSED
    body = request_body(phase, action=action, **{**DECISION, "pointerChanged": changed})
    result = result_from_request(body)
    assert result.verdict is verdict
    assert result.message == message
    assert result.outcome is not None
    assert result.outcome.model_dump(mode="json") == {
        "action_id": "act_0123456789ab",
        "action": action,
        "release_id": "rel-b",
        "agent_id": "agent",
        "environment": "local",
        "baseline_release_id": "rel-a",
        "promoted_pointer_changed": changed,
        "policy": {"passed": False, "reasons": ["r1", "r2"], "evaluated_at": "2026-05-05T12:00:00.500000Z"},
    }


def test_failed_requests_answer_with_the_stalled_message() -> None:
    result = result_from_request(request_body("Failed"))
    assert (result.verdict, result.outcome, result.message) == (Verdict.FAILED, None, "why")
    assert is_decided(request_body("Failed"))
    assert not is_decided(request_body("Pending", decided=False))
    assert not is_decided({"metadata": {}, "spec": {}})


def test_request_names_are_deterministic_per_namespace_caller_and_key() -> None:
    name = request_name("ns", "alice", "k1")
    assert name == request_name("ns", "alice", "k1")
    assert name.startswith("http-")
    assert len(name) == 45
    assert len({name, request_name("ns", "bob", "k1"), request_name("ns2", "alice", "k1")}) == 3
    assert request_name("ns", "alice", None) != request_name("ns", "alice", None)


def test_the_body_digest_covers_every_field() -> None:
    base = ActionInput(
        action=PromotionAction.PROMOTE, release_id="r", environment="e", window="7d", reason="x", actor="a"
    )
    assert base.digest() == base.model_copy().digest()
    for field, value in (("reason", "y"), ("window", "1d"), ("action", PromotionAction.ROLLBACK)):
        assert base.model_copy(update={field: value}).digest() != base.digest()


def test_bearer_tokens_and_the_static_token() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer abc") is None  # case-sensitive, as the reference
    assert bearer_token("Bearer   ") is None
    assert bearer_token(None) is None
    auth = StaticTokenAuth("s3cret\n")
    assert auth.check("Bearer s3cret", Access.PROMOTE).username == "static-token"
    with pytest.raises(AuthError) as denied:
        auth.check("Bearer s3cre", Access.READ)
    assert (denied.value.status, denied.value.message) == (
        401,
        "Missing or invalid API token for read route.",
    )
    with pytest.raises(ValueError, match="empty"):
        StaticTokenAuth("  \n")


def test_ttl_cache_expires_and_is_bounded() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(10, max_entries=2, clock=lambda: now[0])
    cache.put("a", 1)
    assert cache.get("a") == (True, 1)
    now[0] = 10.0
    assert cache.get("a") == (False, None)
    for key in ("x", "y", "z"):
        cache.put(key, 0)
    assert cache.get("x") == (False, None)  # the oldest was evicted
    disabled: TtlCache[str, int] = TtlCache(0)
    disabled.put("a", 1)
    assert disabled.get("a") == (False, None)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_events_files_are_json_arrays_or_json_lines(tmp_path: Path) -> None:
    lines = tmp_path / "e.jsonl"
    lines.write_text('{"a": 1}\n\n  \n{"b": 2}\n')
    assert read_events_file(lines) == [{"a": 1}, {"b": 2}]
    array = tmp_path / "e.json"
    array.write_text(json.dumps([{"a": 1}]))
    assert read_events_file(array) == [{"a": 1}]
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    assert read_events_file(empty) == []
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        read_events_file(broken)
