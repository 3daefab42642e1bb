"""The ``flightdeck-operator`` command (also installed as ``kubectl-flightdeck``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from flightdeck_operator import __version__
from flightdeck_operator.localdev.controlplane import ControlPlane, ControlPlaneError


def step(message: str) -> None:
    click.echo(click.style("==> ", fg="cyan", bold=True) + message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flightdeck-operator")
def main() -> None:
    """FlightDeck Operator: govern which release of an AI agent is live in each environment."""


@main.command()
@click.option(
    "--bin-dir", type=click.Path(file_okay=False), help="Directory with etcd, kube-apiserver, kubectl."
)
def dev(bin_dir: str | None) -> None:
    """Run the demo on an embedded local control plane, then stop it cleanly."""
    started = time.monotonic()
    try:
        step("Starting etcd and kube-apiserver on loopback")
        with ControlPlane(bin_dir=None if bin_dir is None else Path(bin_dir)) as cp:
            step(f"API server ready at {cp.server}")
            version = json.loads(cp.kubectl("version", "-o", "json").stdout)["serverVersion"]
            click.echo(f"    server version: {version['gitVersion']} ({version['platform']})")
            step("API groups served")
            for group in cp.kubectl("api-versions").stdout.split():
                click.echo(f"    {group}")
            step("Stopping the control plane")
    except ControlPlaneError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    step(f"Done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
