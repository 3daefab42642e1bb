"""Every method of FlightDeck's own SDK (``flightdeck-ai`` from PyPI), called against the sidecar.

Run by ``tests/cluster/test_reference_sdk.py`` with the Python of a throwaway virtualenv that holds
the SDK (not this project): ``python calls.py <phase> <base_url> <tokens.json> <out.json>``. Each
call's answer, or the HTTP status and detail of its error, is written to ``out.json``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import uuid
from typing import Any

import httpx
from flightdeck.models import RunEvent
from flightdeck.sdk import AsyncFlightdeckClient, FlightdeckClient

AGENT, ENV = "agent-support", "local"


def events(release_id: str, count: int, latency_ms: int) -> list[RunEvent]:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    return [
        RunEvent.model_validate(
            {
                "timestamp": (at - dt.timedelta(seconds=i)).isoformat(),
                "agent_id": AGENT,
                "release_id": release_id,
                "run_id": f"sdk-{uuid.uuid4().hex}",
                "tenant_id": "t1",
                "task_id": "support",
                "environment": ENV,
                "request": {"trace_id": f"trace-{i % 2}"},
                "metrics": {"latency_ms": latency_ms, "success": True},
                "usage": {
                    "model": {
                        "provider": "openai",
                        "model": "gpt-4.1-mini",
                        "input_tokens": 1000,
                        "output_tokens": 500,
                    }
                },
            }
        )
        for i in range(count)
    ]


def call(results: dict[str, Any], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        value = fn(*args, **kwargs)
    except httpx.HTTPStatusError as error:
        results[name] = {"status": error.response.status_code, "detail": error.response.json()["detail"]}
        return None
    except ValueError as error:
        results[name] = {"error": str(error)}
        return None
    results[name] = {"bytes": value[0].decode(), "headers": value[1]} if isinstance(value, tuple) else value
    return value


async def async_direct(base_url: str, token: str) -> dict[str, Any]:
    """The async client's methods (the same routes): reads, forensics, ingest, diff, promote, rollback."""
    client = AsyncFlightdeckClient(base_url, api_token=token, timeout_s=60)
    promote = {"environment": ENV, "window": "7d", "reason": "sdk async"}
    try:
        body, headers = await client.fetch_runs_export_ndjson(release_id="support-cand", window="1h", limit=3)
        return {
            "health": await client.health(),
            "get_workspace": await client.get_workspace(),
            "list_releases": await client.list_releases(),
            "list_promoted": await client.list_promoted(),
            "list_runs": await client.list_runs(release_id="support-cand", window="1h", trace_id="trace-1"),
            "fetch_runs_export_ndjson": {"bytes": body.decode(), "headers": headers},
            "ingest_run_events": await client.ingest_run_events(events("support-base", 1, 1000)),
            "ingest_run_events_batch": await client.ingest_run_events_batch(
                events("support-base", 3, 1000), chunk_size=2
            ),
            "post_diff": await client.post_diff(
                baseline_release_id="support-base", candidate_release_id="support-cand", window="7d"
            ),
            "post_promote": await client.post_promote(release_id="support-base", **promote),
            "post_rollback": await client.post_rollback(release_id="support-base", **promote),
            "list_actions": await client.list_actions(agent_id=AGENT, environment=ENV),
            "list_promotion_requests": await client.list_promotion_requests(limit=5),
        }
    finally:
        await client.aclose()


async def async_approval(base_url: str, tokens: dict[str, str]) -> dict[str, Any]:
    """The async client's approval workflow: alice asks for support-base, bob confirms."""
    alice = AsyncFlightdeckClient(base_url, api_token=tokens["alice"], timeout_s=60)
    bob = AsyncFlightdeckClient(base_url, api_token=tokens["bob"], timeout_s=60)
    try:
        asked = await alice.post_promote_request(
            release_id="support-base", environment=ENV, window="7d", reason="back"
        )
        confirmed = await bob.post_promote_confirm(request_id=asked["request_id"], approval_reason="fine")
        return {"post_promote_request": asked, "post_promote_confirm": confirmed}
    finally:
        await alice.aclose()
        await bob.aclose()


def main() -> None:
    phase, base_url, tokens_path, out_path = sys.argv[1:5]
    with open(tokens_path) as handle:
        tokens = json.load(handle)
    results: dict[str, Any] = {}
    admin = FlightdeckClient(base_url, api_token=tokens["admin"], timeout_s=60)
    if phase == "direct":
        call(results, "health", admin.health)
        call(results, "get_workspace", admin.get_workspace)
        call(results, "ingest_run_events", admin.ingest_run_events, events("support-base", 1, 1000))
        call(results, "ingest_run_events_empty", admin.ingest_run_events, [])
        call(
            results,
            "ingest_run_events_batch",
            admin.ingest_run_events_batch,
            events("support-cand", 5, 1200),
            chunk_size=2,
        )
        call(results, "ingest_run_events_batch_bad_chunk", admin.ingest_run_events_batch, [], chunk_size=0)
        call(results, "list_releases", admin.list_releases)
        call(
            results,
            "post_diff",
            admin.post_diff,
            baseline_release_id="support-base",
            candidate_release_id="support-cand",
            window="7d",
        )
        promote = {"environment": ENV, "window": "7d", "reason": "sdk"}
        call(results, "post_promote", admin.post_promote, release_id="support-base", **promote)
        call(results, "post_promote_blocked", admin.post_promote, release_id="support-cand", **promote)
        call(results, "post_rollback", admin.post_rollback, release_id="support-base", **promote)
        call(results, "post_rollback_blocked", admin.post_rollback, release_id="support-cand", **promote)
        call(results, "list_promoted", admin.list_promoted)
        call(results, "list_actions", admin.list_actions, agent_id=AGENT, environment=ENV, limit=10)
        call(results, "list_runs", admin.list_runs, release_id="support-cand", window="1h", offset=1, limit=2)
        call(results, "list_runs_unknown", admin.list_runs, release_id="nope", window="1h")
        call(
            results,
            "fetch_runs_export_ndjson",
            admin.fetch_runs_export_ndjson,
            release_id="support-cand",
            window="1h",
            limit=4,
        )
        results["async"] = asyncio.run(async_direct(base_url, tokens["admin"]))
    else:  # the approval workflow: alice asks, bob confirms
        alice = FlightdeckClient(base_url, api_token=tokens["alice"], timeout_s=60)
        bob = FlightdeckClient(base_url, api_token=tokens["bob"], timeout_s=60)
        asked = call(
            results,
            "post_promote_request",
            alice.post_promote_request,
            release_id="support-cand",
            environment=ENV,
            window="7d",
            reason="cand",
        )
        call(results, "list_promotion_requests_pending", admin.list_promotion_requests, status="pending")
        call(
            results,
            "post_promote_confirm_self",
            alice.post_promote_confirm,
            request_id=asked["request_id"],
            approval_reason="mine",
        )
        call(
            results,
            "post_promote_confirm",
            bob.post_promote_confirm,
            request_id=asked["request_id"],
            approval_reason="ok",
        )
        call(results, "list_promotion_requests", admin.list_promotion_requests, status="completed", limit=5)
        results["async"] = asyncio.run(async_approval(base_url, tokens))
        for client in (alice, bob):
            client.close()
    admin.close()
    with open(out_path, "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
