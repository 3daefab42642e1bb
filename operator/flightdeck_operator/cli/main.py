"""The ``flightdeck-operator`` command (also installed as ``kubectl-flightdeck``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from flightdeck_operator import __version__
from flightdeck_operator.localdev.controlplane import ControlPlaneError


def step(message: str) -> None:
    click.echo(click.style("==> ", fg="cyan", bold=True) + message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flightdeck-operator")
def main() -> None:
    """FlightDeck Operator: govern which release of an AI agent is live in each environment."""


STORE_HELP = "Store: a SQLite path or a postgresql:// URL [env FLIGHTDECK_STORE]."


@main.command()
@click.option(
    "--store", envvar="FLIGHTDECK_STORE", default="flightdeck.db", show_default=True, help=STORE_HELP
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only this namespace (repeatable). Default: all namespaces.",
)
@click.option(
    "--liveness",
    default=None,
    help="Serve health on this URL's address, e.g. http://0.0.0.0:8080/healthz (also /readyz, /metrics).",
)
def run(store: str, namespaces: tuple[str, ...], liveness: str | None) -> None:
    """Run the operator: decide PromotionRequests and keep pointers equal to the ledger.

    With leader election (the default), every replica serves the admission webhook and one, holding
    the Lease, decides; the others wait to take over."""
    from flightdeck_operator.config import OperatorSettings
    from flightdeck_operator.controller.main import run as run_operator

    sys.exit(run_operator(OperatorSettings(store=store, namespaces=namespaces), health_endpoint=liveness))


@main.command()
@click.option(
    "--store", envvar="FLIGHTDECK_STORE", default="flightdeck.db", show_default=True, help=STORE_HELP
)
@click.option("--kubeconfig", default=None, help="Kubeconfig path (default: in-cluster, then $KUBECONFIG).")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Check only this namespace (repeatable), as the operator was run. Default: all namespaces.",
)
def doctor(store: str, kubeconfig: str | None, namespaces: tuple[str, ...]) -> None:
    """Verify the ledger chain and that every pointer equals the ledger; exit 1 on any failure."""
    from flightdeck_operator.cli.doctor import run_checks, summarize
    from flightdeck_operator.kube.gateway import KubeGateway, load_api_client
    from flightdeck_operator.store import open_store

    with open_store(store) as opened:
        checks = run_checks(opened, KubeGateway(load_api_client(kubeconfig)), namespaces=namespaces)
    for check in checks:
        click.echo(check.line(), err=not check.ok or check.warning)
    passed, summary = summarize(checks)
    if not passed:
        click.echo(f"Error: {summary}", err=True)
        sys.exit(1)
    click.echo(summary)


@main.command()
@click.option(
    "--bin-dir", type=click.Path(file_okay=False), help="Directory with etcd, kube-apiserver, kubectl, helm."
)
@click.option(
    "--repo",
    type=click.Path(file_okay=False, exists=True),
    default=".",
    show_default=True,
    help="Repository root (for charts/ and examples/).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the control plane, operator, sidecar and dashboard running after the demo (Ctrl-C stops).",
)
def dev(bin_dir: str | None, repo: str, keep: bool) -> None:
    """Run the demo on an embedded local control plane, then stop everything cleanly (or, with
    --keep, leave a sandbox running to look around in).

    Builds nothing itself: `make demo` and `make sandbox` build or reuse the control-plane binaries first.
    """
    from flightdeck_operator.localdev.demo import DemoError, run_demo

    started = time.monotonic()

    def show(text: str) -> None:
        for line in text.splitlines():
            click.echo(f"    {line}")

    try:
        step("Starting etcd and kube-apiserver on loopback")
        run_demo(
            Path(repo).resolve(),
            bin_dir=None if bin_dir is None else Path(bin_dir),
            say=step,
            show=show,
            keep=keep,
        )
    except (ControlPlaneError, DemoError) as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    step(f"Demo finished in {time.monotonic() - started:.0f}s; everything it started is stopped")


# release register/checksum/verify, pricing import, policy apply (reference files -> resources).
from flightdeck_operator.cli.resource_tools import register as register_resource_tools  # noqa: E402

register_resource_tools(main)

# sidecar, promote, rollback, ingest, diff (the HTTP API's code paths).
from flightdeck_operator.cli.commands import register as register_action_commands  # noqa: E402

register_action_commands(main)

# The web dashboard on loopback, as the caller's kubeconfig identity.
from flightdeck_operator.cli.dashboard import dashboard  # noqa: E402

main.add_command(dashboard)

# runs list / runs export (the HTTP API's forensics code paths).
from flightdeck_operator.cli.runs import runs  # noqa: E402

main.add_command(runs)

if __name__ == "__main__":
    main()
