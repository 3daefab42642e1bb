"""Which AgentRelease a run span belongs to, from its attributes and a given set of known releases.

Primary: a release attribute (``flightdeck.release.id`` by default), which the operator can inject
with ``OTEL_RESOURCE_ATTRIBUTES`` because it deploys the workload. Fallback, for users who version
their services themselves: the agent (``flightdeck.agent.id``, else ``service.name``) and
``service.version`` matched against the known releases' ``spec.agentId`` and ``spec.version``.
The caller passes the releases in (the sidecar's cached view of the namespace); nothing is looked up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flightdeck_operator.otlp.conventions import AGENT_ID_KEYS, SERVICE_NAME, SERVICE_VERSION, text_attribute
from flightdeck_operator.otlp.rejections import Rejection, RejectionReason
from flightdeck_operator.otlp.spans import SpanRecord


@dataclass(frozen=True, slots=True)
class KnownRelease:
    """What the mapper needs of an AgentRelease: its name, agent and version, and its runtime
    provider and model (used for the run event when no span names a model)."""

    release_id: str
    agent_id: str
    version: str
    model: str | None = None
    provider: str | None = None


class ReleaseCatalog:
    """The known releases, indexed by name and by (agent, version). Immutable once built."""

    __slots__ = ("_agents", "_by_agent_version", "_by_id")

    def __init__(self, releases: Iterable[KnownRelease] = ()) -> None:
        self._by_id: dict[str, KnownRelease] = {}
        self._by_agent_version: dict[tuple[str, str], KnownRelease] = {}
        self._agents: set[str] = set()
        for release in releases:
            self._agents.add(release.agent_id)
            self._by_id.setdefault(release.release_id, release)
            # Two releases of one agent with the same version would be ambiguous: the first named
            # (sorted by the caller, or in the given order) wins, so the answer is deterministic.
            self._by_agent_version.setdefault((release.agent_id, release.version), release)

    def by_id(self, release_id: str) -> KnownRelease | None:
        return self._by_id.get(release_id)

    def by_agent_version(self, agent_id: str, version: str) -> KnownRelease | None:
        return self._by_agent_version.get((agent_id, version))

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._agents

    def __len__(self) -> int:
        return len(self._by_id)


def resolve_release(
    span: SpanRecord, catalog: ReleaseCatalog, *, release_attribute: str, version_fallback: bool
) -> KnownRelease | Rejection:
    """The run span's release, or why it has none. Attributes are read from the span, then its resource."""
    telemetry_agent = text_attribute(span, AGENT_ID_KEYS)
    release_id = text_attribute(span, (release_attribute,))
    if release_id is not None:
        release = catalog.by_id(release_id)
        if release is None:
            return _reject(
                span,
                RejectionReason.UNKNOWN_RELEASE,
                f"{release_attribute} {release_id!r} names no AgentRelease",
            )
        if telemetry_agent is not None and telemetry_agent != release.agent_id:
            return _reject(
                span,
                RejectionReason.AGENT_MISMATCH,
                f"flightdeck.agent.id {telemetry_agent!r} but release {release_id!r} is of agent "
                f"{release.agent_id!r}",
            )
        return release
    version = text_attribute(span, (SERVICE_VERSION,)) if version_fallback else None
    if version is None:
        without = f"no {release_attribute}" + (" and no service.version" if version_fallback else "")
        return _reject(span, RejectionReason.NO_RELEASE, without)
    agent = telemetry_agent or text_attribute(span, (SERVICE_NAME,))
    if agent is None or not catalog.has_agent(agent):
        return _reject(
            span,
            RejectionReason.UNKNOWN_AGENT,
            f"no {release_attribute}, and agent {agent!r} (flightdeck.agent.id, else service.name) has "
            "no AgentRelease",
        )
    release = catalog.by_agent_version(agent, version)
    if release is None:
        return _reject(
            span,
            RejectionReason.UNKNOWN_VERSION,
            f"no {release_attribute}, and service.version {version!r} matches no AgentRelease of agent {agent!r}",
        )
    return release


def _reject(span: SpanRecord, reason: RejectionReason, detail: str) -> Rejection:
    return Rejection(reason, span.trace_id, span.span_id, f"span {span.name[:80]!r}: {detail}")
