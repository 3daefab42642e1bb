"""The reference's approval workflow over real HTTP (scenarios 18-21 of flightdeck-behaviour,
adapted): promote-request, promote-confirm and the request list, with a real operator deciding on
a real API server, real users (TokenReview) and the admission webhook stamping who asked and who
approved. Also Retry-After on a closed promotion window and concurrencyPolicy Forbid's 409.

Each test starts from the quickstart with evidence for both releases and support-base live; the
operator re-examines waiting requests every second here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any, Final

import httpx

from flightdeck_operator.actions.approval_workflow.common import APPROVAL_REASON_REQUIRED, NOT_PENDING
from flightdeck_operator.actions.promotions import APPROVAL_NOT_REQUIRED, APPROVAL_REQUIRED
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess
from flightdeck_operator.sidecar.routes.common import APPROVAL_NEEDS_IDENTITY
from flightdeck_operator.store import open_store

from .conftest import StartSidecar
from .kube import AGENT, COST_BREACH, ENV, apply, get, ingest, policy, quickstart, wait_for
from .sidecar_client import (
    OUTCOME_KEYS,
    POLICY_KEYS,
    action_body,
    as_user,
    quickstart_events,
    role,
    role_binding,
)
from .test_clitools import cli

# The reference's promote-request answer and list item keys, in its order (routes/actions.py, read.py).
REQUEST_KEYS: Final = [
    "request_id",
    "status",
    "release_id",
    "agent_id",
    "environment",
    "window",
    "baseline_release_id",
    "policy",
    "created_at",
]
ITEM_KEYS: Final = [
    "request_id",
    "status",
    "release_id",
    "agent_id",
    "environment",
    "window",
    "reason",
    "actor",
    "baseline_release_id",
    "policy",
    "created_at",
    "resolved_at",
    "completed_action_id",
]
GATE: Final = {
    "maxCostPerRunUsd": 10.0,
    "maxLatencyMs": 3000,
    "maxErrorRate": 0.05,
    "minCandidateRuns": 1,
    "minBaselineRuns": 1,
    "minLowRuns": 1,
    "requireHighDiffConfidence": False,
}
NO_CACHE: Final = ("--auth-cache-seconds", "0")
READ_KINDS: Final = ("agentreleases", "releasepointers", "promotionpolicies")


def base_promoted(cp: ControlPlane, sidecar: SidecarProcess, namespace: str, **gate: Any) -> None:
    """Quickstart with a passing policy, evidence for both releases, support-base promoted directly;
    then the policy gets ``gate`` (e.g. ``approval``)."""
    quickstart(cp, namespace, max_cost=10.0)
    with as_user(cp, sidecar, "admin") as admin:
        assert admin.post("/v1/events", json={"events": quickstart_events()}).json() == {"inserted": 2}
        first = admin.post("/v1/promote", json=action_body("support-base"))
        assert first.status_code == 200, first.text
    if gate:
        set_policy(cp, namespace, **gate)


def set_policy(cp: ControlPlane, namespace: str, **gate: Any) -> None:
    apply(cp, namespace, policy("gate", **{**GATE, **gate}))


def grant(cp: ControlPlane, namespace: str, *users: str, approve: bool = True) -> None:
    """``users`` may request promotions and read; with ``approve``, also confirm them."""
    rules = [("create", "promotionrequests"), ("list", "promotionrequests")]
    if approve:
        rules.append(("create", "promotionapprovals"))
    name = "workflow-approve" if approve else "workflow-request"
    documents: list[dict[str, Any]] = [role(name, *rules)]
    documents += [role_binding(f"{user}-{name}", name, user=user) for user in users]
    apply(cp, namespace, *documents)


def request_names(cp: ControlPlane, namespace: str) -> list[str]:
    listed = json.loads(cp.kubectl("get", "-n", namespace, "promotionrequests", "-o", "json").stdout)
    return sorted(item["metadata"]["name"] for item in listed["items"])


def ledger(operator: OperatorProcess, **filters: Any) -> list[LedgerEntry]:
    with open_store(operator.store) as store:
        return list(reversed(store.list_ledger(limit=1000, **filters)))


def request_status(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return get(cp, namespace, "promotionrequest", name).get("status") or {}


def freeze_started_a_minute_ago() -> dict[str, Any]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    return {
        "name": "freeze",
        "kind": "Deny",
        "schedule": f"{start.minute} {start.hour} * * *",
        "duration": "30m",
    }


# -- scenario 18 --------------------------------------------------------------------------------------


def test_direct_promote_is_gated_and_requests_need_an_approval_policy(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    base_promoted(control_plane, sidecar, namespace)
    with as_user(control_plane, sidecar, "admin") as api:
        assert api.get("/v1/workspace").json() == {
            "api_version": "v1",
            "kind": "WorkspacePublic",
            "promotion_requires_approval": False,
            "pricing_catalog_configured": False,
            "server_version": api.get("/v1/workspace").json()["server_version"],
        }
        # No approval in the policy: the request workflow is refused with the reference's message.
        refused = api.post("/v1/promote/request", json=action_body("support-cand"))
        assert (refused.status_code, refused.json()) == (400, {"detail": APPROVAL_NOT_REQUIRED})

        set_policy(control_plane, namespace, approval={"minApprovals": 1})
        assert api.get("/v1/workspace").json()["promotion_requires_approval"] is True
        before = request_names(control_plane, namespace)
        actions = api.get("/v1/actions").json()
        gated = api.post("/v1/promote", json=action_body("support-cand"))
        assert (gated.status_code, gated.json()) == (400, {"detail": APPROVAL_REQUIRED})
        # Refused before anything was created or ledgered.
        assert request_names(control_plane, namespace) == before
        assert api.get("/v1/actions").json() == actions
        # Rollbacks are never gated.
        back = api.post("/v1/rollback", json=action_body("support-base", reason="stay"))
        assert back.status_code == 200, back.text
        # A blank reason has the request workflow's own message (after the flag, as the reference).
        blank = api.post("/v1/promote/request", json=action_body("support-cand", reason="   "))
        assert (blank.status_code, blank.json()) == (
            400,
            {"detail": "Reason is required for promotion requests."},
        )


# -- scenario 19 --------------------------------------------------------------------------------------


def test_a_blocked_request_records_nothing(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    base_promoted(control_plane, sidecar, namespace, maxCostPerRunUsd=4.0, approval={"minApprovals": 1})
    with as_user(control_plane, sidecar, "admin") as api:
        before = request_names(control_plane, namespace)
        entries = ledger(operator)
        blocked = api.post("/v1/promote/request", json=action_body("support-cand", reason="cand"))
        assert blocked.status_code == 409, blocked.text
        assert blocked.json() == {
            "detail": {
                "message": f"Policy does not allow this promotion; request not recorded. Reasons: {COST_BREACH}"
            }
        }
        assert "retry-after" not in blocked.headers  # blocked by the cost, not by a window
        # The dry run is gone and nothing was ledgered (dry runs never are).
        assert request_names(control_plane, namespace) == before
        assert ledger(operator) == entries
        assert api.get("/v1/promotion-requests").json() == {"requests": []}


# -- scenario 20 --------------------------------------------------------------------------------------


def test_request_then_confirm_by_another_user_promotes(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, start_sidecar: StartSidecar
) -> None:
    sidecar = start_sidecar(*NO_CACHE, store=operator.store)
    base_promoted(control_plane, sidecar, namespace, approval={"minApprovals": 1})
    grant(control_plane, namespace, "alice")
    grant(control_plane, namespace, "bob", approve=False)
    with as_user(control_plane, sidecar, "alice") as alice, as_user(control_plane, sidecar, "bob") as bob:
        asked = alice.post("/v1/promote/request", json=action_body("support-cand", reason="cand", actor="ci"))
        assert asked.status_code == 200, asked.text
        pending = asked.json()
        assert list(pending) == REQUEST_KEYS
        assert re.fullmatch(r"prq-[0-9a-f]{12}", pending["request_id"])
        assert pending["status"] == "pending"
        assert (pending["release_id"], pending["agent_id"], pending["environment"]) == (
            "support-cand",
            AGENT,
            ENV,
        )
        assert (pending["window"], pending["baseline_release_id"]) == ("7d", "support-base")
        assert list(pending["policy"]) == POLICY_KEYS
        assert pending["policy"]["passed"] is True
        request_id = pending["request_id"]
        obj = get(control_plane, namespace, "promotionrequest", request_id)
        assert obj["status"]["phase"] == "AwaitingApproval"
        # Created by the sidecar (a trusted delegate) on behalf of the authenticated caller.
        assert obj["spec"]["requestedBy"]["username"] == "alice"
        assert obj["spec"]["requestedBy"]["via"] == "admin"
        assert "flightdeck:developers" in obj["spec"]["requestedBy"]["groups"]
        # Only the dry run went before it, and it is gone.
        assert [n for n in request_names(control_plane, namespace) if n.startswith("prq-")] == [request_id]

        listed = alice.get("/v1/promotion-requests").json()["requests"]
        assert [(i["request_id"], i["status"]) for i in listed] == [(request_id, "pending")]
        assert list(listed[0]) == ITEM_KEYS
        assert (listed[0]["reason"], listed[0]["actor"]) == ("cand", "ci")
        assert listed[0]["resolved_at"] is None
        assert listed[0]["policy"] == pending["policy"]

        # The requester cannot approve her own request.
        own = alice.post("/v1/promote/confirm", json={"request_id": request_id, "approval_reason": "mine"})
        assert (own.status_code, own.json()) == (
            403,
            {"detail": "alice requested this promotion and cannot approve it; another approver must"},
        )
        # Confirming needs create on promotionapprovals.
        denied = bob.post("/v1/promote/confirm", json={"request_id": request_id, "approval_reason": "ok"})
        assert denied.status_code == 403
        assert 'cannot create resource "promotionapprovals"' in denied.json()["detail"]
        grant(control_plane, namespace, "bob")
        blank = bob.post("/v1/promote/confirm", json={"request_id": request_id, "approval_reason": "  "})
        assert (blank.status_code, blank.json()) == (400, {"detail": APPROVAL_REASON_REQUIRED})
        unknown = bob.post("/v1/promote/confirm", json={"request_id": "prq-nope", "approval_reason": "ok"})
        assert (unknown.status_code, unknown.json()) == (400, {"detail": NOT_PENDING})

        confirmed = bob.post(
            "/v1/promote/confirm",
            json={"request_id": request_id, "approval_reason": "ok", "actor": "bob-cli"},
        )
        assert confirmed.status_code == 200, confirmed.text
        outcome = confirmed.json()
        assert list(outcome) == OUTCOME_KEYS
        assert outcome["action"] == "promote"
        assert (outcome["release_id"], outcome["baseline_release_id"]) == ("support-cand", "support-base")
        assert outcome["promoted_pointer_changed"] is True
        assert confirmed.headers["x-flightdeck-request"] == f"{namespace}/{request_id}"

        # Ledgered once, with the reference's reason; the approval is on record as bob's.
        [newest, *_] = alice.get("/v1/actions").json()["actions"]
        assert newest["action_id"] == outcome["action_id"]
        assert newest["reason"] == "cand | approval: ok"
        [approval_entry] = ledger(operator, kind=LedgerKind.APPROVAL)
        assert approval_entry.actor == "bob"
        assert (approval_entry.details or {})["outcome"] == "Accepted"
        approval_name = str((approval_entry.details or {})["approval"])
        assert re.fullmatch(r"papr-[0-9a-f]{12}", approval_name)
        stored = get(control_plane, namespace, "promotionapproval", approval_name)
        assert stored["spec"]["approver"]["username"] == "bob"
        assert stored["spec"]["approver"]["via"] == "admin"
        assert stored["metadata"]["annotations"]["flightdeck.dev/actor"] == "bob-cli"

        [item] = alice.get("/v1/promotion-requests", params={"status": "completed"}).json()["requests"]
        assert item["request_id"] == request_id
        assert item["completed_action_id"] == outcome["action_id"]
        assert item["resolved_at"] is not None
        assert alice.get("/v1/promotion-requests", params={"status": "pending"}).json() == {"requests": []}
        assert alice.get("/v1/promotion-requests", params={"status": "nope"}).json() == {"requests": []}

        again = bob.post("/v1/promote/confirm", json={"request_id": request_id, "approval_reason": "ok"})
        assert (again.status_code, again.json()) == (400, {"detail": NOT_PENDING})


# -- scenario 21 --------------------------------------------------------------------------------------


def test_confirm_re_evaluates_and_a_blocked_confirm_leaves_the_request_pending(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    base_promoted(control_plane, sidecar, namespace, approval={"minApprovals": 1})
    grant(control_plane, namespace, "alice", "bob")
    with as_user(control_plane, sidecar, "alice") as alice, as_user(control_plane, sidecar, "bob") as bob:
        asked = alice.post("/v1/promote/request", json=action_body("support-cand", reason="cand"))
        assert asked.status_code == 200, asked.text
        request_id = asked.json()["request_id"]

        # The policy tightens; the operator re-evaluates the waiting request.
        set_policy(control_plane, namespace, maxCostPerRunUsd=4.0, approval={"minApprovals": 1})
        wait_for(
            lambda: request_status(control_plane, namespace, request_id)["approval"].get("passed") is False,
            what="the request to show that the policy blocks it now",
        )
        blocked = bob.post("/v1/promote/confirm", json={"request_id": request_id, "approval_reason": "ok"})
        assert blocked.status_code == 409, blocked.text
        detail = blocked.json()["detail"]
        assert list(detail) == ["message", "outcome"]
        assert detail["message"] == "Promotion blocked by policy."
        outcome = detail["outcome"]
        assert list(outcome) == OUTCOME_KEYS
        assert list(outcome["policy"]) == POLICY_KEYS
        assert (outcome["release_id"], outcome["baseline_release_id"]) == ("support-cand", "support-base")
        assert outcome["promoted_pointer_changed"] is False
        assert outcome["policy"]["passed"] is False
        assert outcome["policy"]["reasons"] == [COST_BREACH]
        assert re.fullmatch(r"act_[0-9a-f]{12}", outcome["action_id"])
        # The blocked confirm is on record (an approval entry); the request stays pending.
        [entry] = ledger(operator, kind=LedgerKind.APPROVAL)
        assert (entry.details or {})["outcome"] == "Blocked"
        assert entry.reason == "ok"
        assert entry.policy_result is not None
        assert list(entry.policy_result.reasons) == [COST_BREACH]
        assert request_status(control_plane, namespace, request_id)["phase"] == "AwaitingApproval"
        [item] = alice.get("/v1/promotion-requests").json()["requests"]
        assert (item["request_id"], item["status"]) == (request_id, "pending")

        # Once the policy allows it again, the same request can be confirmed.
        set_policy(control_plane, namespace, approval={"minApprovals": 1})
        wait_for(
            lambda: request_status(control_plane, namespace, request_id)["approval"].get("passed") is True,
            what="the request to pass again",
        )
        confirmed = bob.post(
            "/v1/promote/confirm", json={"request_id": request_id, "approval_reason": "now ok"}
        )
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["promoted_pointer_changed"] is True
        assert alice.get("/v1/actions").json()["actions"][0]["reason"] == "cand | approval: now ok"


# -- beyond the reference -----------------------------------------------------------------------------


def test_approver_lists_and_quorums(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    """Only the policy's approvers count (403 for others); with minApprovals 2 the first approval
    answers 202 and the second promotes."""
    base_promoted(
        control_plane, sidecar, namespace, approval={"minApprovals": 1, "approvers": {"users": ["bob"]}}
    )
    grant(control_plane, namespace, "alice", "bob")
    with (
        as_user(control_plane, sidecar, "alice") as alice,
        as_user(control_plane, sidecar, "bob") as bob,
        as_user(control_plane, sidecar, "admin") as admin,
    ):
        request_id = alice.post("/v1/promote/request", json=action_body("support-cand")).json()["request_id"]
        outsider = admin.post(
            "/v1/promote/confirm", json={"request_id": request_id, "approval_reason": "me too"}
        )
        assert (outsider.status_code, outsider.json()) == (
            403,
            {"detail": "admin is not among the policy's approvers (users or groups)"},
        )

        set_policy(
            control_plane, namespace, approval={"minApprovals": 2, "approvers": {"users": ["bob", "admin"]}}
        )
        wait_for(
            lambda: request_status(control_plane, namespace, request_id)["approval"]["required"] == 2,
            what="the request to need two approvals",
        )
        first = bob.post("/v1/promote/confirm", json={"request_id": request_id, "approval_reason": "one"})
        assert first.status_code == 202, first.text
        recorded = first.json()
        assert (recorded["request_id"], recorded["status"]) == (request_id, "pending")
        assert (recorded["approved_by"], recorded["required"]) == (["bob"], 2)
        second = admin.post("/v1/promote/confirm", json={"request_id": request_id, "approval_reason": "two"})
        assert second.status_code == 200, second.text
        assert second.json()["promoted_pointer_changed"] is True
        newest = admin.get("/v1/actions").json()["actions"][0]
        assert newest["reason"] == "ship it | approval: one | approval: two"


def test_a_closed_window_answers_409_with_retry_after(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    base_promoted(control_plane, sidecar, namespace, promotionWindows=[freeze_started_a_minute_ago()])
    with as_user(control_plane, sidecar, "admin") as api:
        blocked = api.post("/v1/promote", json=action_body("support-cand"))
        assert blocked.status_code == 409, blocked.text
        reasons = blocked.json()["detail"]["outcome"]["policy"]["reasons"]
        assert reasons[0].startswith("Promotion closed by deny window 'freeze' until ")
        # About 29 minutes until the freeze ends.
        assert 27 * 60 < int(blocked.headers["retry-after"]) <= 29 * 60 + 1

        # The request workflow: the dry run is blocked by the window, nothing is recorded.
        set_policy(
            control_plane,
            namespace,
            promotionWindows=[freeze_started_a_minute_ago()],
            approval={"minApprovals": 1},
        )
        refused = api.post("/v1/promote/request", json=action_body("support-cand"))
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"]["message"].startswith(
            "Policy does not allow this promotion; request not recorded. Reasons: Promotion closed by deny window"
        )
        assert 27 * 60 < int(refused.headers["retry-after"]) <= 29 * 60 + 1


def test_forbid_answers_409_while_another_request_awaits_approval(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    base_promoted(control_plane, sidecar, namespace, approval={"minApprovals": 1}, concurrencyPolicy="Forbid")
    with as_user(control_plane, sidecar, "admin") as api:
        first = api.post("/v1/promote/request", json=action_body("support-cand"))
        assert first.status_code == 200, first.text
        # Requests are ordered by creationTimestamp (whole seconds), then name: within one second
        # the operator may take the newer one for the older.
        time.sleep(1.1)
        second = api.post("/v1/promote/request", json=action_body("support-cand"))
        assert second.status_code == 409, second.text
        message = second.json()["detail"]
        assert isinstance(message, str)
        assert first.json()["request_id"] in message
        assert "concurrencyPolicy Forbid" in message
        # The refused request never awaited approval, so only the first is listed.
        listed = {i["request_id"]: i["status"] for i in api.get("/v1/promotion-requests").json()["requests"]}
        assert listed == {first.json()["request_id"]: "pending"}


def test_confirm_needs_a_verified_identity(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret")
    sidecar = start_sidecar("--auth", "token", "--token-file", str(token_file))
    with httpx.Client(base_url=sidecar.url, headers={"Authorization": "Bearer s3cret"}) as api:
        refused = api.post("/v1/promote/confirm", json={"request_id": "prq-0", "approval_reason": "ok"})
    assert (refused.status_code, refused.json()) == (403, {"detail": APPROVAL_NEEDS_IDENTITY})


# -- the same workflow from the command line ----------------------------------------------------------


def test_cli_promote_request_and_promote_confirm(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    """`promote-request` / `promote-confirm` run the HTTP routes' code with the user's own kubeconfig:
    the webhook stamps who asked and who approved."""
    quickstart(control_plane, namespace, max_cost=10.0)
    ingest(operator.store, quickstart_events())
    promoted = cli(
        control_plane, namespace, "promote", "support-base", "--env", ENV, "--window", "7d", "--reason", "r"
    )
    assert promoted.exit_code == 0, promoted.output
    set_policy(control_plane, namespace, approval={"minApprovals": 1})
    verbs = ("create", "get", "list", "watch", "delete")
    apply(
        control_plane,
        namespace,
        role(
            "cli-workflow",
            *[(verb, "promotionrequests") for verb in verbs],
            *[(verb, "promotionapprovals") for verb in verbs[:4]],
            # What the checks before creating read: the release, the pointer, its policy.
            *[(verb, kind) for verb in ("get", "list") for kind in READ_KINDS],
        ),
        role_binding("alice-cli", "cli-workflow", user="alice"),
        role_binding("bob-cli", "cli-workflow", user="bob"),
    )
    args = ("promote-request", "support-cand", "--env", ENV, "--window", "7d", "--reason", "cand")
    asked = cli(control_plane, namespace, *args, user="alice")
    assert asked.exit_code == 0, asked.output
    first, *policy_lines = asked.stdout.splitlines()
    request_id = first.removeprefix("request_id=")
    assert re.fullmatch(r"prq-[0-9a-f]{12}", request_id)
    assert json.loads("\n".join(policy_lines))["policy"]["passed"] is True
    assert (
        get(control_plane, namespace, "promotionrequest", request_id)["spec"]["requestedBy"]["username"]
        == "alice"
    )
    assert [n for n in request_names(control_plane, namespace) if n.startswith("prq-")] == [request_id]

    confirm = ("promote-confirm", request_id, "--approval-reason", "ok")
    own = cli(control_plane, namespace, *confirm, user="alice")
    assert own.exit_code == 1
    assert (
        own.stderr == "Error: alice requested this promotion and cannot approve it; another approver must\n"
    )
    done = cli(control_plane, namespace, *confirm, "--store", operator.store, user="bob")
    assert done.exit_code == 0, done.output
    assert done.stdout == "Promoted support-cand for agent-support/local\nPolicy: PASS\n"
    again = cli(control_plane, namespace, *confirm, user="bob")
    assert (again.exit_code, again.stderr) == (1, f"Error: {NOT_PENDING}\n")
    [entry] = ledger(operator, kind=LedgerKind.APPROVAL)
    assert entry.actor == "bob"
