"""What the store adds to a side's evidence for statistical gates: second moments per model and the
latency histogram, all mergeable by addition (hourly buckets, ragged window edges, tenants)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .latency_bins import Histogram, merge_histograms
from .means import TokenMoments


@dataclass(frozen=True, slots=True)
class ModelMoments:
    """One (agent, model)'s token sums and products, and the sum of squared latencies (ms²).

    Runs, failures and the latency sum and count are the evidence's ``ModelAggregate``."""

    agent_id: str
    model: str
    tokens: TokenMoments = field(default_factory=TokenMoments)
    latency_ms_sq: float = 0.0

    def __add__(self, other: ModelMoments) -> ModelMoments:
        if (self.agent_id, self.model) != (other.agent_id, other.model):
            raise ValueError("only moments of the same (agent_id, model) can be added")
        return ModelMoments(
            self.agent_id, self.model, self.tokens + other.tokens, self.latency_ms_sq + other.latency_ms_sq
        )


@dataclass(frozen=True, slots=True)
class SideMoments:
    models: tuple[ModelMoments, ...] = ()
    latency_bins: Histogram = field(default_factory=dict)

    @classmethod
    def merge(cls, parts: Iterable[ModelMoments], histograms: Iterable[Histogram]) -> SideMoments:
        """Add partial moments per (agent, model) (sorted by that key) and histograms per bin."""
        merged: dict[tuple[str, str], ModelMoments] = {}
        for part in parts:
            key = (part.agent_id, part.model)
            merged[key] = merged[key] + part if key in merged else part
        models = tuple(merged[key] for key in sorted(merged) if merged[key].tokens.runs)
        return cls(models=models, latency_bins=merge_histograms(*histograms))
