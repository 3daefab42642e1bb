"""Map the spans of one trace to run events (one per agent run), and say which spans are rejected.

Two entry points, both pure:

- ``screen_spans``: at receive time, per request (spans of any traces): drops spans with bad ids
  and rejects run spans whose release or environment cannot be resolved. Its summary is the
  request's OTLP partial success. Rejected run spans stay stageable: their children need the ancestry.
- ``map_trace``: once per trace, with every span collected so far (any order, any number of
  requests, duplicates allowed). Until every referenced parent has arrived it answers
  ``TraceNotReady``, since the run span (a parent) is exported after its children. Whether more
  spans may still come is for the caller's settle timer to decide; ``final=True`` maps what is there.

The mapping table, aliases and rejection reasons are in docs/opentelemetry.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from flightdeck_operator.engine.models import RUN_EVENT_DATA, RunEventData, from_utc_micros
from flightdeck_operator.otlp.conventions import (
    AGENT_NAME_KEYS,
    DEFAULT_RELEASE_ATTRIBUTE,
    DEFAULT_RUN_OPERATIONS,
    ENVIRONMENT_KEYS,
    ERROR_TYPE,
    EXCEPTION_EVENT,
    EXCEPTION_TYPE,
    OTHER_ERROR,
    SERVICE_NAME,
    SESSION_KEYS,
    TASK_KEYS,
    TENANT_KEYS,
    as_text,
    is_inference,
    is_run_candidate,
    is_tool_call,
    text_attribute,
    tool_name,
)
from flightdeck_operator.otlp.rejections import Rejection, RejectionReason, RejectionSummary
from flightdeck_operator.otlp.releases import KnownRelease, ReleaseCatalog, resolve_release
from flightdeck_operator.otlp.spans import SpanRecord, StatusCode, id_problem
from flightdeck_operator.otlp.usage import summarize_usage

RUN_ID_PREFIX: Final = "otel"
MAX_LABEL_LENGTH: Final = 256
_NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class MappingConfig:
    """The sidecar's ``otlp:`` settings that shape the mapping (defaults as the research proposes)."""

    run_operations: frozenset[str] = DEFAULT_RUN_OPERATIONS
    root_fallback: bool = True  # a trace with model calls but no agent span: its root is the run
    release_attribute: str = DEFAULT_RELEASE_ATTRIBUTE
    version_fallback: bool = True  # service.version + agent matched against the known releases
    default_environment: str | None = None  # None: a run without deployment.environment is rejected
    default_tenant: str = "default"
    default_task: str = "default"


@dataclass(frozen=True, slots=True)
class Screening:
    stageable: tuple[SpanRecord, ...]  # every span with valid ids
    rejections: RejectionSummary


@dataclass(frozen=True, slots=True)
class TraceNotReady:
    trace_id: str
    missing_parents: frozenset[str]  # parent span ids referenced by a span but not received


@dataclass(frozen=True, slots=True)
class TraceMapping:
    trace_id: str
    events: tuple[RunEventData, ...]  # validated, every default filled in, ordered by run start
    rejections: RejectionSummary
    orphan_inference_spans: int = 0  # model calls under no run: not evidence
    detached_spans: int = 0  # final mapping only: spans whose parent never arrived


@dataclass(frozen=True, slots=True)
class _Target:
    release: KnownRelease
    environment: str


@dataclass(slots=True)
class _Run:
    span: SpanRecord
    members: list[SpanRecord] = field(default_factory=list)  # the run span and its descendants


# --- receive time -----------------------------------------------------------------------------------


def screen_spans(spans: Iterable[SpanRecord], config: MappingConfig, catalog: ReleaseCatalog) -> Screening:
    """Receive-time checks of one request's spans (see the module docstring)."""
    stageable: list[SpanRecord] = []
    rejections: list[Rejection] = []
    for span in spans:
        problem = id_problem(span)
        if problem is not None:
            rejections.append(Rejection(RejectionReason.INVALID_ID, span.trace_id, span.span_id, problem))
            continue
        stageable.append(span)
        if is_run_candidate(span, config.run_operations):
            target = _resolve_target(span, config, catalog)
            if isinstance(target, Rejection):
                rejections.append(target)
    return Screening(tuple(stageable), RejectionSummary.of(rejections))


# --- per trace --------------------------------------------------------------------------------------


def map_trace(
    spans: Iterable[SpanRecord], config: MappingConfig, catalog: ReleaseCatalog, *, final: bool = False
) -> TraceMapping | TraceNotReady:
    """The run events of one trace, or ``TraceNotReady`` while a referenced parent is missing.

    With ``final=True`` (the caller gave up waiting), spans whose parent never arrived head their
    own subtrees: agent spans there are still runs, but the root fallback applies only to true
    roots and to spans whose parent is in another process (``parent_is_remote``).
    Raises ``ValueError`` if the spans (with valid ids) belong to more than one trace.
    """
    rejections: list[Rejection] = []
    by_id: dict[str, SpanRecord] = {}
    for span in spans:
        problem = id_problem(span)
        if problem is not None:
            rejections.append(Rejection(RejectionReason.INVALID_ID, span.trace_id, span.span_id, problem))
        else:
            by_id.setdefault(span.span_id, span)  # a re-sent span is the same span: first copy wins
    trace_ids = {span.trace_id for span in by_id.values()}
    if len(trace_ids) > 1:
        raise ValueError(f"map_trace takes the spans of one trace, got {len(trace_ids)} trace ids")
    trace_id = next(iter(trace_ids), "")

    missing = frozenset(
        span.parent_span_id
        for span in by_id.values()
        if span.parent_span_id is not None and span.parent_span_id not in by_id
    )
    if missing and not final:
        return TraceNotReady(trace_id, missing)

    children: dict[str, list[SpanRecord]] = {}
    tops: list[SpanRecord] = []
    for span in by_id.values():
        if span.parent_span_id is None or span.parent_span_id in missing:
            tops.append(span)
        else:
            children.setdefault(span.parent_span_id, []).append(span)
    runs, orphans = _select_runs(tops, children, config)

    parent_of = {span.span_id: span.parent_span_id for span in by_id.values()}
    events: list[tuple[tuple[int, str], RunEventData]] = []
    for run in runs:
        outcome = _run_event(run, parent_of, config, catalog)
        if isinstance(outcome, Rejection):
            rejections.append(outcome)
        else:
            events.append(((run.span.start_ns, run.span.span_id), outcome))
    events.sort(key=lambda item: item[0])
    return TraceMapping(
        trace_id=trace_id,
        events=tuple(event for _, event in events),
        rejections=RejectionSummary.of(rejections),
        orphan_inference_spans=orphans,
        detached_spans=sum(1 for span in tops if span.parent_span_id is not None),
    )


def _select_runs(
    tops: Sequence[SpanRecord], children: Mapping[str, Sequence[SpanRecord]], config: MappingConfig
) -> tuple[list[_Run], int]:
    """The outermost run candidate of each branch is a run; candidates below it fold into it
    (sub-agents, handoffs). A tree with model calls but no candidate falls back to its root."""
    runs: list[_Run] = []
    orphans = 0
    for top in tops:
        tree: list[SpanRecord] = []
        tree_runs: list[_Run] = []
        stack: list[tuple[SpanRecord, _Run | None]] = [(top, None)]
        while stack:  # iterative: a deep chain of spans must not hit the recursion limit
            span, run = stack.pop()
            tree.append(span)
            if run is None and is_run_candidate(span, config.run_operations):
                run = _Run(span)
                tree_runs.append(run)
            if run is not None:
                run.members.append(span)
            stack.extend((child, run) for child in children.get(span.span_id, ()))
        inference = [span for span in tree if is_inference(span, config.run_operations)]
        if not tree_runs and inference and config.root_fallback and _may_fall_back(top):
            tree_runs.append(_Run(top, tree))
        in_runs = {span.span_id for run in tree_runs for span in run.members}
        orphans += sum(1 for span in inference if span.span_id not in in_runs)
        runs.extend(tree_runs)
    return runs, orphans


def _may_fall_back(top: SpanRecord) -> bool:
    # A span whose local parent was lost is not a root: falling back there would split one run.
    return top.parent_span_id is None or top.parent_is_remote is True


# --- one run ----------------------------------------------------------------------------------------


def _resolve_target(span: SpanRecord, config: MappingConfig, catalog: ReleaseCatalog) -> _Target | Rejection:
    release = resolve_release(
        span, catalog, release_attribute=config.release_attribute, version_fallback=config.version_fallback
    )
    if isinstance(release, Rejection):
        return release
    environment = text_attribute(span, ENVIRONMENT_KEYS) or config.default_environment
    if environment is None:
        return Rejection(
            RejectionReason.NO_ENVIRONMENT,
            span.trace_id,
            span.span_id,
            f"span {span.name[:80]!r}: no deployment.environment.name (or deployment.environment) "
            "and no default environment",
        )
    return _Target(release, environment)


def _run_event(
    run: _Run, parent_of: Mapping[str, str | None], config: MappingConfig, catalog: ReleaseCatalog
) -> RunEventData | Rejection:
    span = run.span
    target = _resolve_target(span, config, catalog)
    if isinstance(target, Rejection):
        return target
    if span.end_ns == 0 or span.start_ns == 0 or span.end_ns < span.start_ns:
        return Rejection(
            RejectionReason.INVALID_TIMES,
            span.trace_id,
            span.span_id,
            f"span {span.name[:80]!r}: start {span.start_ns} ns, end {span.end_ns} ns",
        )
    usage = summarize_usage(
        span, run.members, parent_of, run_operations=config.run_operations, release=target.release
    )
    success, error_type = _outcome(span)
    tools: dict[str, int] = {}
    for member in run.members:
        if is_tool_call(member):
            name = tool_name(member)
            tools[name] = tools.get(name, 0) + 1
    labels = {
        "otel.service_name": as_text(span.resource_attributes.get(SERVICE_NAME)),
        "gen_ai.agent.name": text_attribute(span, AGENT_NAME_KEYS, resource=False),
        "otel.inference_spans": str(usage.inference_spans),
        "otel.child_errors": str(
            sum(1 for member in run.members if member is not span and member.status_code == StatusCode.ERROR)
        ),
        "otel.usage_source": usage.source,
        "otel.models": ",".join(usage.models) or None,
        "otel.unpriced_spans": str(usage.unpriced_spans) if usage.unpriced_spans else None,
        "otel.cache_write_input_tokens": (
            str(usage.tokens.cache_write_input) if usage.tokens.cache_write_input else None
        ),
    }
    event: dict[str, Any] = {
        "type": "run_end",
        "timestamp": from_utc_micros(span.end_ns // 1000),
        "agent_id": target.release.agent_id,
        "release_id": target.release.release_id,
        "run_id": run_id(span.trace_id, span.span_id),
        "tenant_id": text_attribute(span, TENANT_KEYS) or config.default_tenant,
        "task_id": text_attribute(span, TASK_KEYS) or config.default_task,
        "environment": target.environment,
        "request": {
            "session_id": text_attribute(span, SESSION_KEYS),
            "trace_id": span.trace_id,
            "span_id": span.span_id,
        },
        "metrics": {
            # Half up, in integers: nanosecond counts are too large for exact float division.
            "latency_ms": (span.end_ns - span.start_ns + _NS_PER_MS // 2) // _NS_PER_MS,
            "success": success,
            "error_type": error_type,
        },
        "usage": {
            "model": {
                "provider": usage.provider,
                "model": usage.model,
                "input_tokens": usage.tokens.input,
                "output_tokens": usage.tokens.output,
                "cached_input_tokens": usage.tokens.cached_input,
            },
            "tools": [{"tool_name": name, "invocations": count} for name, count in sorted(tools.items())],
        },
        "labels": {key: value[:MAX_LABEL_LENGTH] for key, value in labels.items() if value is not None},
    }
    try:
        # The same validation as POST /v1/events' fast path: the result is what the store ingests.
        return RUN_EVENT_DATA.validate_python(event)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return Rejection(
            RejectionReason.INVALID_EVENT,
            span.trace_id,
            span.span_id,
            f"span {span.name[:80]!r}: {where}: {first['msg']}",
        )


def run_id(trace_id: str, span_id: str) -> str:
    """Stable across re-sent spans, so the store's first-write-wins ``run_id`` deduplicates them."""
    return f"{RUN_ID_PREFIX}:{trace_id}:{span_id}"


def _outcome(span: SpanRecord) -> tuple[bool, str | None]:
    """Success unless the run span's status is ERROR or it has ``error.type``. Errors of child spans
    the agent recovered from do not fail the run (they are counted in a label)."""
    error_type = as_text(span.attributes.get(ERROR_TYPE))
    if span.status_code != StatusCode.ERROR and error_type is None:
        return True, None
    if error_type is None:
        exceptions = [event for event in span.events if event.name == EXCEPTION_EVENT]
        if exceptions:
            last = sorted(exceptions, key=lambda event: event.time_ns)[-1]  # stable: ties keep order
            error_type = as_text(last.attributes.get(EXCEPTION_TYPE))
    return False, error_type or OTHER_ERROR
