"""Test data builders shared by the unit and store tiers, plus a per-event reference computation."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from typing import Any

from flightdeck_operator.engine.evidence import ModelAggregate
from flightdeck_operator.engine.models import RunEvent, utc_micros
from flightdeck_operator.engine.statistics import TokenMoments, histogram_of
from flightdeck_operator.engine.statistics.moments import ModelMoments, SideMoments

NOW = dt.datetime(2026, 5, 5, 12, 0, tzinfo=dt.UTC)
_run_ids = itertools.count(1)


def event_dict(
    *,
    release_id: str = "rel_base",
    timestamp: dt.datetime | str = NOW - dt.timedelta(hours=1),
    agent_id: str = "agent_support",
    model: str = "gpt-4.1-mini",
    input_tokens: int = 1000,
    output_tokens: int = 500,
    cached_input_tokens: int = 0,
    latency_ms: int | None = 1000,
    success: bool = True,
    environment: str = "local",
    tenant_id: str = "tenant_a",
    task_id: str = "task_a",
    run_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A raw event, as a client would post it."""
    return {
        "timestamp": timestamp if isinstance(timestamp, str) else timestamp.isoformat(),
        "agent_id": agent_id,
        "release_id": release_id,
        "run_id": run_id or f"run_{next(_run_ids):08d}",
        "tenant_id": tenant_id,
        "task_id": task_id,
        "environment": environment,
        "metrics": {"latency_ms": latency_ms, "success": success},
        "usage": {
            "model": {
                "provider": "openai",
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cached_input_tokens": cached_input_tokens,
            }
        },
        **extra,
    }


def make_event(**kwargs: Any) -> RunEvent:
    return RunEvent.model_validate(event_dict(**kwargs))


def aggregate_events(
    events: Iterable[RunEvent],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tenant_id: str | None = None,
) -> tuple[ModelAggregate, ...]:
    """The straightforward per-event computation the SQL must agree with."""
    groups: dict[tuple[str, str], list[int]] = {}
    for event in events:
        ts = utc_micros(event.timestamp)
        if since is not None and ts < utc_micros(since):
            continue
        if until is not None and ts >= utc_micros(until):
            continue
        if tenant_id is not None and event.tenant_id != tenant_id:
            continue
        acc = groups.setdefault((event.agent_id, event.usage.model.model), [0] * 7)
        usage, latency = event.usage.model, event.metrics.latency_ms
        acc[0] += 1
        acc[1] += usage.input_tokens
        acc[2] += usage.output_tokens
        acc[3] += usage.cached_input_tokens
        acc[4] += latency or 0
        acc[5] += latency is not None
        acc[6] += not event.metrics.success
    return tuple(
        ModelAggregate(agent, model, *acc)  # type: ignore[arg-type]
        for (agent, model), acc in sorted(groups.items())
    )


def moments_of_events(
    events: Iterable[RunEvent],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tenant_id: str | None = None,
) -> SideMoments:
    """The per-event oracle for the store's second moments and latency histogram: token products
    summed one run at a time, latencies binned with the logarithmic ``bin_of`` (not the table)."""
    tokens: dict[tuple[str, str], TokenMoments] = {}
    latency_sq: dict[tuple[str, str], float] = {}
    latencies: list[int] = []
    for event in events:
        ts = utc_micros(event.timestamp)
        if (since is not None and ts < utc_micros(since)) or (until is not None and ts >= utc_micros(until)):
            continue
        if tenant_id is not None and event.tenant_id != tenant_id:
            continue
        key = (event.agent_id, event.usage.model.model)
        usage, latency = event.usage.model, event.metrics.latency_ms
        run = TokenMoments.of_run(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
        tokens[key] = tokens[key] + run if key in tokens else run
        latency_sq[key] = latency_sq.get(key, 0.0) + (0.0 if latency is None else float(latency) ** 2)
        if latency is not None:
            latencies.append(latency)
    models = tuple(
        ModelMoments(agent, model, tokens[agent, model], latency_sq[agent, model])
        for agent, model in sorted(tokens)
    )
    return SideMoments(models=models, latency_bins=histogram_of(latencies))
