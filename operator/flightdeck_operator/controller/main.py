"""Entry point of the operator process: ``flightdeck-operator run``.

``flightdeck-operator run`` goes through the supervisor (leader election, the fence, the webhook on
every replica); ``kopf run -m flightdeck_operator.controller.main`` imports this module for its
handlers and runs kopf alone (tests that need no election).
"""

from __future__ import annotations

from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller import (  # noqa: F401  (registers them with kopf)
    handlers,
    indexes,
    notification_handlers,
    startup,
)
from flightdeck_operator.controller.kopf_toggles import install as install_edge_toggles
from flightdeck_operator.controller.supervisor import supervise

# Before kopf starts (in every way it is started: the supervisor, ``kopf run -m``, KopfRunner).
install_edge_toggles()


def run(config: OperatorSettings, *, health_endpoint: str | None = None) -> int:
    """Run the operator until stopped or deposed; returns the exit code of a graceful stop."""
    return supervise(config, health_endpoint=health_endpoint)
