"""Operator and sidecar configuration: one documented settings object, read from flags or the
environment (prefix ``FLIGHTDECK_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Settings of ``flightdeck-operator run``. Every field can be set as ``FLIGHTDECK_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FLIGHTDECK_", frozen=True, extra="ignore")

    store: str = Field(
        default="flightdeck.db",
        description="Run-event and ledger store: a SQLite path (default) or a postgresql:// URL.",
    )
    namespaces: tuple[str, ...] = Field(
        default=(), description="Namespaces to watch; empty means all namespaces (cluster-wide)."
    )
    min_candidate_runs: int = Field(
        default=500, ge=0, description="Default candidate sample for HIGH confidence (policy may override)."
    )
    min_baseline_runs: int = Field(
        default=500, ge=0, description="Default baseline sample for HIGH confidence (policy may override)."
    )
    min_low_runs: int = Field(default=50, ge=0, description="Default LOW floor (policy may override).")
    dependency_grace_seconds: float = Field(
        default=15.0,
        ge=0,
        description=(
            "How long a request whose pointer, release, policy or pricing table is not visible yet "
            "is retried before it fails (objects applied together arrive in any order)."
        ),
    )
    pointer_resync_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often each pointer is compared with the ledger (drift repair, missed requests).",
    )
    history_limit_default: int = Field(default=10, ge=1, description="Pointer history length when unset.")
    max_workers: int = Field(default=8, ge=1, description="Threads for blocking store and API calls.")
