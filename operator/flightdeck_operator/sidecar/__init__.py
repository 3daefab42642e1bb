"""The sidecar HTTP API (``flightdeck-operator sidecar``): the reference FlightDeck HTTP API on
top of PromotionRequests, the store and Kubernetes RBAC. See docs/http-api.md.

``app`` (the FastAPI application, limits and metrics middleware), ``state`` (what handlers read),
``routes/`` (one module per group: health, reads, ingest, actions, approvals; ``common`` holds
auth as a dependency and the shared answers), ``auth``, ``schemas``, ``decisions`` (one shared
watch of decisions), ``metrics``, ``server`` (uvicorn).

May import: the actions, the store, the gateway, the API and the engine; never the controller.
"""

from flightdeck_operator.sidecar.app import create_app
from flightdeck_operator.sidecar.state import SidecarState

__all__ = ["SidecarState", "create_app"]
