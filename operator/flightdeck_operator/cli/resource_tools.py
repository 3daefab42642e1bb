"""CLI commands that turn the reference's files into custom resources.

``release register|checksum|verify``, ``pricing import`` and ``policy apply``: the reference CLI's
workflow (flightdeck-behaviour 1.2, 1.3, 1.7, 1.13) against the Kubernetes API. ``approve``
creates a PromotionApproval for a request awaiting approval (its uid and decision digest read
from the cluster, the approver's identity stamped by the API server). Registered on the
``flightdeck-operator`` group by :func:`register`; every cluster call goes through
:class:`~flightdeck_operator.kube.gateway.KubeGateway` (imported lazily, so ``--help`` stays fast).

Errors are one line, ``Error: <message>`` on stderr, exit 1; ``release verify`` exits 2 on a
checksum mismatch, as the reference does.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, ParamSpec, TypeVar

import click
import yaml
from pydantic import BaseModel, ValidationError

from flightdeck_operator.api.v1alpha1 import (
    AGENT_RELEASE,
    API_VERSION,
    PRICING_TABLE,
    PROMOTION_APPROVAL,
    PROMOTION_POLICY,
    PROMOTION_REQUEST,
    AgentReleaseSpec,
    PricingTableSpec,
    PromotionPolicySpec,
)
from flightdeck_operator.cli.reference_files import (
    PolicyFile,
    PricingFile,
    ReferenceFileError,
    ReleaseArtifact,
    agent_release,
    load_yaml,
    parse,
    policy_object,
    pricing_table_object,
    release_file,
)
from flightdeck_operator.engine.bundle import bundle_checksum

if TYPE_CHECKING:
    from flightdeck_operator.kube.gateway import KubeGateway

__all__ = ["register"]

# The name the API server records in managedFields for our writes; records.py takes it as the
# ledger's actor for policy and pricing changes.
FIELD_MANAGER: Final = "flightdeck-cli"
# records.py copies this annotation into the ledger entry of a policy or pricing change.
CHANGE_REASON_ANNOTATION: Final = "flightdeck.dev/change-reason"
EXIT_ERROR: Final = 1
EXIT_MISMATCH: Final = 2  # reference `release verify`: the bundle differs from what was registered
CONFLICT_ATTEMPTS: Final = 5

P = ParamSpec("P")
R = TypeVar("R")


def register(main: click.Group) -> None:
    """Add the ``release``, ``pricing`` and ``policy`` command groups to ``main``."""
    for group in (release, pricing, policy):
        main.add_command(group)
    main.add_command(approve)


# -- shared plumbing ------------------------------------------------------------------------------


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn every expected failure into one ``Error:`` line and exit 1 (no tracebacks)."""
    from urllib3.exceptions import HTTPError

    from flightdeck_operator.kube.errors import GatewayError, KubeconfigError

    try:
        yield
    except ReferenceFileError as error:
        fail(str(error))
    except GatewayError as error:
        fail(str(error))
    except KubeconfigError as error:
        fail(f"no usable kubeconfig ({error}); pass --kubeconfig or set $KUBECONFIG")
    except HTTPError as error:
        reason = getattr(error, "reason", None) or error
        fail(f"cannot reach the Kubernetes API server: {reason}")


def clear_errors(command: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _clear_errors():
            return command(*args, **kwargs)
        raise AssertionError("unreachable")  # fail() exits; keeps mypy's return analysis happy

    return wrapper


def cluster_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--namespace``/``-n`` and ``--kubeconfig``, as kubectl spells them."""
    command = click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False),
        default=None,
        help="Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).",
    )(command)
    return click.option(
        "-n",
        "--namespace",
        default=None,
        help="Namespace of the object (default: the kubeconfig context's namespace, else default).",
    )(command)


def _gateway(kubeconfig: str | None) -> KubeGateway:
    from flightdeck_operator.kube.gateway import KubeGateway, load_api_client

    return KubeGateway(load_api_client(kubeconfig))


def _namespace(namespace: str | None, kubeconfig: str | None) -> str:
    from flightdeck_operator.kube.gateway import default_namespace

    return namespace or default_namespace(kubeconfig)


def _print_yaml(body: Mapping[str, Any]) -> None:
    click.echo(yaml.safe_dump(dict(body), sort_keys=False), nl=False)


def retry_on_conflict(attempt: Callable[[], R]) -> R:
    """Run ``attempt`` again (it re-reads what it changes) when the object changed in between:
    the operator writes its own bookkeeping annotations to the same objects."""
    from flightdeck_operator.kube.errors import Conflict

    for _ in range(CONFLICT_ATTEMPTS - 1):
        try:
            return attempt()
        except Conflict:
            continue
    return attempt()


def same_spec(model: type[BaseModel], stored: Any, wanted: Mapping[str, Any]) -> bool:
    """Whether a stored spec means the same as ours (compared as models: schema defaults the API
    server filled in, or a field spelt differently, do not count as a change)."""
    try:
        return model.model_validate(stored or {}) == model.model_validate(wanted)
    except ValidationError:
        return False


def _with_reason(metadata: Mapping[str, Any], reason: str | None) -> dict[str, Any]:
    """``metadata`` with the change-reason annotation set to ``reason``, or removed: a reason left
    over from an earlier change must not be recorded against this one."""
    annotations = dict(metadata.get("annotations") or {})
    if reason:
        annotations[CHANGE_REASON_ANNOTATION] = reason
    else:
        annotations.pop(CHANGE_REASON_ANNOTATION, None)
    return {**metadata, "annotations": annotations}


# -- release ------------------------------------------------------------------------------------------


@click.group()
def release() -> None:
    """Register release bundles as AgentReleases and check them against the cluster."""


@release.command("register")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="AgentRelease name (default: <metadata.name>-<metadata.version>).")
@cluster_options
@click.option(
    "--apply/--dry-run",
    "apply",
    default=True,
    show_default=True,
    help="Create the AgentRelease, or only print it as YAML (no cluster access).",
)
@clear_errors
def release_register(
    bundle: Path, name: str | None, namespace: str | None, kubeconfig: str | None, apply: bool
) -> None:
    """Hash BUNDLE and create its AgentRelease.

    BUNDLE is a release directory holding release.yaml (every file counts towards the checksum) or
    a single release.yaml. The checksum is the reference algorithm: SHA-256 over the sorted files,
    text line endings normalised, .git and __pycache__ and symlinks skipped.

    \b
    Examples:
      flightdeck-operator release register ./support-agent -n prod
      flightdeck-operator release register ./support-agent --dry-run | kubectl apply -f -
    """
    artifact_path = release_file(bundle)
    artifact = parse(ReleaseArtifact, load_yaml(artifact_path), str(artifact_path))
    checksum = bundle_checksum(bundle)
    if not apply:
        _print_yaml(agent_release(artifact, checksum, name=name, namespace=namespace))
        return
    target = _namespace(namespace, kubeconfig)
    body = agent_release(artifact, checksum, name=name, namespace=target)
    gateway = _gateway(kubeconfig)
    object_name = body["metadata"]["name"]
    existing = gateway.find(AGENT_RELEASE.plural, target, object_name)
    if existing is None:
        gateway.create(AGENT_RELEASE.plural, target, body, field_manager=FIELD_MANAGER)
        click.echo(f"Registered AgentRelease {target}/{object_name}")
    elif same_spec(AgentReleaseSpec, existing.get("spec"), body["spec"]):
        click.echo(f"AgentRelease {target}/{object_name} is already registered with this content")
    else:
        fail(
            f"AgentRelease {target}/{object_name} already exists with checksum "
            f"{(existing.get('spec') or {}).get('checksum')} and releases are immutable; "
            "register this bundle under a new --name"
        )
    click.echo(f"  sha256={checksum}")


@release.command("checksum")
@click.argument("bundle", type=click.Path(path_type=Path))
@clear_errors
def release_checksum(bundle: Path) -> None:
    """Print the reference checksum of BUNDLE (a directory or a single file)."""
    if not bundle.exists():
        fail(f"Release artifact not found: {bundle}")
    click.echo(bundle_checksum(bundle))


@release.command("verify")
@click.argument("name")
@click.option(
    "--path",
    "bundle",
    required=True,
    type=click.Path(path_type=Path),
    help="The bundle on disk to compare with the registered checksum.",
)
@cluster_options
@clear_errors
def release_verify(name: str, bundle: Path, namespace: str | None, kubeconfig: str | None) -> None:
    """Recompute the checksum of --path and compare it with AgentRelease NAME (exit 2 on a mismatch)."""
    if not bundle.exists():
        fail(f"Release artifact not found: {bundle}")
    target = _namespace(namespace, kubeconfig)
    existing = _gateway(kubeconfig).find(AGENT_RELEASE.plural, target, name)
    if existing is None:
        fail(f"Unknown release: {name}")
    stored = str((existing.get("spec") or {}).get("checksum"))
    recomputed = bundle_checksum(bundle)
    if stored == recomputed:
        click.echo(f"OK: checksum matches for {name}")
        click.echo(f"  sha256={recomputed}")
        return
    click.echo(f"CHECKSUM MISMATCH for {name}", err=True)
    click.echo(f"  stored:     {stored}", err=True)
    click.echo(f"  recomputed: {recomputed}", err=True)
    click.echo("Disk content differs from registration (files, line endings, or hashing rules).", err=True)
    sys.exit(EXIT_MISMATCH)


# -- pricing ------------------------------------------------------------------------------------------


@click.group()
def pricing() -> None:
    """Import reference pricing files as PricingTables (USD per 1,000 tokens)."""


@pricing.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--replace", is_flag=True, help="Replace the entries of an existing table (needs --reason).")
@click.option(
    "--reason", default=None, help="Why the table changes; recorded with the change in the audit ledger."
)
@click.option("--name", default=None, help="PricingTable name (default: <provider>-<pricing_version>).")
@cluster_options
@click.option("--dry-run", is_flag=True, help="Print the PricingTable as YAML; no cluster access.")
@clear_errors
def pricing_import(
    file: Path,
    replace: bool,
    reason: str | None,
    name: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    dry_run: bool,
) -> None:
    """Create a PricingTable from a reference pricing FILE.

    Tables are immutable by default: importing a (provider, pricing_version) that already has a
    table in the namespace fails unless --replace is given, and --replace needs --reason. The
    operator records every import and replacement, with its reason, in the audit ledger.

    \b
    FILE (reference format):
      provider: openai
      pricing_version: "2026-05"
      entries:
        - model: gpt-4o-mini
          input_usd_per_1k_tokens: 0.00015
          output_usd_per_1k_tokens: 0.0006
          cached_input_usd_per_1k_tokens: 0.000075   # optional
    """
    from flightdeck_operator.kube.errors import Conflict

    reason = (reason or "").strip() or None
    if replace and not reason:
        fail("--reason is required when using --replace for pricing imports.")
    table = parse(PricingFile, load_yaml(file), str(file))
    if dry_run:
        _print_yaml(pricing_table_object(table, name=name, namespace=namespace))
        return
    target = _namespace(namespace, kubeconfig)
    body = pricing_table_object(table, name=name, namespace=target)
    gateway = _gateway(kubeconfig)
    existing = next(
        (
            item
            for item in gateway.list_objects(PRICING_TABLE.plural, target)
            if (item.get("spec") or {}).get("provider") == body["spec"]["provider"]
            and (item.get("spec") or {}).get("pricingVersion") == body["spec"]["pricingVersion"]
        ),
        None,
    )
    if existing is None:
        body["metadata"] = _with_reason(body["metadata"], reason)
        try:
            gateway.create(PRICING_TABLE.plural, target, body, field_manager=FIELD_MANAGER)
        except Conflict as error:
            fail(f"{error}; choose another --name")
        click.echo(f"Imported {table.key} as PricingTable {target}/{body['metadata']['name']}")
        return
    existing_name = existing["metadata"]["name"]
    if not replace:
        fail(f"Pricing table already exists for {table.key}. Use --replace to override.")

    def replace_entries() -> str:
        current = gateway.get(PRICING_TABLE.plural, target, existing_name)
        if same_spec(PricingTableSpec, current.get("spec"), body["spec"]):
            return f"Unchanged {table.key}: PricingTable {target}/{existing_name} has these entries already"
        gateway.patch(
            PRICING_TABLE.plural,
            target,
            existing_name,
            {
                # Precondition: replace exactly the entries compared above.
                "metadata": {
                    "resourceVersion": current["metadata"]["resourceVersion"],
                    "annotations": {CHANGE_REASON_ANNOTATION: reason},
                },
                "spec": {"entries": body["spec"]["entries"]},
            },
            field_manager=FIELD_MANAGER,
        )
        return f"Replaced {table.key} in PricingTable {target}/{existing_name}"

    click.echo(retry_on_conflict(replace_entries))


# -- policy -------------------------------------------------------------------------------------------


@click.group()
def policy() -> None:
    """Apply reference policy files as PromotionPolicies."""


@policy.command("apply")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="PromotionPolicy name (default: policy_id).")
@click.option(
    "--reason", default=None, help="Why the policy changes; recorded with the change in the audit ledger."
)
@cluster_options
@click.option("--dry-run", is_flag=True, help="Print the PromotionPolicy as YAML; no cluster access.")
@clear_errors
def policy_apply(
    file: Path,
    name: str | None,
    reason: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    dry_run: bool,
) -> None:
    """Create or update a PromotionPolicy from a reference policy FILE.

    Fields keep the reference's meaning: an unset max_* disables that check, an unset min_*
    inherits the operator default (500/500/50), and 0 means "no minimum". The whole spec is
    replaced, so a field removed from FILE is removed from the policy. Every change is recorded
    in the audit ledger by the operator. Point a ReleasePointer at it with spec.policyRef.name.

    \b
    FILE (reference format):
      policy_id: support-gate
      max_cost_per_run_usd: 0.02
      max_latency_ms: 4000
      max_error_rate: 0.05
      min_candidate_runs: 200
      min_baseline_runs: 200
      min_low_runs: 50
      require_high_diff_confidence: true
    """
    reason = (reason or "").strip() or None
    parsed = parse(PolicyFile, load_yaml(file), str(file))
    if dry_run:
        _print_yaml(policy_object(parsed, name=name, namespace=namespace))
        return
    target = _namespace(namespace, kubeconfig)
    body = policy_object(parsed, name=name, namespace=target)
    object_name = body["metadata"]["name"]
    gateway = _gateway(kubeconfig)

    def apply_policy() -> str:
        existing = gateway.find(PROMOTION_POLICY.plural, target, object_name)
        if existing is None:
            body["metadata"] = _with_reason(body["metadata"], reason)
            gateway.create(PROMOTION_POLICY.plural, target, body, field_manager=FIELD_MANAGER)
            return "created"
        if same_spec(PromotionPolicySpec, existing.get("spec"), body["spec"]):
            return "unchanged"
        # PUT with the resourceVersion just read: the whole spec is replaced, nothing merged.
        gateway.replace(
            PROMOTION_POLICY.plural,
            {**existing, "metadata": _with_reason(existing["metadata"], reason), "spec": body["spec"]},
            field_manager=FIELD_MANAGER,
        )
        return "configured"

    outcome = retry_on_conflict(apply_policy)
    click.echo(f"Set policy {parsed.policy_id}: PromotionPolicy {target}/{object_name} {outcome}")


# -- approve ------------------------------------------------------------------------------------------

APPROVAL_WAIT_SECONDS: Final = 30.0


@click.command()
@click.argument("request")
@click.option("--reason", required=True, help="Why you approve (recorded in the audit ledger).")
@click.option("--name", default=None, help="PromotionApproval name (default: generated from REQUEST).")
@click.option("--no-wait", is_flag=True, help="Do not wait for the operator's verdict.")
@cluster_options
@clear_errors
def approve(
    request: str, reason: str, name: str | None, no_wait: bool, namespace: str | None, kubeconfig: str | None
) -> None:
    """Approve the decision PromotionRequest REQUEST awaits (phase AwaitingApproval).

    The approval names the request's uid and the decision digest in its status.approval, so it
    approves exactly what you see now: if the policy, the pointer or the evidence verdict changes,
    it goes stale. Your identity is the one the API server authenticates (your kubeconfig user),
    and you cannot approve a request you created. Exit 1 unless the approval is Accepted.

    RBAC: get promotionrequests; create, get, list and watch promotionapprovals (or --no-wait).
    """
    from flightdeck_operator.kube.errors import NotFound

    if not reason.strip():
        fail("--reason must not be blank")
    target = _namespace(namespace, kubeconfig)
    gateway = _gateway(kubeconfig)
    try:
        body = gateway.get(PROMOTION_REQUEST.plural, target, request)
    except NotFound:
        fail(f"PromotionRequest {target}/{request} not found")
    status = body.get("status") or {}
    digest = (status.get("approval") or {}).get("decisionDigest")
    if status.get("phase") != "AwaitingApproval" or not digest:
        fail(f"PromotionRequest {target}/{request} is not awaiting approval (phase {status.get('phase')})")
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": f"{request}-"}
    created = gateway.create(
        PROMOTION_APPROVAL.plural,
        target,
        {
            "apiVersion": API_VERSION,
            "kind": PROMOTION_APPROVAL.kind,
            "metadata": metadata,
            "spec": {
                "request": {"name": request, "uid": body["metadata"]["uid"]},
                "decisionDigest": digest,
                "reason": reason,
            },
        },
        field_manager=FIELD_MANAGER,
    )
    approval_name = created["metadata"]["name"]
    click.echo(f"PromotionApproval {target}/{approval_name} created for decision {digest[:12]}")
    if no_wait:
        return
    judged = gateway.wait_for(
        PROMOTION_APPROVAL.plural,
        target,
        approval_name,
        lambda obj: bool((obj.get("status") or {}).get("phase")),
        timeout=APPROVAL_WAIT_SECONDS,
        resource_version=created["metadata"].get("resourceVersion"),
    )
    if judged is None:
        fail(f"no verdict on PromotionApproval {target}/{approval_name} within {APPROVAL_WAIT_SECONDS:.0f}s")
    verdict = judged["status"]
    click.echo(f"{verdict['phase']}: {verdict.get('message', '')}")
    if verdict["phase"] != "Accepted":
        sys.exit(EXIT_ERROR)
