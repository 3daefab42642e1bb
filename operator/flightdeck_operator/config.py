"""Operator and sidecar configuration: one documented settings object, read from flags or the
environment (prefix ``FLIGHTDECK_``)."""

from __future__ import annotations

import tempfile
from enum import StrEnum
from pathlib import Path

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
    recheck_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "How often a waiting request is re-evaluated: awaiting evidence (new runs may lift the "
            "confidence) or approval (a changed policy or verdict makes approvals stale)."
        ),
    )
    max_workers: int = Field(default=8, ge=1, description="Threads for blocking store and API calls.")
    sqlite_cache_mib: int = Field(
        default=4,
        ge=1,
        description=(
            "SQLite page cache per connection (one per worker thread), in MiB. It fills up as the "
            "ledger grows, so it bounds the operator's memory; the sidecar keeps 64 MiB for ingestion."
        ),
    )
    # Leader election (docs/operations.md, "High availability"): client-go's algorithm and defaults.
    leader_election: bool = Field(
        default=True,
        description=(
            "Elect the deciding replica with a coordination.k8s.io Lease and fence the ledger with its "
            "epoch; false: this process decides as soon as it starts (one replica only, no fence)."
        ),
    )
    lease_name: str = Field(default="flightdeck-operator", min_length=1, description="Name of the Lease.")
    lease_namespace: str | None = Field(
        default=None,
        description=(
            "Namespace of the Lease; default: the first watched namespace, else the pod's own "
            "(or the kubeconfig context's) namespace."
        ),
    )
    leader_identity: str | None = Field(
        default=None,
        description=(
            "Prefix of this replica's identity in the Lease (the chart passes the pod name); a random "
            "suffix keeps two processes with one name apart. Default: the host name."
        ),
    )
    lease_duration_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long a standby waits without seeing a renewal before taking over.",
    )
    renew_deadline_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long the leader keeps trying to renew before it gives up (and exits).",
    )
    retry_period_seconds: float = Field(
        default=2.0, gt=0, description="How often the leader renews and a standby looks at the Lease."
    )
    # Retention of decided PromotionRequests (docs/operations.md, "Retention"): the ledger keeps
    # every decision; a request re-created with the same name and spec is replayed from it.
    retention_enabled: bool = Field(
        default=True, description="Delete decided PromotionRequests after their TTL (the ledger keeps them)."
    )
    request_ttl_seconds: int = Field(
        default=86_400,
        ge=0,
        description="Seconds after its decision a request is deleted, unless its spec or its policy says otherwise.",
    )
    retain_per_pointer: int = Field(
        default=3,
        ge=0,
        description="The newest decided requests of each pointer kept past their TTL (policy may override).",
    )
    retain_max: int = Field(
        default=2_000,
        ge=0,
        description="Most decided requests kept in all watched namespaces; beyond it the oldest go first (the cap wins).",
    )
    min_decided_age_seconds: int = Field(
        default=600,
        ge=0,
        description="No request is deleted sooner than this after its decision (the cap included).",
    )
    gc_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often retention looks for due requests."
    )
    gc_deletes_per_second: float = Field(
        default=20.0,
        gt=0,
        description="Most deletes per second (each is a fresh read plus a preconditioned delete).",
    )
    # Notifications (docs/notifications.md): the outbox is polled, receivers are retried with a
    # doubling delay between notification_retry_base_seconds and notification_max_backoff_seconds.
    notifications_enabled: bool = Field(
        default=True,
        description=(
            "Deliver NotificationSubscriptions (reads their signing Secrets); false: none is planned or sent."
        ),
    )
    notification_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the ledger is read for new deliveries and due ones are sent.",
    )
    notification_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Time a receiver has to answer one delivery (the reference's 5 s)."
    )
    notification_retry_base_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Delay after the first failed attempt; doubled after each further failure.",
    )
    notification_max_backoff_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Longest delay between attempts: a receiver back after an outage gets its backlog within "
            "this long."
        ),
    )
    notification_concurrency: int = Field(
        default=16, ge=1, description="Subscriptions delivered to at the same time (one connection each)."
    )
    notification_history_days: float = Field(
        default=7.0,
        gt=0,
        description="How long delivered and expired deliveries are kept (the counters stay).",
    )
    # Verification of live releases and pipelines (docs/verification.md).
    verification_tick_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the verification loop looks for pointers whose check is due.",
    )
    verification_min_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Floor on a policy's verification interval: a live release is never checked more often "
            "than this, whatever the policy says."
        ),
    )
    verification_status_refresh_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "A pointer's status.verification is written when what it says changes, and at least this "
            "often otherwise (lastCheckedAt)."
        ),
    )
    automation_create_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Testing only: a pause between ledgering an automatic action and creating its "
            "PromotionRequest, so a test can kill the operator in between. Keep 0."
        ),
    )
    # The admission webhook (docs/security.md). Lists from the environment are JSON arrays, e.g.
    # FLIGHTDECK_WEBHOOK_HOSTS='["flightdeck-webhook.flightdeck.svc"]'.
    webhook_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="HTTPS port of the admission webhook; unset disables the webhook.",
    )
    webhook_bind_address: str = Field(default="0.0.0.0", description="Address the webhook listens on.")
    webhook_hosts: tuple[str, ...] = Field(
        default=("localhost", "127.0.0.1"),
        min_length=1,
        description=(
            "Names the API server uses to reach the webhook: the subject alternative names of the "
            "generated serving certificate (IP literals become IP SANs)."
        ),
    )
    webhook_cert_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "flightdeck-webhook",
        description=(
            "Directory of ca.crt, tls.crt and tls.key. Reused while valid for the hosts and not "
            "expiring within 30 days, else a new CA and certificate are generated there."
        ),
    )
    webhook_configuration: str | None = Field(
        default=None,
        description=(
            "MutatingWebhookConfiguration whose webhooks' caBundle the operator keeps equal to its "
            "CA (checked at start and every minute); unset: the caBundle is managed elsewhere."
        ),
    )
    webhook_delegates: tuple[str, ...] = Field(
        default=(),
        description=(
            "Usernames trusted to create requests and approvals on behalf of the identity they "
            "supply in spec.requestedBy / spec.approver (the sidecar's ServiceAccount)."
        ),
    )


class AuthMode(StrEnum):
    """How the sidecar authenticates HTTP callers (see docs/http-api.md)."""

    # Bearer tokens checked with TokenReview, then RBAC through SubjectAccessReview.
    KUBERNETES = "kubernetes"
    # One static bearer token read from a file (e.g. a mounted Secret), compared in constant time.
    TOKEN = "token"
    # No authentication; only allowed when listening on a loopback address (local development).
    NONE = "none"


class SidecarSettings(BaseSettings):
    """Settings of ``flightdeck-operator sidecar``. Every field can be set as ``FLIGHTDECK_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FLIGHTDECK_", frozen=True, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8765, ge=0, le=65535, description="TCP port (the reference's default).")
    store: str = Field(
        default="flightdeck.db",
        description="Run-event and ledger store shared with the operator: SQLite path or postgresql:// URL.",
    )
    namespace: str = Field(
        default="default",
        min_length=1,
        max_length=63,
        description="Namespace HTTP requests act in: releases, pointers and PromotionRequests live there.",
    )
    kubeconfig: str | None = Field(
        default=None, description="Kubeconfig path (default: in-cluster config, then $KUBECONFIG)."
    )
    auth: AuthMode = Field(default=AuthMode.KUBERNETES, description="How callers are authenticated.")
    token_file: str | None = Field(
        default=None, description="File holding the static bearer token (auth mode 'token')."
    )
    auth_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long TokenReview and SubjectAccessReview answers are reused (0 disables).",
    )
    decision_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long promote/rollback wait for the operator's decision before answering 504.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest accepted request body (413 above it)."
    )
    max_events_per_batch: int = Field(
        default=10_000, ge=1, description="Most run events in one POST /v1/events (413 above it)."
    )
    default_environment: str = Field(
        default="local",
        description="Environment a diff uses when the body names none (the reference's default_environment).",
    )
    local_identity: bool = Field(
        default=False,
        description=(
            "The process acts with its user's own kubeconfig identity (``flightdeck-operator "
            "dashboard``): with --auth none on loopback, approvals are attributed by the API server "
            "to that identity. Never for a shared sidecar, whose identity is its ServiceAccount."
        ),
    )
    min_candidate_runs: int = Field(
        default=500, ge=0, description="Default candidate sample for HIGH confidence (as the operator)."
    )
    min_baseline_runs: int = Field(
        default=500, ge=0, description="Default baseline sample for HIGH confidence (as the operator)."
    )
    min_low_runs: int = Field(default=50, ge=0, description="Default LOW floor (as the operator).")
    keep_alive_seconds: float = Field(
        default=5.0, gt=0, description="Idle keep-alive connections are closed after this long."
    )
    # OTLP/HTTP trace ingestion (POST /v1/traces, docs/opentelemetry.md).
    otlp_enabled: bool = Field(default=True, description="Serve POST /v1/traces (OTLP/HTTP).")
    otlp_max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest OTLP body once decompressed (413 above it; gzip bombs stop there).",
    )
    otlp_settle_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "A trace whose root span has arrived is turned into run events once no new span of it "
            "arrived for this long (children are exported before their parents, other services later)."
        ),
    )
    otlp_max_trace_wait_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A trace is finalised with what has arrived this long after its first span.",
    )
    otlp_max_staged_traces: int = Field(
        default=50_000,
        ge=1,
        description="Traces waiting to be finalised; beyond this POST /v1/traces answers 503 + Retry-After.",
    )
    otlp_max_spans_per_trace: int = Field(
        default=10_000, ge=1, description="Spans staged per trace; more are rejected (too_many_spans)."
    )
    otlp_run_operations: tuple[str, ...] = Field(
        default=("invoke_agent", "invoke_workflow", "handle_conversation_turn"),
        min_length=1,
        description="gen_ai.operation.name values whose outermost span is an agent run.",
    )
    otlp_root_fallback: bool = Field(
        default=True, description="A trace with model calls but no agent span: its root span is the run."
    )
    otlp_release_attribute: str = Field(
        default="flightdeck.release.id",
        min_length=1,
        description="Span or resource attribute naming the AgentRelease a run measures.",
    )
    otlp_version_fallback: bool = Field(
        default=True,
        description="Without the release attribute, match service.version to the agent's AgentReleases.",
    )
    otlp_default_environment: str | None = Field(
        default=None,
        description="Environment of runs without deployment.environment.name; unset: they are rejected.",
    )
    otlp_finalize_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often staged traces are checked for being due."
    )
    otlp_retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After of a 503 when staging is full or the store is busy."
    )
    otlp_late_span_memory_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long finalised trace ids are remembered, so late spans are counted, not re-staged.",
    )
    otlp_release_refresh_seconds: float = Field(
        default=10.0, gt=0, description="How long the list of AgentReleases used for mapping is reused."
    )
    graceful_shutdown_seconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "On SIGTERM, how long in-flight requests may still run; default: the decision timeout "
            "plus 5 s, so a waiting promote still gets its answer."
        ),
    )
