"""Governance through the life cycle of a pointer, on the real API server: one pointer per agent and
environment (the webhook refuses a second; one that slipped in cannot promote), a deleted pointer
is retired in the ledger and doctor treats it as history, a repair shows in Ready, waiting for a
dependency is said once, and the decision records the window as understood."""

from __future__ import annotations

import json
import time
from typing import Any

from flightdeck_operator.engine.ledger import LedgerKind
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess
from flightdeck_operator.store import open_store

from .in_process import InProcessOperator
from .kube import (
    AGENT,
    ENV,
    apply,
    condition,
    doctor,
    get,
    ingest,
    pointer,
    policy,
    pricing_table,
    quickstart,
    release,
    request,
    run_events,
    wait_decided,
    wait_for,
)


def retirements(store: str) -> list[Any]:
    with open_store(store) as opened:
        return opened.list_ledger(kind=LedgerKind.POINTER_RETIRED)


def ready_reason(cp: ControlPlane, namespace: str, name: str) -> str | None:
    conditions = (get(cp, namespace, "releasepointer", name).get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conditions if c["type"] == "Ready"), None)


def events_of(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = cp.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


def test_the_webhook_refuses_a_second_pointer_for_an_agent_and_environment(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace)
    refused = control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(pointer("support-local-2", AGENT, ENV, "gate")),
        check=False,
    )
    assert refused.returncode != 0
    assert (
        f'ReleasePointer "support-local" already governs agent "{AGENT}" in environment "{ENV}" in this '
        "namespace, and at most one pointer may"
    ) in refused.stderr
    # Another environment of the same agent is fine.
    apply(control_plane, namespace, pointer("support-canary", AGENT, "canary", "gate"))


def test_a_duplicate_that_slipped_in_cannot_promote(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    """Without the webhook (it was off, or two creates raced) a duplicate exists: it is Stalled,
    requests on it fail with DuplicatePointer and nothing is ledgered; the first pointer governs,
    and when it is deleted the duplicate takes over."""
    quickstart(control_plane, namespace)
    time.sleep(1.1)  # creationTimestamp has whole seconds: the duplicate is strictly younger
    apply(control_plane, namespace, pointer("support-local-2", AGENT, ENV, "gate"))
    wait_for(
        lambda: ready_reason(control_plane, namespace, "support-local-2") == "DuplicatePointer",
        what="the duplicate to be marked",
    )
    duplicate = get(control_plane, namespace, "releasepointer", "support-local-2")
    assert condition(duplicate, "Ready")["status"] == "False"
    assert condition(duplicate, "Stalled")["status"] == "True"
    assert 'ReleasePointer "support-local" already governs' in condition(duplicate, "Stalled")["message"]
    assert any(
        e["reason"] == "DuplicatePointer" for e in events_of(control_plane, namespace, "support-local-2")
    )
    assert ready_reason(control_plane, namespace, "support-local") == "InSync"

    # The candidate the policy would block on the original: on the duplicate it is refused outright.
    ingest(kopf_operator.store, run_events("support-base", AGENT, ENV, 1))
    apply(control_plane, namespace, request("via-duplicate", "support-local-2", "support-cand"))
    refused = wait_decided(control_plane, namespace, "via-duplicate")
    assert refused["status"]["phase"] == "Failed"
    assert condition(refused, "Stalled")["reason"] == "DuplicatePointer"
    with open_store(kopf_operator.store) as store:
        assert store.ledger_entry_for_request(refused["metadata"]["uid"]) is None
    assert (get(control_plane, namespace, "releasepointer", "support-local-2").get("status") or {}).get(
        "releaseId"
    ) is None

    # The original still governs; once it is gone, the duplicate does.
    apply(control_plane, namespace, request("via-original", "support-local", "support-base"))
    assert wait_decided(control_plane, namespace, "via-original")["status"]["phase"] == "Promoted"
    control_plane.kubectl("delete", "-n", namespace, "releasepointer", "support-local")
    wait_for(
        lambda: ready_reason(control_plane, namespace, "support-local-2") == "InSync",
        what="the former duplicate to govern",
    )


def test_decommissioning_a_pointer_is_ledgered_and_doctor_stays_green(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace)
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")

    control_plane.kubectl("delete", "-n", namespace, "releasepointer", "support-local")
    (retired,) = wait_for(lambda: retirements(operator.store), what="the retirement in the ledger")
    assert (retired.pointer, retired.actor, retired.release_id) == ("support-local", "admin", "support-base")
    assert retired.details["found_by_sweep"] is False

    checked = doctor(control_plane, operator.store, namespace)
    assert checked.returncode == 0, checked.stderr
    assert (
        f"ok    retired:{namespace}/support-local: retired at seq {retired.seq} on "
        f"{retired.created_at:%Y-%m-%d %H:%M:%S}Z by admin (release support-base was live)"
    ) in checked.stdout
    assert "ledger_pointer" not in checked.stdout + checked.stderr

    # Re-created with the same name: a fresh history, and the status says so.
    apply(control_plane, namespace, pointer("support-local", AGENT, ENV, "gate"))
    fresh = wait_for(
        lambda: (
            (get(control_plane, namespace, "releasepointer", "support-local").get("status") or {}).get(
                "predecessor"
            )
            and get(control_plane, namespace, "releasepointer", "support-local")
        ),
        what="the new pointer's status",
    )
    status = fresh["status"]
    assert status["predecessor"]["retiredLedgerSeq"] == retired.seq
    assert status["predecessor"]["releaseId"] == "support-base"
    assert status.get("releaseId") is None
    assert "history starts after the retirement" in condition(fresh, "Ready")["message"]
    apply(control_plane, namespace, request("again", "support-local", "support-cand"))
    again = wait_decided(control_plane, namespace, "again")
    assert again["status"]["decision"]["policy"]["reasons"] == [
        "first promotion: no promoted baseline for agent/environment"
    ]
    assert doctor(control_plane, operator.store, namespace).returncode == 0


def test_a_pointer_deleted_while_the_operator_is_down_is_retired_by_the_sweep(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace)
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")
    operator.stop()
    control_plane.kubectl("delete", "-n", namespace, "releasepointer", "support-local")

    pending = doctor(control_plane, operator.store, namespace)
    assert pending.returncode == 0, pending.stderr
    assert f"warn  ledger_pointer:{namespace}/support-local:" in pending.stderr
    assert pending.stdout.strip().endswith("all passed (1 warning(s)).")

    operator.start()
    (retired,) = wait_for(lambda: retirements(operator.store), timeout=30, what="the sweep's retirement")
    assert (retired.actor, retired.details["found_by_sweep"]) == ("unknown", True)
    healthy = doctor(control_plane, operator.store, namespace)
    assert healthy.returncode == 0
    assert "warn" not in healthy.stderr
    assert f"ok    retired:{namespace}/support-local:" in healthy.stdout


def test_a_repair_shows_in_ready_until_the_next_change(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    quickstart(control_plane, namespace, max_cost=10.0)
    ingest(kopf_operator.store, run_events("support-base", AGENT, ENV, 1))
    ingest(kopf_operator.store, run_events("support-cand", AGENT, ENV, 1))
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")
    control_plane.kubectl(
        "patch",
        "-n",
        namespace,
        "releasepointer/support-local",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"releaseId": "support-cand"}}),
    )
    wait_for(
        lambda: ready_reason(control_plane, namespace, "support-local") == "PointerRepaired",
        what="Ready to say PointerRepaired",
    )
    repaired = get(control_plane, namespace, "releasepointer", "support-local")
    assert repaired["status"]["releaseId"] == "support-base"
    assert condition(repaired, "Ready")["status"] == "True"
    assert condition(repaired, "Ready")["message"].startswith("Repaired from the audit ledger at ")

    apply(control_plane, namespace, request("second", "support-local", "support-cand"))
    assert wait_decided(control_plane, namespace, "second")["status"]["phase"] == "Promoted"
    moved = get(control_plane, namespace, "releasepointer", "support-local")
    assert condition(moved, "Ready")["reason"] == "InSync"
    assert condition(moved, "Ready")["message"].startswith("Release support-cand is live")


def test_waiting_for_a_pricing_table_is_said_once_and_resolved_when_it_arrives(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    apply(control_plane, namespace, release("lonely", AGENT, "openai", "later-pricing", "gpt-4.1-mini"))
    wait_for(
        lambda: (
            condition(get(control_plane, namespace, "agentrelease", "lonely"), "Ready")["reason"]
            == "PricingTableMissing"
        ),
        what="the release to wait for its table",
    )
    # Longer than kopf's old retry interval (15 s): a retry loop would have logged again by now.
    apply(control_plane, namespace, policy("short-lived"))
    control_plane.kubectl("delete", "-n", namespace, "promotionpolicy", "short-lived")
    time.sleep(17)
    log = operator.log_tail(2000)
    assert log.count("waits for its PricingTable") == 1, log
    assert " ERROR " not in log, log
    assert "Traceback" not in log, log
    warnings = [
        e for e in events_of(control_plane, namespace, "lonely") if e["reason"] == "PricingTableMissing"
    ]
    assert len(warnings) == 1
    assert warnings[0]["type"] == "Warning"

    apply(
        control_plane,
        namespace,
        pricing_table("later-pricing", "openai", "later-pricing", "gpt-4.1-mini", (1.0, 2.0)),
    )
    resolved = wait_for(
        lambda: (
            condition(get(control_plane, namespace, "agentrelease", "lonely"), "Ready")["reason"]
            == "PricingResolved"
        ),
        timeout=10,  # at once, not at the next poll
        what="the release to resolve",
    )
    assert resolved


def test_a_second_pricing_table_for_the_same_version_is_ignored_and_said_so(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    apply(control_plane, namespace, pricing_table("prices", "openai", "2026-01", "gpt-4.1-mini", (1.0, 2.0)))
    time.sleep(1.1)
    apply(
        control_plane,
        namespace,
        pricing_table("prices-again", "openai", "2026-01", "gpt-4.1-mini", (9.0, 9.0)),
    )
    wait_for(
        lambda: (
            (get(control_plane, namespace, "pricingtable", "prices-again").get("status") or {}).get(
                "conditions"
            )
            and condition(get(control_plane, namespace, "pricingtable", "prices-again"), "Ready")["reason"]
            == "DuplicatePricingTable"
        ),
        what="the duplicate table to be marked",
    )
    first = get(control_plane, namespace, "pricingtable", "prices")
    assert condition(first, "Ready")["reason"] == "Recorded"
    control_plane.kubectl("delete", "-n", namespace, "pricingtable", "prices")
    wait_for(
        lambda: (
            condition(get(control_plane, namespace, "pricingtable", "prices-again"), "Ready")["reason"]
            == "Recorded"
        ),
        what="the remaining table to price",
    )


def test_the_decision_records_the_window_as_understood(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    quickstart(control_plane, namespace, max_cost=10.0)
    ingest(kopf_operator.store, run_events("support-base", AGENT, ENV, 1))
    ingest(kopf_operator.store, run_events("support-cand", AGENT, ENV, 1))
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")
    apply(control_plane, namespace, request("spaced", "support-local", "support-cand", window="  7D "))
    decided = wait_decided(control_plane, namespace, "spaced")
    assert decided["spec"]["window"] == "  7D "
    assert decided["status"]["decision"]["evidence"]["window"] == "7d"
