"""GenAI semantic-convention names, with every alias a receiver must accept, and attribute lookup.

The GenAI conventions are still "Development" and have renamed attributes several times (see
shared/reference/otel-genai-ingest.md §1.3): each tuple lists the current name first, then the
older and the OpenInference / OpenLLMetry names. The first name present wins, so a span carrying
both an old and a new name is never counted twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from flightdeck_operator.otlp.spans import AttributeValue, SpanRecord

OPERATION: Final = "gen_ai.operation.name"

# Operations whose spans carry the tokens (legacy "completion" included).
INFERENCE_OPERATIONS: Final = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion"}
)
TOOL_OPERATION: Final = "execute_tool"
# Agent invocations: one is a run; configurable (the conventions keep adding runner entrypoints).
DEFAULT_RUN_OPERATIONS: Final = frozenset({"invoke_agent", "invoke_workflow", "handle_conversation_turn"})

OPENINFERENCE_KIND: Final = "openinference.span.kind"
TRACELOOP_KIND: Final = "traceloop.span.kind"
OPENINFERENCE_RUN_KINDS: Final = frozenset({"AGENT"})
OPENINFERENCE_INFERENCE_KINDS: Final = frozenset({"LLM", "EMBEDDING"})
OPENINFERENCE_TOOL_KINDS: Final = frozenset({"TOOL"})
TRACELOOP_RUN_KINDS: Final = frozenset({"workflow", "agent"})
EXPLICIT_RUN_MARKER: Final = "flightdeck.run"  # set to true on a span: it is a run, whatever else

PROVIDER_KEYS: Final = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
REQUEST_MODEL_KEYS: Final = ("gen_ai.request.model",)
RESPONSE_MODEL_KEYS: Final = ("gen_ai.response.model",)
OPENINFERENCE_MODEL_KEYS: Final = ("llm.model_name",)

INPUT_TOKEN_KEYS: Final = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
)
OUTPUT_TOKEN_KEYS: Final = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
CACHE_READ_KEYS: Final = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",  # OpenLLMetry before semconv-ai 0.5.0
    "llm.token_count.prompt_details.cache_read",
)
CACHE_WRITE_KEYS: Final = (
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",  # the v1.40 name, renamed by genai #440
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
# Pydantic AI's run-span totals ("to prevent double-counting"): read only as the agent-span fallback.
AGGREGATED_INPUT_KEYS: Final = ("gen_ai.aggregated_usage.input_tokens",)
AGGREGATED_OUTPUT_KEYS: Final = ("gen_ai.aggregated_usage.output_tokens",)
AGGREGATED_CACHE_READ_KEYS: Final = ("gen_ai.aggregated_usage.cache_read.input_tokens",)
AGGREGATED_CACHE_WRITE_KEYS: Final = (
    "gen_ai.aggregated_usage.cache_write.input_tokens",
    "gen_ai.aggregated_usage.cache_creation.input_tokens",
)

TOOL_NAME_KEYS: Final = ("gen_ai.tool.name", "tool.name")
AGENT_NAME_KEYS: Final = ("gen_ai.agent.name",)
SESSION_KEYS: Final = ("gen_ai.conversation.id", "session.id")
ENVIRONMENT_KEYS: Final = ("deployment.environment.name", "deployment.environment")
ERROR_TYPE: Final = "error.type"
EXCEPTION_EVENT: Final = "exception"
EXCEPTION_TYPE: Final = "exception.type"
OTHER_ERROR: Final = "_OTHER"  # the conventions' fallback error.type

DEFAULT_RELEASE_ATTRIBUTE: Final = "flightdeck.release.id"
AGENT_ID_KEYS: Final = ("flightdeck.agent.id",)
TENANT_KEYS: Final = ("flightdeck.tenant.id",)
TASK_KEYS: Final = ("flightdeck.task.id",)
SERVICE_NAME: Final = "service.name"
SERVICE_VERSION: Final = "service.version"

# gen_ai.system values from before the v1.37 rename, mapped to gen_ai.provider.name values.
LEGACY_PROVIDERS: Final = {
    "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "xai": "x_ai",
}

# A response model is the dated snapshot (gpt-4o-mini-2024-07-18); pricing tables use the name.
_DATED_SNAPSHOT: Final = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def normalize_provider(value: str) -> str:
    provider = value.strip().lower()
    return LEGACY_PROVIDERS.get(provider, provider)


def undated_model(model: str) -> str:
    return _DATED_SNAPSHOT.sub("", model)


# --- attribute lookup -------------------------------------------------------------------------------


def span_value(span: SpanRecord, keys: Iterable[str]) -> AttributeValue:
    """The first of ``keys`` set on the span itself (never the resource)."""
    for key in keys:
        value = span.attributes.get(key)
        if value is not None:
            return value
    return None


def span_or_resource_value(span: SpanRecord, keys: Iterable[str]) -> AttributeValue:
    """The first of ``keys`` set on the span, else on its resource (key by key, span first)."""
    for key in keys:
        value = span.attributes.get(key)
        if value is None:
            value = span.resource_attributes.get(key)
        if value is not None:
            return value
    return None


_NUMBERS: Final = (int, float)  # a tuple: isinstance with a union object is several times slower


def as_text(value: AttributeValue) -> str | None:
    """A scalar as non-empty text (numbers and booleans too: ``service.version`` may be a number)."""
    if isinstance(value, str):  # by far the most frequent: first
        return value.strip() or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _NUMBERS):
        return str(value).strip() or None
    return None


def as_token_count(value: AttributeValue) -> int | None:
    """A token count from an int, an integral float or a decimal string; negatives count as 0."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value.is_integer():
        return max(int(value), 0)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return max(int(value), 0)
    return None


def is_true(value: AttributeValue) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def text_attribute(span: SpanRecord, keys: Iterable[str], *, resource: bool = True) -> str | None:
    value = span_or_resource_value(span, keys) if resource else span_value(span, keys)
    return as_text(value)


def token_attribute(span: SpanRecord, keys: Iterable[str]) -> int | None:
    return as_token_count(span_value(span, keys))


# --- span roles -------------------------------------------------------------------------------------


class SpanFacts:
    """What the conventions make of one span's own attributes, worked out once (``facts``)."""

    __slots__ = ("explicit_run", "has_model", "has_usage", "openinference", "operation", "traceloop")

    def __init__(self, span: SpanRecord) -> None:
        attributes = span.attributes
        value = attributes.get(OPERATION)
        self.operation = value.strip().lower() if isinstance(value, str) else None
        self.explicit_run = is_true(attributes.get(EXPLICIT_RUN_MARKER))
        value = attributes.get(OPENINFERENCE_KIND)
        self.openinference = value.upper() if isinstance(value, str) else None
        value = attributes.get(TRACELOOP_KIND)
        self.traceloop = value.lower() if isinstance(value, str) else None
        self.has_usage = (
            token_attribute(span, INPUT_TOKEN_KEYS) is not None
            or token_attribute(span, OUTPUT_TOKEN_KEYS) is not None
        )
        self.has_model = (
            span_value(span, (*REQUEST_MODEL_KEYS, *RESPONSE_MODEL_KEYS, *OPENINFERENCE_MODEL_KEYS))
            is not None
        )


def facts(span: SpanRecord) -> SpanFacts:
    found: SpanFacts | None = span.facts
    if found is None:
        found = SpanFacts(span)
        object.__setattr__(span, "facts", found)  # a cache on a frozen record
    return found


def operation(span: SpanRecord) -> str | None:
    return facts(span).operation


def is_run_candidate(span: SpanRecord, run_operations: frozenset[str]) -> bool:
    """Explicit marker, a run operation, or an OpenInference / OpenLLMetry agent kind."""
    known = facts(span)
    return (
        known.explicit_run
        or known.operation in run_operations
        or known.openinference in OPENINFERENCE_RUN_KINDS
        or known.traceloop in TRACELOOP_RUN_KINDS
    )


def has_usage(span: SpanRecord) -> bool:
    return facts(span).has_usage


def is_inference(span: SpanRecord, run_operations: frozenset[str]) -> bool:
    """A model call: an inference operation or OpenInference LLM/EMBEDDING kind; with no operation
    name at all, a span with a model and usage (as Phoenix infers it). Run candidates never are."""
    if is_run_candidate(span, run_operations):
        return False
    known = facts(span)
    if known.operation is not None:
        return known.operation in INFERENCE_OPERATIONS
    if known.openinference is not None:
        return known.openinference in OPENINFERENCE_INFERENCE_KINDS
    return known.has_model and known.has_usage


def is_tool_call(span: SpanRecord) -> bool:
    known = facts(span)
    return known.operation == TOOL_OPERATION or known.openinference in OPENINFERENCE_TOOL_KINDS


def tool_name(span: SpanRecord) -> str:
    name = text_attribute(span, TOOL_NAME_KEYS, resource=False)
    if name is None and span.name.startswith(f"{TOOL_OPERATION} "):
        name = span.name.removeprefix(f"{TOOL_OPERATION} ").strip() or None
    return name or "unknown"
