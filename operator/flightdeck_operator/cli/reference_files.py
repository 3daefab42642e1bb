"""The reference's file formats (``release.yaml``, pricing YAML, policy YAML) as custom resources.

FlightDeck users already keep these files (flightdeck-behaviour 1.2, 1.3, 1.7); the CLI turns them
into ``AgentRelease``, ``PricingTable`` and ``PromotionPolicy`` objects without hand translation:
snake_case fields become the CRDs' camelCase, and the result is validated by the same pydantic
models the operator reads, so anything built here is accepted by the API server.

Strictness, on purpose:

* ``release.yaml`` ignores unknown keys, as the reference does (its artifacts carry fields such as
  ``routing`` and ``safety`` that have no place in the AgentRelease).
* Pricing and policy files reject unknown keys: a misspelt ``cached_input_usd_per_1k_tokens`` or
  ``max_cost_per_run_usd`` would otherwise be dropped silently and change what the gate does.

Pure: no cluster, no store. Errors are :class:`ReferenceFileError` with a one-line message.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from flightdeck_operator.api.v1alpha1 import (
    AGENT_RELEASE,
    API_VERSION,
    DNS1123_SUBDOMAIN_PATTERN,
    PRICING_TABLE,
    PROMOTION_POLICY,
    AgentReleaseSpec,
    PricingTableSpec,
    PromotionPolicySpec,
    to_wire,
)

__all__ = [
    "AGENT_ID_LABEL",
    "RELEASE_FILE",
    "PolicyFile",
    "PricingFile",
    "ReferenceFileError",
    "ReleaseArtifact",
    "agent_release",
    "kube_name",
    "load_yaml",
    "parse",
    "policy_object",
    "pricing_table_object",
    "release_file",
]

RELEASE_FILE: Final = "release.yaml"
# Same label as examples/10-releases.yaml: `kubectl get arel -l flightdeck.dev/agent-id=support-bot`.
AGENT_ID_LABEL: Final = "flightdeck.dev/agent-id"
MAX_NAME_LENGTH: Final = 253
_NOT_NAME_CHARS: Final = re.compile(r"[^a-z0-9.]+")
_EDGE_JUNK: Final = re.compile(r"^[^a-z0-9]+|[^a-z0-9]+$")
_QUOTE_HINT: Final = " (quote numbers and dates in YAML, e.g. version: '1.10')"

M = TypeVar("M", bound=BaseModel)


class ReferenceFileError(ValueError):
    """A reference file is missing, unreadable or invalid; the message is one line."""


def _date_as_text(value: Any) -> Any:
    # YAML reads 2026-05-01 as a date; as an identifier it is the text the user wrote.
    return value.isoformat() if isinstance(value, dt.date) else value


LooseText = Annotated[str, BeforeValidator(_date_as_text)]


class _Lenient(BaseModel):
    """The reference's pydantic default: unknown keys are dropped."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- release.yaml (reference ReleaseArtifact) -----------------------------------------------------


class ReleaseMetadata(_Lenient):
    name: str
    version: str
    description: str | None = None


class ReleaseAgent(_Lenient):
    agent_id: str


class ReleaseRuntime(_Lenient):
    provider: str
    model: str
    temperature: float | None = None
    max_output_tokens: int | None = None


class ReleasePrompts(_Lenient):
    system_ref: str
    template_refs: list[str] = Field(default_factory=list)


class ReleaseTools(_Lenient):
    manifest_ref: str | None = None
    tool_names: list[str] = Field(default_factory=list)


class ReleasePricingReference(_Lenient):
    provider: str
    pricing_version: LooseText


class ReleaseSpec(_Lenient):
    agent: ReleaseAgent
    runtime: ReleaseRuntime
    prompts: ReleasePrompts
    tools: ReleaseTools | None = None
    pricing_reference: ReleasePricingReference
    tags: dict[str, str] = Field(default_factory=dict)


class ReleaseArtifact(_Lenient):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Release"] = "Release"
    metadata: ReleaseMetadata
    spec: ReleaseSpec


# --- pricing YAML (reference PricingTable) --------------------------------------------------------


class PricingFileEntry(_Strict):
    model: str
    input_usd_per_1k_tokens: float = Field(ge=0)
    output_usd_per_1k_tokens: float = Field(ge=0)
    cached_input_usd_per_1k_tokens: float | None = Field(default=None, ge=0)


class PricingFile(_Strict):
    api_version: Literal["v1"] | None = None
    kind: Literal["PricingTable"] | None = None
    provider: str
    pricing_version: LooseText
    entries: list[PricingFileEntry]

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.pricing_version}"


# --- policy YAML (reference Policy) ---------------------------------------------------------------


class PolicyFile(_Strict):
    """``None`` disables a ``max_*`` check and inherits the operator default for a ``min_*``; ``0``
    means "no minimum". The two are kept apart: ``None`` is omitted from the spec, ``0`` is not."""

    api_version: Literal["v1"] | None = None
    kind: Literal["Policy"] | None = None
    policy_id: LooseText = "default"
    max_cost_per_run_usd: float | None = Field(default=None, ge=0)
    max_latency_ms: int | None = Field(default=None, ge=0)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    min_candidate_runs: int | None = Field(default=None, ge=0)
    min_baseline_runs: int | None = Field(default=None, ge=0)
    min_low_runs: int | None = Field(default=None, ge=0)
    require_high_diff_confidence: bool = True


# --- parsing ----------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    """One YAML document from ``path``; missing or unparsable files raise ReferenceFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReferenceFileError(f"File not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReferenceFileError(f"Cannot read {path}: {error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ReferenceFileError(f"{path}: {problem}{line}") from None


def _first_error(error: ValidationError) -> str:
    """The first validation problem as ``field.path: message``, plus how many more there are."""
    problems = error.errors(include_url=False)
    first = problems[0]
    location = ".".join(str(part) for part in first["loc"]) or "(document)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "string_type":
        message += _QUOTE_HINT
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{location}: {message}{more}"


def parse(model: type[M], document: Any, source: str) -> M:
    """Validate ``document`` as ``model``; ``source`` names the file in the error message."""
    if not isinstance(document, Mapping):
        raise ReferenceFileError(f"{source}: expected a YAML mapping, got {type(document).__name__}")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise ReferenceFileError(f"{source}: {_first_error(error)}") from None


def release_file(bundle: Path) -> Path:
    """The ``release.yaml`` of a bundle directory, or the file itself (reference ``register``)."""
    if bundle.is_dir():
        candidate = bundle / RELEASE_FILE
        if not candidate.is_file():
            raise ReferenceFileError(f"Release artifact not found: {candidate}")
        return candidate
    if not bundle.is_file():
        raise ReferenceFileError(f"Release artifact not found: {bundle}")
    return bundle


# --- object builders --------------------------------------------------------------------------------


def kube_name(*parts: str) -> str:
    """A DNS-1123 object name from free text: lower case, runs of other characters become ``-``.

    ``kube_name("support-agent", "1.4.0")`` is ``support-agent-1-4-0`` (dots become dashes too, so
    versions read the same as in ``examples/``). Raises when nothing usable is left.
    """
    joined = "-".join(part.strip().lower().replace(".", "-") for part in parts if part.strip())
    name = _EDGE_JUNK.sub("", _NOT_NAME_CHARS.sub("-", joined))[:MAX_NAME_LENGTH]
    name = _EDGE_JUNK.sub("", name)
    if not name or re.fullmatch(DNS1123_SUBDOMAIN_PATTERN, name) is None:
        raise ReferenceFileError(f"cannot derive an object name from {' '.join(parts)!r}; pass --name")
    return name


def _check_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or re.fullmatch(DNS1123_SUBDOMAIN_PATTERN, name) is None:
        raise ReferenceFileError(
            f"invalid object name {name!r}: use lower case letters, digits, '-' and '.' "
            "(a DNS-1123 subdomain), starting and ending with a letter or digit"
        )
    return name


def _spec(model: type[BaseModel], data: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Validate the CRD spec (the operator's own model) and return it as the API server wants it."""
    try:
        return to_wire(model.model_validate(data))
    except ValidationError as error:
        raise ReferenceFileError(f"not a valid {kind} spec: {_first_error(error)}") from None


def _object(
    kind: str, name: str, namespace: str | None, spec: dict[str, Any], **metadata: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": _check_name(name)}
    if namespace:
        meta["namespace"] = namespace
    meta.update({key: value for key, value in metadata.items() if value})
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def agent_release(
    artifact: ReleaseArtifact, checksum: str, *, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The AgentRelease for a registered bundle. Default name: ``<metadata.name>-<version>``."""
    spec = artifact.spec
    data: dict[str, Any] = {
        "agent_id": spec.agent.agent_id,
        "version": artifact.metadata.version,
        "description": artifact.metadata.description,
        "runtime": spec.runtime.model_dump(exclude_none=True),
        "pricing_reference": spec.pricing_reference.model_dump(),
        "checksum": checksum,
        "tags": spec.tags,
        "prompts": spec.prompts.model_dump(),
        "tools": None if spec.tools is None else spec.tools.model_dump(exclude_none=True),
    }
    wire = _spec(
        AgentReleaseSpec, {k: v for k, v in data.items() if v not in (None, {}, [])}, AGENT_RELEASE.kind
    )
    return _object(
        AGENT_RELEASE.kind,
        name or kube_name(artifact.metadata.name, artifact.metadata.version),
        namespace,
        wire,
        labels={AGENT_ID_LABEL: wire["agentId"]},
    )


def pricing_table_object(
    table: PricingFile, *, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The PricingTable for a reference pricing file. Default name: ``<provider>-<pricing_version>``."""
    wire = _spec(
        PricingTableSpec,
        {
            "provider": table.provider,
            "pricing_version": table.pricing_version,
            "entries": [entry.model_dump(exclude_none=True) for entry in table.entries],
        },
        PRICING_TABLE.kind,
    )
    return _object(
        PRICING_TABLE.kind, name or kube_name(table.provider, table.pricing_version), namespace, wire
    )


def policy_object(
    policy: PolicyFile, *, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The PromotionPolicy for a reference policy file. Default name: ``policy_id``."""
    fields = policy.model_dump(exclude={"api_version", "kind", "policy_id"}, exclude_none=True)
    wire = _spec(PromotionPolicySpec, fields, PROMOTION_POLICY.kind)
    return _object(PROMOTION_POLICY.kind, name or kube_name(policy.policy_id), namespace, wire)
