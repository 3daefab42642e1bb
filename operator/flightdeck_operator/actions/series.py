"""Per-hour cost per run, mean latency and error rate of two releases over a window, with the
limits of the policy that governs them: what the dashboard's Compare page draws.

The same releases, pricing tables, window and filters as the diff (``actions.diff``), so a chart
and the verdict beside it can never disagree on what they show.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from flightdeck_operator.actions.diff import DiffInput, governing_policy, priced_pair
from flightdeck_operator.actions.errors import ClusterUnavailable, InvalidAction
from flightdeck_operator.api.to_engine import engine_pricing
from flightdeck_operator.engine.evidence import EvidenceError, price_rollup, window_bounds
from flightdeck_operator.engine.models import PricingTable
from flightdeck_operator.kube.errors import GatewayError
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store
from flightdeck_operator.store.series import HourOfEvidence


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class HourPoint(_Frozen):
    hour: dt.datetime
    runs: int
    cost_per_run_usd: float
    latency_ms_avg: float | None
    error_rate: float


class ReleaseSeries(_Frozen):
    release_id: str
    points: tuple[HourPoint, ...]


class PolicyLimits(_Frozen):
    """The governing policy's maxima (None: not limited), drawn as lines."""

    policy_id: str
    max_cost_per_run_usd: float | None
    max_latency_ms: float | None
    max_error_rate: float | None


class CompareSeries(_Frozen):
    window: str
    environment: str
    since: dt.datetime
    until: dt.datetime
    baseline: ReleaseSeries
    candidate: ReleaseSeries
    limits: PolicyLimits


def compare_series(
    store: Store,
    gateway: KubeGateway,
    namespace: str,
    request: DiffInput,
    *,
    default_environment: str,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> CompareSeries:
    """Both releases hour by hour. Raises :class:`ActionError` with the diff's messages."""
    try:
        pair = priced_pair(gateway, namespace, request.baseline_release_id, request.candidate_release_id)
        since, until = window_bounds(request.window, clock())
        environment = request.environment or default_environment
        policy = governing_policy(gateway, namespace, pair.baseline.agent_id, environment)

        def series(release_id: str, table: PricingTable) -> ReleaseSeries:
            hours = store.hourly_evidence(
                release_id, environment, since, until, tenant_id=request.tenant_id, task_id=request.task_id
            )
            return ReleaseSeries(release_id=release_id, points=_points(hours, table))

        return CompareSeries(
            window=request.window,
            environment=environment,
            since=since,
            until=until,
            baseline=series(pair.baseline.release_id, engine_pricing(pair.baseline_table)),
            candidate=series(pair.candidate.release_id, engine_pricing(pair.candidate_table)),
            limits=PolicyLimits(
                policy_id=policy.policy_id,
                max_cost_per_run_usd=policy.max_cost_per_run_usd,
                max_latency_ms=policy.max_latency_ms,
                max_error_rate=policy.max_error_rate,
            ),
        )
    except EvidenceError as error:
        raise InvalidAction(str(error)) from None
    except GatewayError as error:
        raise ClusterUnavailable(f"Kubernetes API unavailable: {error}") from None


def _points(hours: Sequence[HourOfEvidence], table: PricingTable) -> tuple[HourPoint, ...]:
    points = []
    for hour in hours:
        rolled = price_rollup(hour.aggregates, table)
        points.append(
            HourPoint(
                hour=hour.hour,
                runs=rolled.runs,
                cost_per_run_usd=rolled.cost_per_run_usd,
                latency_ms_avg=rolled.latency_ms_avg,
                error_rate=rolled.error_rate,
            )
        )
    return tuple(points)
