"""Token usage of one run, summed over its inference spans without double counting.

Agent spans often restate the usage of their children (the conventions recommend usage on
``invoke_agent``), so only inference spans are summed, innermost first (an inference span wrapping
another, e.g. a LangChain span around an SDK-instrumented call, is skipped). The run span's own
usage is used only when the run has no inference span with usage at all.

Token contract of the run event (docs/engine.md): ``input_tokens`` excludes cache reads, which go
to ``cached_input_tokens``. The conventions say input SHOULD include cached tokens, so per span
``input = max(input - cache_read, 0)``. Cache writes stay in input (priced at the input rate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from flightdeck_operator.otlp.conventions import (
    AGGREGATED_CACHE_READ_KEYS,
    AGGREGATED_CACHE_WRITE_KEYS,
    AGGREGATED_INPUT_KEYS,
    AGGREGATED_OUTPUT_KEYS,
    CACHE_READ_KEYS,
    CACHE_WRITE_KEYS,
    INPUT_TOKEN_KEYS,
    OPENINFERENCE_MODEL_KEYS,
    OUTPUT_TOKEN_KEYS,
    PROVIDER_KEYS,
    REQUEST_MODEL_KEYS,
    RESPONSE_MODEL_KEYS,
    has_usage,
    is_inference,
    normalize_provider,
    text_attribute,
    token_attribute,
    undated_model,
)
from flightdeck_operator.otlp.releases import KnownRelease
from flightdeck_operator.otlp.spans import SpanRecord

UNKNOWN = "unknown"
UsageSource = Literal["inference", "agent_span", "none"]


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0  # excluding cache reads
    cached_input: int = 0
    output: int = 0
    cache_write_input: int = 0  # already inside ``input``; kept for a label

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.cached_input + other.cached_input,
            self.output + other.output,
            self.cache_write_input + other.cache_write_input,
        )

    @property
    def weight(self) -> int:
        return self.input + self.cached_input + self.output


@dataclass(frozen=True, slots=True)
class RunUsageSummary:
    provider: str
    model: str
    tokens: Tokens
    source: UsageSource
    inference_spans: int  # every inference span of the run, with usage or not
    models: tuple[str, ...]  # "provider/model" of each usage group, when there is more than one
    unpriced_spans: int  # counted spans with usage but no model: their tokens go to the main model


def summarize_usage(
    run_span: SpanRecord,
    members: Sequence[SpanRecord],
    parent_of: Mapping[str, str | None],
    *,
    run_operations: frozenset[str],
    release: KnownRelease,
) -> RunUsageSummary:
    """Usage of the run made of ``members`` (the run span and all its descendants)."""
    inference = [span for span in members if is_inference(span, run_operations)]
    counted = _innermost_with_usage(inference, parent_of)
    if not counted:
        tokens, source = _run_span_usage(run_span)
        provider, model = _model_of(run_span)
        return RunUsageSummary(
            provider=_provider_or_default(provider, run_span, release),
            model=model or release.model or UNKNOWN,
            tokens=tokens,
            source=source,
            inference_spans=len(inference),
            models=(),
            unpriced_spans=0,
        )

    groups: dict[tuple[str | None, str], Tokens] = {}
    unmodelled = Tokens()
    unpriced = 0
    for span in counted:
        tokens = _span_tokens(span)
        provider, model = _model_of(span)
        if model is None:
            unmodelled += tokens
            unpriced += 1
            continue
        key = (provider, model)
        groups[key] = groups.get(key, Tokens()) + tokens
    total = sum(groups.values(), unmodelled)
    if groups:
        # The heaviest group names the run's model; ties go to the first in sorted order.
        (provider, model), _ = max(sorted(groups.items(), key=_group_order), key=lambda item: item[1].weight)
    else:
        provider, model = _model_of(run_span)
    return RunUsageSummary(
        provider=_provider_or_default(provider, run_span, release),
        model=model or release.model or UNKNOWN,
        tokens=total,
        source="inference",
        inference_spans=len(inference),
        models=tuple(sorted(f"{p or UNKNOWN}/{m}" for p, m in groups)) if len(groups) > 1 else (),
        unpriced_spans=unpriced,
    )


def _innermost_with_usage(
    inference: Sequence[SpanRecord], parent_of: Mapping[str, str | None]
) -> list[SpanRecord]:
    """Inference spans with usage that have no inference-with-usage descendant, each once."""
    with_usage = {span.span_id: span for span in inference if has_usage(span)}
    # Every ancestor of a span with usage; a walk stops at an ancestor already seen (its own
    # ancestors are seen too), so this is linear, and a parent cycle cannot loop.
    ancestors: set[str] = set()
    for span_id in with_usage:
        parent = parent_of.get(span_id)
        while parent is not None and parent not in ancestors:
            ancestors.add(parent)
            parent = parent_of.get(parent)
    return [span for span_id, span in with_usage.items() if span_id not in ancestors]


def _span_tokens(span: SpanRecord) -> Tokens:
    return _tokens(span, INPUT_TOKEN_KEYS, OUTPUT_TOKEN_KEYS, CACHE_READ_KEYS, CACHE_WRITE_KEYS)


def _run_span_usage(run_span: SpanRecord) -> tuple[Tokens, UsageSource]:
    if has_usage(run_span):
        return _span_tokens(run_span), "agent_span"
    if (
        token_attribute(run_span, AGGREGATED_INPUT_KEYS) is not None
        or token_attribute(run_span, AGGREGATED_OUTPUT_KEYS) is not None
    ):
        tokens = _tokens(
            run_span,
            AGGREGATED_INPUT_KEYS,
            AGGREGATED_OUTPUT_KEYS,
            AGGREGATED_CACHE_READ_KEYS,
            AGGREGATED_CACHE_WRITE_KEYS,
        )
        return tokens, "agent_span"
    return Tokens(), "none"


def _tokens(
    span: SpanRecord,
    input_keys: tuple[str, ...],
    output_keys: tuple[str, ...],
    cache_read_keys: tuple[str, ...],
    cache_write_keys: tuple[str, ...],
) -> Tokens:
    raw_input = token_attribute(span, input_keys) or 0
    cache_read = token_attribute(span, cache_read_keys) or 0
    return Tokens(
        input=max(raw_input - cache_read, 0),
        cached_input=cache_read,
        output=token_attribute(span, output_keys) or 0,
        cache_write_input=token_attribute(span, cache_write_keys) or 0,
    )


def _model_of(span: SpanRecord) -> tuple[str | None, str | None]:
    """(provider, model) named on the span: the requested model first (pricing tables use the
    configured name), then the response model without a dated-snapshot suffix, then OpenInference's."""
    provider = text_attribute(span, PROVIDER_KEYS)
    model = text_attribute(span, REQUEST_MODEL_KEYS, resource=False)
    if model is None:
        response = text_attribute(span, RESPONSE_MODEL_KEYS, resource=False)
        model = undated_model(response) if response else None
    if model is None:
        model = text_attribute(span, OPENINFERENCE_MODEL_KEYS, resource=False)
    return (normalize_provider(provider) if provider else None), model


def _provider_or_default(provider: str | None, run_span: SpanRecord, release: KnownRelease) -> str:
    if provider:
        return provider
    run_provider = text_attribute(run_span, PROVIDER_KEYS)
    if run_provider:
        return normalize_provider(run_provider)
    return release.provider or UNKNOWN


def _group_order(item: tuple[tuple[str | None, str], Tokens]) -> tuple[str, str]:
    (provider, model), _ = item
    return (provider or "", model)
