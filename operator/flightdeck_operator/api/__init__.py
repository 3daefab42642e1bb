"""Typed API of the FlightDeck custom resources. ``v1alpha1`` is the only served version."""

from flightdeck_operator.api import v1alpha1
from flightdeck_operator.api.v1alpha1 import API_VERSION, CATEGORY, GROUP, VERSION, parse_resource, to_wire

__all__ = ["API_VERSION", "CATEGORY", "GROUP", "VERSION", "parse_resource", "to_wire", "v1alpha1"]
