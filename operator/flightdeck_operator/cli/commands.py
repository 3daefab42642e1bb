"""CLI commands that share the HTTP API's code paths: ``sidecar``, ``promote``, ``rollback``,
``promote-request``, ``promote-confirm``, ``ingest`` and ``diff``.

``promote``/``rollback`` create a PromotionRequest and wait for the operator's decision exactly as
``POST /v1/promote`` does (``flightdeck_operator.actions.promotions``), and print what the reference CLI
prints; ``promote-request``/``promote-confirm`` are ``POST /v1/promote/request`` and
``/v1/promote/confirm`` (``flightdeck_operator.actions.approval_workflow``). ``ingest`` and ``diff`` use the same validation and diff assembly as the HTTP routes.
Registered on the ``flightdeck-operator`` group by :func:`register`.

Errors are one line, ``Error: <message>`` on stderr, exit 1 (a policy block too, as the reference).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import click

from flightdeck_operator.engine.models import DiffResult, PromotionAction
from flightdeck_operator.engine.statistics.report import StatisticsReport

if TYPE_CHECKING:
    from flightdeck_operator.actions.promotions import ActionInput, ActionResult, Requester
    from flightdeck_operator.kube.gateway import KubeGateway

__all__ = ["register"]

EXIT_ERROR: Final = 1
DEFAULT_DECISION_TIMEOUT_S: Final = 30.0
STORE_HELP: Final = "Store: a SQLite path or a postgresql:// URL [env FLIGHTDECK_STORE]."


def register(main: click.Group) -> None:
    for command in (sidecar, promote, rollback, promote_request, promote_confirm, ingest, diff):
        main.add_command(command)


def fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def cli_actor() -> str:
    """The reference CLI's actor: $USER, then $USERNAME, then "unknown"."""
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def cluster_gateway(kubeconfig: str | None) -> KubeGateway:
    from flightdeck_operator.kube.errors import KubeconfigError
    from flightdeck_operator.kube.gateway import KubeGateway, load_api_client

    try:
        return KubeGateway(load_api_client(kubeconfig))
    except KubeconfigError as error:
        fail(f"no usable kubeconfig ({error}); pass --kubeconfig or set $KUBECONFIG")


def target_namespace(namespace: str | None, kubeconfig: str | None) -> str:
    from flightdeck_operator.kube.gateway import default_namespace

    return namespace or default_namespace(kubeconfig)


namespace_option = click.option(
    "-n", "--namespace", default=None, help="Namespace (default: the kubeconfig context's, else default)."
)
kubeconfig_option = click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), default=None, help="Kubeconfig file."
)
store_option = click.option(
    "--store", envvar="FLIGHTDECK_STORE", default="flightdeck.db", show_default=True, help=STORE_HELP
)


# --- sidecar ----------------------------------------------------------------------------------------


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="TCP port [default: 8765].")
@click.option("--store", default=None, help=STORE_HELP)
@click.option(
    "--namespace",
    default=None,
    help="Namespace HTTP requests act in [env FLIGHTDECK_NAMESPACE; default: default].",
)
@kubeconfig_option
@click.option(
    "--auth",
    type=click.Choice(["kubernetes", "token", "none"]),
    default=None,
    help="Caller authentication [default: kubernetes]. 'none' only on loopback.",
)
@click.option(
    "--token-file", type=click.Path(dir_okay=False), default=None, help="Static token (--auth token)."
)
@click.option(
    "--auth-cache-seconds", type=float, default=None, help="Reuse token/RBAC reviews [default: 10]."
)
@click.option(
    "--decision-timeout", type=float, default=None, help="Seconds to wait for a decision [default: 30]."
)
@click.option("--max-body-bytes", type=int, default=None, help="Largest request body [default: 16 MiB].")
@click.option("--max-events-per-batch", type=int, default=None, help="Most events per POST [default: 10000].")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request.")
def sidecar(
    host: str | None,
    port: int | None,
    store: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    auth: str | None,
    token_file: str | None,
    auth_cache_seconds: float | None,
    decision_timeout: float | None,
    max_body_bytes: int | None,
    max_events_per_batch: int | None,
    access_log: bool,
) -> None:
    """Serve the FlightDeck HTTP API for one namespace (promote, rollback, events, diff, reads)."""
    import logging

    from pydantic import ValidationError

    from flightdeck_operator.config import SidecarSettings
    from flightdeck_operator.kube.errors import KubeconfigError
    from flightdeck_operator.sidecar.server import SidecarConfigError, serve

    given: dict[str, Any] = {
        "host": host,
        "port": port,
        "store": store,
        "namespace": namespace,
        "kubeconfig": kubeconfig,
        "auth": auth,
        "token_file": token_file,
        "auth_cache_seconds": auth_cache_seconds,
        "decision_timeout_seconds": decision_timeout,
        "max_body_bytes": max_body_bytes,
        "max_events_per_batch": max_events_per_batch,
    }
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # Flags win; unset ones come from FLIGHTDECK_* variables, then the defaults.
        settings = SidecarSettings(**{key: value for key, value in given.items() if value is not None})
        serve(settings, access_log=access_log)
    except ValidationError as error:
        fail(f"invalid sidecar settings: {error}")
    except SidecarConfigError as error:
        fail(str(error))
    except KubeconfigError as error:
        fail(f"no usable kubeconfig for the sidecar's own identity ({error}); pass --kubeconfig")


# --- promote / rollback -----------------------------------------------------------------------------


def _action_options(command: Callable[..., None]) -> Callable[..., None]:
    """RELEASE_ID and the options promote, rollback and promote-request share."""
    for decorator in reversed(
        (
            click.argument("release_id"),
            click.option("--env", "environment", required=True, help="Environment of the ReleasePointer."),
            click.option("--window", required=True, help="Evidence window, e.g. 7d, 24h, 30m."),
            click.option("--reason", required=True, help="Why (recorded in the ledger)."),
            click.option("--actor", default=None, help="Recorded actor [default: $USER]."),
            click.option("--timeout", type=float, default=DEFAULT_DECISION_TIMEOUT_S, show_default=True),
            click.option(
                "--idempotency-key", default=None, help="Retry-safe key: the same key finds the same request."
            ),
            namespace_option,
            kubeconfig_option,
        )
    ):
        command = decorator(command)
    return command


def _action_input(
    action: PromotionAction, release_id: str, environment: str, window: str, reason: str, who: str
) -> tuple[ActionInput, Requester]:
    """The action and who asks (the API server records the kubeconfig's user as the requester)."""
    from flightdeck_operator.actions.promotions import ActionInput, Requester

    return (
        ActionInput(
            action=action,
            release_id=release_id,
            environment=environment,
            window=window,
            reason=reason,
            actor=who,
        ),
        Requester(identity=f"cli:{who}", username=f"cli:{who}"),
    )


def _action_command(action: PromotionAction) -> click.Command:
    verb = "Promote" if action is PromotionAction.PROMOTE else "Roll back to"

    @click.command(name=action.value)
    @_action_options
    def command(
        release_id: str,
        environment: str,
        window: str,
        reason: str,
        actor: str | None,
        timeout: float,
        idempotency_key: str | None,
        namespace: str | None,
        kubeconfig: str | None,
    ) -> None:
        from flightdeck_operator.actions.errors import ActionError
        from flightdeck_operator.actions.promotions import run_action

        action_input, requester = _action_input(
            action, release_id, environment, window, reason, actor or cli_actor()
        )
        gateway = cluster_gateway(kubeconfig)
        try:
            result = run_action(
                gateway,
                target_namespace(namespace, kubeconfig),
                action_input,
                requester,
                timeout=timeout,
                idempotency_key=idempotency_key,
            )
        except ActionError as error:
            fail(error.message)
        finally:
            gateway.api_client.close()
        _print_outcome(result, action)

    command.help = (
        f"{verb} RELEASE_ID in an environment: create a PromotionRequest and wait for its decision."
    )
    return command


promote = _action_command(PromotionAction.PROMOTE)
rollback = _action_command(PromotionAction.ROLLBACK)


def _print_outcome(result: ActionResult, action: PromotionAction = PromotionAction.PROMOTE) -> None:
    """The reference CLI's promote/rollback output; exits 1 unless the pointer moved."""
    from flightdeck_operator.actions.promotions import Verdict

    if result.verdict in (Verdict.FAILED, Verdict.CONFLICT) or result.outcome is None:
        fail(result.message)
    outcome = result.outcome
    if result.verdict is Verdict.PASSED:
        done = "Promoted" if action is PromotionAction.PROMOTE else "Rolled back to"
        click.echo(f"{done} {outcome.release_id} for {outcome.agent_id}/{outcome.environment}")
    click.echo(f"Policy: {'PASS' if outcome.policy.passed else 'FAIL'}")
    for line in outcome.policy.reasons:
        click.echo(f"- {line}")
    if result.verdict is Verdict.BLOCKED:
        fail(result.message.rstrip("."))


# --- the approval workflow --------------------------------------------------------------------------


@click.command(name="promote-request")
@_action_options
def promote_request(
    release_id: str,
    environment: str,
    window: str,
    reason: str,
    actor: str | None,
    timeout: float,
    idempotency_key: str | None,
    namespace: str | None,
    kubeconfig: str | None,
) -> None:
    """Request a promotion that needs approval (the pointer's policy has spec.approval): evaluated
    as a dry run first; prints request_id=<name> and the policy result."""
    from flightdeck_operator.actions.approval_workflow.request import PendingPromotion, request_promotion
    from flightdeck_operator.actions.errors import ActionError

    action_input, requester = _action_input(
        PromotionAction.PROMOTE, release_id, environment, window, reason, actor or cli_actor()
    )
    gateway = cluster_gateway(kubeconfig)
    try:
        result = request_promotion(
            gateway,
            target_namespace(namespace, kubeconfig),
            action_input,
            requester,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )
    except ActionError as error:
        fail(error.message)
    finally:
        gateway.api_client.close()
    if not isinstance(result, PendingPromotion):
        _print_outcome(result)  # decided at once (e.g. concurrencyPolicy Forbid)
        return
    click.echo(f"request_id={result.request.name}")
    click.echo(json.dumps({"policy": result.evaluation.policy.model_dump(mode="json")}, indent=2))


@click.command(name="promote-confirm")
@click.argument("request_id")
@click.option("--approval-reason", required=True, help="Why you approve (recorded in the ledger).")
@click.option("--timeout", type=float, default=DEFAULT_DECISION_TIMEOUT_S, show_default=True)
@click.option(
    "--store",
    envvar="FLIGHTDECK_STORE",
    default=None,
    help="The operator's store, to show a blocked confirm's full outcome [env FLIGHTDECK_STORE].",
)
@namespace_option
@kubeconfig_option
def promote_confirm(
    request_id: str,
    approval_reason: str,
    timeout: float,
    store: str | None,
    namespace: str | None,
    kubeconfig: str | None,
) -> None:
    """Approve a pending request as your kubeconfig identity (a PromotionApproval the operator
    judges); prints the promotion's outcome like `promote`."""
    from flightdeck_operator.actions.approval_workflow.confirm import ApprovalRecorded, confirm_promotion
    from flightdeck_operator.actions.errors import ActionError
    from flightdeck_operator.actions.promotions import Requester
    from flightdeck_operator.store import StoreError, open_store

    gateway = cluster_gateway(kubeconfig)
    who = cli_actor()
    try:
        with contextlib.ExitStack() as stack:
            opened = stack.enter_context(open_store(store)) if store else None
            result = confirm_promotion(
                gateway,
                target_namespace(namespace, kubeconfig),
                request_id,
                approval_reason,
                # The API server names the approver (the webhook stamps the kubeconfig's user).
                Requester(identity=f"cli:{who}", username=f"cli:{who}"),
                timeout=timeout,
                ledger_entry=opened.ledger_entry if opened is not None else None,
                actor=who,
            )
    except (ActionError, StoreError) as error:
        fail(error.message if isinstance(error, ActionError) else str(error))
    finally:
        gateway.api_client.close()
    if isinstance(result, ApprovalRecorded):
        click.echo(
            f"Approved {result.request.name} ({len(result.approved_by)}/{result.required} approvals): "
            f"{result.message}"
        )
        return
    _print_outcome(result)


# --- ingest -----------------------------------------------------------------------------------------


def read_events_file(path: Path) -> list[Any]:
    """A JSON array when the file starts with ``[``, otherwise JSON Lines (blank lines skipped)."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return []
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: invalid JSON: {error}") from None
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a JSON array of run events")
        return items
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number}: invalid JSON: {error}") from None
    return items


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@store_option
def ingest(path: Path, store: str) -> None:
    """Store run events from a JSON array or JSON Lines file (all or nothing; duplicates skipped)."""
    from flightdeck_operator.engine.models import InvalidEventsError, validate_events
    from flightdeck_operator.store import StoreError, open_store

    try:
        events = validate_events(read_events_file(path))
        with open_store(store) as opened:
            inserted = opened.insert_events(events)
    except (InvalidEventsError, ValueError, StoreError, OSError) as error:
        fail(str(error))
    click.echo(f"Inserted {inserted} events")


# --- diff -------------------------------------------------------------------------------------------


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def diff_text(result: DiffResult, baseline: str, candidate: str) -> list[str]:
    """A human summary of the reference diff JSON."""
    m, s, p = result.metrics, result.samples, result.pricing
    pct = "" if m.delta_cost_per_run_pct is None else f", {m.delta_cost_per_run_pct * 100:+.1f}%"
    confidence = s.confidence.value + (f" ({s.confidence_reason})" if s.confidence_reason else "")
    lines = [
        f"Diff {baseline} -> {candidate} over {result.window} (environment {result.filters.environment})",
        f"Samples: baseline {s.baseline_runs} runs, candidate {s.candidate_runs} runs; confidence {confidence}",
        f"Cost per run (USD): {m.baseline_cost_per_run_usd:.6f} -> {m.candidate_cost_per_run_usd:.6f} "
        f"(delta {m.delta_cost_per_run_usd:+.6f}{pct})",
        f"Latency avg (ms): {_number(m.baseline_latency_ms_avg, 2)} -> {_number(m.candidate_latency_ms_avg, 2)} "
        f"(delta {_signed(m.delta_latency_ms_avg, 2)})",
        f"Error rate: {m.baseline_error_rate:.4f} -> {m.candidate_error_rate:.4f} "
        f"(delta {m.delta_error_rate:+.4f})",
    ]
    if p.pricing_or_model_changed:
        lines.append(
            "NOTE: cost delta includes pricing/model assumption changes "
            "(pricing reference and/or model differ)."
        )
        rates = p.prices
        four = (
            rates.baseline_input_usd_per_1k_tokens,
            rates.candidate_input_usd_per_1k_tokens,
            rates.baseline_output_usd_per_1k_tokens,
            rates.candidate_output_usd_per_1k_tokens,
        )
        if all(rate is not None for rate in four):
            lines.append(
                f"Per-1k token prices: input {four[0]:.6f} -> {four[1]:.6f}, "
                f"output {four[2]:.6f} -> {four[3]:.6f}"
            )
    lines += [f"WARNING: {warning}" for warning in p.warnings]
    lines += [f"HINT: {hint}" for hint in p.hints]
    lines.append(f"Policy: {'PASS' if result.policy.passed else 'FAIL'}")
    lines += [f"- {reason}" for reason in result.policy.reasons]
    if result.statistics is not None:
        lines += statistics_text(result.statistics)
    return lines


def statistics_text(report: StatisticsReport) -> list[str]:
    """The statistics block, one line per gate: verdict, estimate, bounds, n, runs needed, ETA."""
    mode = "sequential" if report.sequential else "fixed horizon"
    lines = [f"Statistical gates ({report.confidence * 100:g}% confidence, {mode}): {report.verdict.value}"]
    for gate in report.gates:
        n = f"{gate.n.candidate}" + ("" if gate.n.baseline is None else f"/{gate.n.baseline}")
        line = (
            f"- {gate.gate} {gate.verdict.value}: estimate {_g(gate.estimate)}, "
            f"bounds [{_g(gate.lower)}, {_g(gate.upper)}], limit {gate.limit:g}, n {n}, {gate.method.value}"
        )
        needed = gate.runs_needed
        if gate.verdict.value != "Pass":
            if needed is None:
                line += "; not expected to pass at the current estimates"
            else:
                line += f"; {needed.candidate} more candidate, {needed.baseline} more baseline runs"
                line += f", ETA {gate.eta:%Y-%m-%dT%H:%M:%SZ}" if gate.eta is not None else ", no ETA"
        lines.append(line)
    return lines


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


@click.command()
@click.argument("baseline")
@click.argument("candidate")
@click.option("--window", required=True, help="Evidence window, e.g. 7d, 24h, 30m.")
@click.option("--env", "environment", default=None, help="Environment of the events [default: local].")
@click.option("--tenant", "tenant_id", default=None, help="Only events of this tenant_id.")
@click.option("--task", "task_id", default=None, help="Only events of this task_id.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--fail-on-policy", is_flag=True, help="Exit 1 when the policy would block.")
@store_option
@namespace_option
@kubeconfig_option
def diff(
    baseline: str,
    candidate: str,
    window: str,
    environment: str | None,
    tenant_id: str | None,
    task_id: str | None,
    output: str,
    fail_on_policy: bool,
    store: str,
    namespace: str | None,
    kubeconfig: str | None,
) -> None:
    """Compare two AgentReleases over a window (the reference diff; nothing is written)."""
    from flightdeck_operator.actions.diff import DiffInput, compute_release_diff
    from flightdeck_operator.actions.errors import ActionError
    from flightdeck_operator.config import SidecarSettings
    from flightdeck_operator.engine.models import ConfidenceThresholds
    from flightdeck_operator.store import StoreError, open_store

    defaults = SidecarSettings()  # thresholds and default environment, as the sidecar's
    gateway = cluster_gateway(kubeconfig)
    try:
        with open_store(store) as opened:
            result = compute_release_diff(
                opened,
                gateway,
                target_namespace(namespace, kubeconfig),
                DiffInput(
                    baseline_release_id=baseline,
                    candidate_release_id=candidate,
                    window=window,
                    tenant_id=tenant_id,
                    task_id=task_id,
                    environment=environment,
                ),
                thresholds=ConfidenceThresholds(
                    min_candidate_runs=defaults.min_candidate_runs,
                    min_baseline_runs=defaults.min_baseline_runs,
                    min_low_runs=defaults.min_low_runs,
                ),
                default_environment=defaults.default_environment,
            )
    except (ActionError, StoreError) as error:
        fail(str(error))
    finally:
        gateway.api_client.close()
    if output == "json":
        click.echo(json.dumps(result.model_dump(mode="json"), sort_keys=True, indent=2))
    else:
        for line in diff_text(result, baseline, candidate):
            click.echo(line)
    if fail_on_policy and not result.policy.passed:
        sys.exit(EXIT_ERROR)
