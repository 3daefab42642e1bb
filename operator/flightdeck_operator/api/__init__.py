"""The API: the typed custom resources (``v1alpha1``), their conditions, reasons and phases
(``conditions``, the one place they are named), and pure behaviour of those types: judging a
PromotionApproval (``approvals``) and translating specs into engine models (``to_engine``).

Nothing here talks to the cluster; the types are what the controller, the actions, the webhook
and the CLI read and write through the gateway.

May import: the engine. Never kopf, the Kubernetes client, HTTP servers or database drivers.
"""

from flightdeck_operator.api import v1alpha1
from flightdeck_operator.api.v1alpha1 import API_VERSION, CATEGORY, GROUP, VERSION, parse_resource, to_wire

__all__ = ["API_VERSION", "CATEGORY", "GROUP", "VERSION", "parse_resource", "to_wire", "v1alpha1"]
