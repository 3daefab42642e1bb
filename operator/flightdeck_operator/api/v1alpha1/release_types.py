"""AgentRelease and PricingTable: what is released, and what its tokens cost."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import (
    Field,
    StringConstraints,
    model_validator,
)

from flightdeck_operator.api.v1alpha1.common import (
    ArtifactRef,
    Checksum,
    Identifier,
    KubeName,
    ModelName,
    ObservedStatus,
    Seq,
    SpecBase,
    Text,
    UsdRate,
    VersionString,
)

# --- AgentRelease -----------------------------------------------------------------------------------


class RuntimeSpec(SpecBase):
    provider: Identifier
    model: ModelName
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class PricingReference(SpecBase):
    """Which PricingTable prices this release: matched on (provider, pricingVersion)."""

    provider: Identifier
    pricing_version: Identifier


class PromptRefs(SpecBase):
    system_ref: ArtifactRef
    template_refs: Annotated[list[ArtifactRef], Field(max_length=64)] = Field(default_factory=list)


class ToolRefs(SpecBase):
    manifest_ref: ArtifactRef | None = None
    tool_names: Annotated[list[ModelName], Field(max_length=128)] = Field(default_factory=list)


class AgentReleaseSpec(SpecBase):
    """One immutable release of an agent (the reference ``release.yaml``)."""

    agent_id: Identifier
    version: VersionString
    description: Text | None = None
    runtime: RuntimeSpec
    pricing_reference: PricingReference
    checksum: Checksum
    tags: Annotated[dict[str, Annotated[str, StringConstraints(max_length=256)]], Field(max_length=64)] = (
        Field(default_factory=dict)
    )
    prompts: PromptRefs | None = None
    tools: ToolRefs | None = None


class AgentReleaseStatus(ObservedStatus):
    # Name of the PricingTable that pricingReference resolved to (Ready=True, PricingResolved).
    pricing_table: KubeName | None = None


# --- PricingTable -----------------------------------------------------------------------------------


class PricingEntry(SpecBase):
    """USD per 1,000 tokens for one model."""

    model: ModelName
    input_usd_per_1k_tokens: UsdRate = Field(alias="inputUsdPer1kTokens")
    output_usd_per_1k_tokens: UsdRate = Field(alias="outputUsdPer1kTokens")
    cached_input_usd_per_1k_tokens: UsdRate | None = Field(default=None, alias="cachedInputUsdPer1kTokens")


class PricingTableSpec(SpecBase):
    provider: Identifier
    pricing_version: Identifier
    entries: Annotated[list[PricingEntry], Field(min_length=1, max_length=256)]

    @model_validator(mode="after")
    def _models_unique(self) -> Self:
        # Mirrors the CRD's list-map key: one entry per model.
        seen: set[str] = set()
        for entry in self.entries:
            if entry.model in seen:
                raise ValueError(f"duplicate pricing entry for model {entry.model!r}")
            seen.add(entry.model)
        return self

    def entry(self, model: str) -> PricingEntry | None:
        return next((e for e in self.entries if e.model == model), None)


class RecordedStatus(ObservedStatus):
    """Status of the kinds whose every change is appended to the ledger."""

    # Ledger entry that recorded the current spec, and the SHA-256 of its canonical JSON.
    ledger_seq: Seq | None = None
    spec_hash: Checksum | None = None


class PricingTableStatus(RecordedStatus):
    pass
