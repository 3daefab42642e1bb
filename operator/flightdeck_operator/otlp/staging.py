"""What staging needs to know of spans, and when a staged trace is mapped (pure; the store keeps
the spans, the sidecar's finaliser drives it).

- ``batch_id``: a request is identified by its bytes, so a re-sent request (the exporter retries
  after a lost answer) is recognised and staged once.
- ``group_by_trace``: a request's spans per trace, in arrival order.
- ``is_local_root``: a span without a parent here (a true root, or one whose parent is in another
  process): once it has arrived and nothing new came for the settle time, the trace is due.
- ``settle``: map a due trace. While a referenced parent is missing it is not ready (looked at
  again at the maximum wait), unless the only missing parents are remote ones; at the maximum
  wait it is mapped with what is there (``final``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from flightdeck_operator.otlp.mapping import MappingConfig, TraceMapping, TraceNotReady, map_trace
from flightdeck_operator.otlp.releases import ReleaseCatalog
from flightdeck_operator.otlp.spans import SpanRecord


def batch_id(content_type: str, body: bytes) -> str:
    digest = hashlib.sha256(content_type.encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def is_local_root(span: SpanRecord) -> bool:
    return span.parent_span_id is None or span.parent_is_remote is True


def group_by_trace(spans: Iterable[SpanRecord]) -> dict[str, list[SpanRecord]]:
    traces: dict[str, list[SpanRecord]] = {}
    for span in spans:
        group = traces.get(span.trace_id)
        if group is None:
            traces[span.trace_id] = [span]
        else:
            group.append(span)
    return traces


@dataclass(frozen=True, slots=True)
class Settled:
    mapping: TraceMapping
    final: bool  # mapped without every parent (maximum wait, or only remote parents missing)


def settle(
    spans: Iterable[SpanRecord], config: MappingConfig, catalog: ReleaseCatalog, *, final: bool
) -> Settled | TraceNotReady:
    """The trace's run events, or ``TraceNotReady`` while a local parent is still to come."""
    collected = list(spans)
    outcome = map_trace(collected, config, catalog, final=final)
    if isinstance(outcome, TraceMapping):
        return Settled(outcome, final)
    remote_parents = {
        span.parent_span_id
        for span in collected
        if span.parent_is_remote is True and span.parent_span_id is not None
    }
    if outcome.missing_parents <= remote_parents:
        mapped = map_trace(collected, config, catalog, final=True)
        assert isinstance(mapped, TraceMapping)
        return Settled(mapped, True)
    return outcome
