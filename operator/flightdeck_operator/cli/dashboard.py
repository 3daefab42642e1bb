"""``flightdeck-operator dashboard``: the web dashboard on loopback, acting as you.

Like ``kubectl argo rollouts dashboard``: it runs on your machine, listens on 127.0.0.1 only, needs
no token (your kubeconfig is the identity: the API server records you as the requester or approver
of what you do in it, and your RBAC decides what you may do), and reads the ledger and run events
from the store you name (the operator's PostgreSQL, or its SQLite file where you can reach it).
"""

from __future__ import annotations

import click

DEFAULT_PORT = 8777


@click.command()
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Loopback port.")
@click.option(
    "--store",
    envvar="FLIGHTDECK_STORE",
    required=True,
    help="The operator's store: a postgresql:// URL or the SQLite file.",
)
@click.option(
    "-n", "--namespace", default=None, help="Namespace (default: the kubeconfig context's, else default)."
)
@click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), default=None, help="Kubeconfig file (your identity)."
)
def dashboard(port: int, store: str, namespace: str | None, kubeconfig: str | None) -> None:
    """Serve the web dashboard on 127.0.0.1 with your kubeconfig identity (no token needed)."""
    import logging

    from flightdeck_operator.config import AuthMode, SidecarSettings
    from flightdeck_operator.kube.errors import KubeconfigError
    from flightdeck_operator.kube.gateway import default_namespace
    from flightdeck_operator.sidecar.server import SidecarConfigError, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = SidecarSettings(
        host="127.0.0.1",
        port=port,
        store=store,
        namespace=namespace or default_namespace(kubeconfig),
        kubeconfig=kubeconfig,
        auth=AuthMode.NONE,
        local_identity=True,
    )
    click.echo(f"FlightDeck dashboard for namespace {settings.namespace}: http://127.0.0.1:{port}/ui/")
    click.echo("Acting with your kubeconfig identity; Ctrl-C stops it.")
    try:
        serve(settings, access_log=False)
    except SidecarConfigError as error:
        raise click.ClickException(str(error)) from None
    except KubeconfigError as error:
        raise click.ClickException(f"no usable kubeconfig ({error}); pass --kubeconfig") from None
