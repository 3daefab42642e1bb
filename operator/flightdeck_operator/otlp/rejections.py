"""Spans that cannot become evidence, counted by reason, for the OTLP partial-success answer.

``RejectionSummary.rejected_spans`` and ``error_message()`` are the two fields of
``ExportTracePartialSuccess``; the counts by reason also feed metrics and the status route.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

MAX_ERROR_MESSAGE_LENGTH: Final = 1024  # the research's bound for error_message (§4.6)


class RejectionReason(StrEnum):
    INVALID_ID = "invalid_id"  # trace/span/parent id not hex of the right length, or all zeros
    NO_RELEASE = "no_release"  # no release attribute and no service.version to fall back on
    UNKNOWN_RELEASE = "unknown_release"  # the release attribute names no known AgentRelease
    UNKNOWN_AGENT = "unknown_agent"  # version fallback: no AgentRelease for this agent at all
    UNKNOWN_VERSION = "unknown_version"  # version fallback: the agent has no release of that version
    AGENT_MISMATCH = "agent_mismatch"  # flightdeck.agent.id differs from the release's agent
    NO_ENVIRONMENT = "no_environment"  # no deployment.environment(.name) and no default
    INVALID_TIMES = "invalid_times"  # the run span has no end time, or ends before it starts
    INVALID_EVENT = "invalid_event"  # the run event breaks a RunEvent bound (e.g. a huge latency)
    TOO_MANY_SPANS = "too_many_spans"  # staging the span would pass the per-trace span cap


_EXPLANATIONS: Final = {
    RejectionReason.INVALID_ID: "invalid trace or span id",
    RejectionReason.NO_RELEASE: "no release",
    RejectionReason.UNKNOWN_RELEASE: "unknown release",
    RejectionReason.UNKNOWN_AGENT: "unknown agent",
    RejectionReason.UNKNOWN_VERSION: "no release of that version",
    RejectionReason.AGENT_MISMATCH: "agent does not match the release",
    RejectionReason.NO_ENVIRONMENT: "no environment",
    RejectionReason.INVALID_TIMES: "invalid start/end time",
    RejectionReason.INVALID_EVENT: "not a valid run event",
    RejectionReason.TOO_MANY_SPANS: "too many spans in one trace",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """One span that will not become evidence, and why (``detail`` names the attributes involved)."""

    reason: RejectionReason
    trace_id: str
    span_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class RejectionSummary:
    """Rejections counted by reason, with the first one of each reason kept as an example."""

    counts: Mapping[RejectionReason, int] = field(default_factory=dict)
    examples: Mapping[RejectionReason, Rejection] = field(default_factory=dict)

    @classmethod
    def of(cls, rejections: Iterable[Rejection]) -> RejectionSummary:
        counts: Counter[RejectionReason] = Counter()
        examples: dict[RejectionReason, Rejection] = {}
        for rejection in rejections:
            counts[rejection.reason] += 1
            examples.setdefault(rejection.reason, rejection)
        return cls(dict(counts), examples)

    def merged(self, other: RejectionSummary) -> RejectionSummary:
        counts = Counter(self.counts)
        counts.update(other.counts)
        return RejectionSummary(dict(counts), {**other.examples, **self.examples})

    @property
    def rejected_spans(self) -> int:
        return sum(self.counts.values())

    def error_message(self) -> str:
        """English, at most 1 KiB: the count, then per reason (most frequent first) an example.

        ``2 spans rejected: 2 no release (e.g. trace 5b8e…, span "invoke_agent support": no
        flightdeck.release.id and no service.version)``. Empty when nothing was rejected.
        """
        total = self.rejected_spans
        if total == 0:
            return ""
        parts = []
        for reason, count in sorted(self.counts.items(), key=lambda item: (-item[1], item[0].value)):
            example = self.examples[reason]
            parts.append(
                f"{count} {_EXPLANATIONS[reason]} [{reason.value}] "
                f"(e.g. trace {example.trace_id[:32] or '-'}: {example.detail})"
            )
        message = f"{total} span{'s' if total != 1 else ''} rejected: " + "; ".join(parts)
        if len(message) > MAX_ERROR_MESSAGE_LENGTH:
            message = message[: MAX_ERROR_MESSAGE_LENGTH - 3] + "..."
        return message
