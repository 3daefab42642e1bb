"""The sidecar HTTP API (``flightdeck-operator sidecar``): the reference FlightDeck HTTP API on
top of PromotionRequests, the store and Kubernetes RBAC. See docs/http-api.md."""

from flightdeck_operator.sidecar.app import create_app
from flightdeck_operator.sidecar.state import SidecarState

__all__ = ["SidecarState", "create_app"]
