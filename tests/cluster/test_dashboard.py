"""The web dashboard in a real headless Chromium, against the sidecar and the operator on the real
API server: every page with real data, the Compare charts, an approval made in the browser, a
caller without RBAC, and text that looks like markup."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import httpx
from playwright.sync_api import Browser, Page

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess

from .browser import browser, open_tab, screenshot  # noqa: F401  (browser: a fixture)
from .kube import (
    AGENT,
    ENV,
    apply,
    get,
    ingest,
    pointer,
    policy,
    quickstart,
    request,
    run_events,
    wait_decided,
    wait_for,
)
from .sidecar_client import role, role_binding

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def grant_reader(cp: ControlPlane, namespace: str, user: str) -> None:
    """Read-only: what the sidecar asks of a reader (list promotionrequests), nothing more."""
    apply(
        cp,
        namespace,
        role("reader", ("list", "promotionrequests")),
        role_binding(f"{user}-reads", "reader", user=user),
    )


def grant_promoter(cp: ControlPlane, namespace: str, user: str) -> None:
    rules = (("list", "promotionrequests"), ("create", "promotionrequests"), ("create", "promotionapprovals"))
    apply(cp, namespace, role("promoter", *rules), role_binding(f"{user}-promotes", "promoter", user=user))


def can(cp: ControlPlane, namespace: str, user: str, verb: str, resource: str) -> bool:
    answer = cp.kubectl(
        "auth", "can-i", verb, f"{resource}.flightdeck.dev", "-n", namespace, user=user, check=False
    )
    return answer.stdout.strip() == "yes"


def evidence_over_hours(store: str) -> None:
    """Both releases' runs spread over the last six hours, so the charts have points to draw."""
    for hours_ago in range(1, 7):
        age = dt.timedelta(hours=hours_ago, minutes=10)
        ingest(store, run_events("support-base", AGENT, ENV, 5, latency_ms=1000, age=age))
        ingest(store, run_events("support-cand", AGENT, ENV, 5, latency_ms=1200 + 100 * hours_ago, age=age))


def visit(page: Page, url: str, ready: str) -> None:
    page.goto(url)
    page.wait_for_selector(ready, timeout=30_000)


def test_every_page_shows_real_data_and_the_charts_draw_both_releases(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    sidecar: SidecarProcess,
    browser: Browser,  # noqa: F811
) -> None:
    quickstart(control_plane, namespace)
    evidence_over_hours(operator.store)
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")
    apply(control_plane, namespace, request("candidate", "support-local", "support-cand"))
    assert wait_decided(control_plane, namespace, "candidate")["status"]["phase"] == "Blocked"
    grant_reader(control_plane, namespace, "alice")
    wait_for(lambda: can(control_plane, namespace, "alice", "list", "promotionrequests"), what="RBAC")
    tab = open_tab(browser, token=control_plane.identity("alice").token)
    page = tab.page
    ui = f"{sidecar.url}/ui"

    visit(page, f"{ui}/", "[data-testid=pointers] tr[data-pointer]")
    row = page.locator("tr[data-pointer=support-local]")
    assert "support-base" in row.inner_text()
    assert "InSync" in row.inner_text()
    assert "chain verified" in page.locator("[data-testid=ledger-health]").inner_text()
    screenshot(page, "overview")

    query = "baseline=support-base&candidate=support-cand&window=7d&environment=local"
    visit(page, f"{ui}/compare?{query}", ".chart canvas")
    assert "blocked" in page.locator("[data-testid=verdict]").inner_text()
    assert (
        "candidate cost_per_run_usd 5.000000 exceeds max 4.000000"
        in page.locator("[data-testid=reasons]").inner_text()
    )
    assert page.locator("[data-testid=samples]").inner_text() == "30 / 30"
    charts = page.locator("[data-testid=charts]")
    page.wait_for_function(
        "document.querySelector('[data-testid=charts]').dataset.candidatePoints !== undefined"
    )
    assert charts.get_attribute("data-baseline-points") == "6"
    assert charts.get_attribute("data-candidate-points") == "6"
    assert page.locator(".chart canvas").count() == 3
    screenshot(page, "compare")

    visit(page, f"{ui}/runs?release=support-cand&environment=local", "[data-testid=runs-table] td")
    assert page.locator("[data-testid=runs-total]").inner_text().startswith("30 run(s) match")
    page.locator("[data-testid=runs-table] tr.clickable").first.click()
    page.wait_for_selector("[data-testid=run-detail]")
    assert '"release_id": "support-cand"' in page.locator("[data-testid=run-detail]").inner_text()
    screenshot(page, "runs")

    visit(page, f"{ui}/requests", "[data-testid=requests-table] tr[data-request]")
    blocked = page.locator("tr[data-request=candidate]").inner_text()
    assert "Blocked" in blocked
    assert "exceeds max 4.000000" in blocked
    screenshot(page, "requests")

    visit(page, f"{ui}/ledger", "[data-testid=ledger-table] tr[data-seq]")
    page.wait_for_function("document.querySelector('[data-chain-check]').dataset.checked !== undefined")
    check = page.locator("[data-chain-check]")
    assert check.get_attribute("data-broken") == "0"
    assert int(check.get_attribute("data-checked") or 0) >= 3
    assert "chain verified" in page.locator("[data-testid=chain]").inner_text()
    screenshot(page, "ledger")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    visit(page, f"{ui}/", "[data-testid=pointers] tr[data-pointer]")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, "overview-phone")
    page.select_option("#theme", "dark")
    visit(page, f"{ui}/compare?{query}", ".chart canvas")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    screenshot(page, "compare-dark")
    assert tab.errors == []


def test_an_approval_made_in_the_browser_moves_the_pointer(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    sidecar: SidecarProcess,
    browser: Browser,  # noqa: F811
) -> None:
    quickstart(control_plane, namespace)
    apply(control_plane, namespace, policy("needs-approval", approval={"minApprovals": 1}))
    apply(control_plane, namespace, pointer("support-canary", AGENT, "canary", "needs-approval"))
    for user in ("alice", "bob"):
        grant_promoter(control_plane, namespace, user)
        wait_for(
            lambda user=user: can(control_plane, namespace, user, "create", "promotionapprovals"), what="RBAC"
        )
    control_plane.kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        user="alice",
        input=json.dumps(request("canary", "support-canary", "support-base")),
    )
    wait_for(
        lambda: (
            (get(control_plane, namespace, "promotionrequest", "canary").get("status") or {}).get("phase")
            == "AwaitingApproval"
        ),
        what="the request to await approval",
    )

    tab = open_tab(browser, token=None)
    page = tab.page
    page.goto(f"{sidecar.url}/ui/requests")
    page.fill("#token", control_plane.identity("bob").token)  # typed once, kept in the tab
    page.click("#token-form button[type=submit]")
    form = page.locator("tr[data-request=canary] [data-testid=approve-form]")
    form.wait_for(timeout=30_000)
    assert "You approve decision" in page.locator("tr[data-request=canary]").inner_text()
    screenshot(page, "approval")
    form.locator("input[name=approval_reason]").fill("canary looks good")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#action-result [data-status]", timeout=60_000)
    assert page.locator("#action-result [data-status]").get_attribute("data-status") == "200"
    assert wait_decided(control_plane, namespace, "canary")["status"]["phase"] == "Promoted"
    assert (
        get(control_plane, namespace, "releasepointer", "support-canary")["status"]["releaseId"]
        == "support-base"
    )
    decision = get(control_plane, namespace, "promotionrequest", "canary")["status"]["decision"]
    assert [a["approver"] for a in decision["approvals"]] == ["bob"]
    assert tab.errors == []


def test_a_caller_without_rbac_sees_no_write_controls_and_is_refused(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    sidecar: SidecarProcess,
    browser: Browser,  # noqa: F811
) -> None:
    quickstart(control_plane, namespace)
    grant_reader(control_plane, namespace, "alice")
    wait_for(lambda: can(control_plane, namespace, "alice", "list", "promotionrequests"), what="RBAC")
    tab = open_tab(browser, token=control_plane.identity("alice").token)
    page = tab.page
    page.goto(f"{sidecar.url}/ui/requests")
    page.wait_for_selector("[data-testid=requests-table]", timeout=30_000)
    assert page.locator("[data-testid=promote-form]").count() == 0  # not rendered, not just disabled
    assert page.locator("[data-testid=approve-form]").count() == 0
    status = page.evaluate(
        """async () => (await fetch('/v1/promote', {method: 'POST', headers: {'Content-Type': 'application/json',
             ...window.flightdeck.headers()}, body: JSON.stringify({release_id: 'support-cand',
             environment: 'local', window: '7d', reason: 'sneaking in'})})).status"""
    )
    assert status == 403
    assert tab.errors == []


def test_text_that_looks_like_markup_stays_text(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    sidecar: SidecarProcess,
    browser: Browser,  # noqa: F811
) -> None:
    quickstart(control_plane, namespace)
    apply(control_plane, namespace, request("marked-up", "support-local", "support-base", reason=XSS))
    wait_decided(control_plane, namespace, "marked-up")
    grant_reader(control_plane, namespace, "alice")
    wait_for(lambda: can(control_plane, namespace, "alice", "list", "promotionrequests"), what="RBAC")
    tab = open_tab(browser, token=control_plane.identity("alice").token)
    page = tab.page
    for path, ready in (("/ui/requests", "tr[data-request=marked-up]"), ("/ui/ledger", "tr[data-seq]")):
        page.goto(f"{sidecar.url}{path}")
        page.wait_for_selector(ready, timeout=30_000)
        assert XSS in page.locator("#content").inner_text()
        assert page.evaluate("window.__xss") is None
        assert page.locator("#content script, #content img[src=x]").count() == 0
    assert tab.errors == []


def test_dashboard_responses_carry_a_strict_content_security_policy(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    page = httpx.get(f"{sidecar.url}/ui/", timeout=10)
    assert page.status_code == 200
    policy_header = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy_header
    assert "'unsafe-inline'" not in policy_header
    assert "'unsafe-eval'" not in policy_header
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text  # only <script src=...> of our own origin
    fragment = httpx.get(f"{sidecar.url}/ui/fragments/overview", timeout=10)
    assert fragment.status_code == 401  # data needs the same authentication as the API's reads
    weights: dict[str, Any] = {}
    for asset in ("app.js", "app.css", "charts.js", "vendor/htmx.min.js", "vendor/uPlot.iife.min.js"):
        answer = httpx.get(f"{sidecar.url}/ui/static/{asset}", timeout=10)
        assert answer.status_code == 200, asset
        weights[asset] = len(answer.content)
    assert sum(weights.values()) < 500_000, weights


def test_compare_shows_the_statistical_gates(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    sidecar: SidecarProcess,
    browser: Browser,  # noqa: F811
) -> None:
    from .test_gates import start_with_base_promoted
    from .test_statistical_gates import events, gated_policy

    start_with_base_promoted(control_plane, namespace, operator)
    ingest(operator.store, events("support-base", 200, 1000))
    ingest(operator.store, events("support-cand", 200, 1100))
    apply(
        control_plane,
        namespace,
        gated_policy(sequential=False, errorRate={"maxIncrease": 0.02}, costPerRun={"maxUsd": 10}),
    )
    grant_reader(control_plane, namespace, "alice")
    wait_for(lambda: can(control_plane, namespace, "alice", "list", "promotionrequests"), what="RBAC")
    tab = open_tab(browser, token=control_plane.identity("alice").token)
    page = tab.page
    query = "baseline=support-base&candidate=support-cand&window=7d&environment=local"
    visit(page, f"{sidecar.url}/ui/compare?{query}", "[data-testid=statistics] tr[data-gate]")
    block = page.locator("[data-testid=statistics]")
    assert "fixed horizon" in block.inner_text()
    gates = page.locator("[data-testid=statistics] tr[data-gate]")
    assert [gates.nth(i).get_attribute("data-gate") for i in range(gates.count())] == [
        "errorRate.maxIncrease",
        "costPerRun.maxUsd",
    ]
    assert "Pass" in gates.nth(0).inner_text()
    screenshot(page, "compare-statistics")
    assert tab.errors == []


def test_the_overview_shows_verification_and_the_pipeline(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    sidecar: SidecarProcess,
    browser: Browser,  # noqa: F811
) -> None:
    from .test_pipelines import automatic, canary_checks_after, pipeline
    from .test_verification import RECENT

    pipeline(control_plane, namespace, operator)
    apply(control_plane, namespace, request("canary-base", "canary", "support-base"))
    wait_decided(control_plane, namespace, "canary-base")
    (first,) = wait_for(lambda: automatic(control_plane, namespace), what="the promotion to production")
    wait_decided(control_plane, namespace, first["metadata"]["name"])
    apply(control_plane, namespace, request("canary-cand", "canary", "support-cand"))
    wait_decided(control_plane, namespace, "canary-cand")
    ingest(operator.store, run_events("support-cand", AGENT, "canary", 10, failures=10, age=RECENT))
    wait_for(
        lambda: any(
            c["type"] == "Degraded" and c["status"] == "True"
            for c in get(control_plane, namespace, "releasepointer", "canary")["status"]["conditions"]
        ),
        what="the canary degraded",
    )
    canary_checks_after(control_plane, namespace, "support-cand", 1)  # production's pipeline advanced too
    grant_reader(control_plane, namespace, "alice")
    wait_for(lambda: can(control_plane, namespace, "alice", "list", "promotionrequests"), what="RBAC")
    tab = open_tab(browser, token=control_plane.identity("alice").token, width=1600)
    page = tab.page
    visit(page, f"{sidecar.url}/ui/", "[data-testid=pointers] tr[data-pointer=canary]")
    canary = page.locator("tr[data-pointer=canary] [data-testid=verification]").inner_text()
    assert "failed" in canary
    assert re.search(r"\d+ failing checks in a row \(threshold 2\)", canary), canary
    assert "live error_rate 1.0000 exceeds max 0.0500" in canary
    assert "alert only" in canary
    production = page.locator("tr[data-pointer=production] [data-testid=pipeline]").inner_text()
    assert "follows canary" in production
    assert "Waiting" in production
    assert "support-cand" in production
    screenshot(page, "overview-verification-pipeline")
    assert tab.errors == []
