"""The namespace's AgentReleases as the OTLP mapper needs them (``otlp.releases.ReleaseCatalog``),
listed from the API server's watch cache and reused for a while.

A run naming a release the catalog does not know is looked up again at once (at most once a second),
so a release created just before its first traces is not rejected for a stale list.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

from pydantic import ValidationError

from flightdeck_operator.api.v1alpha1 import AGENT_RELEASE, AgentReleaseSpec
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.otlp.releases import KnownRelease, ReleaseCatalog

log = logging.getLogger(__name__)

MIN_REFRESH_INTERVAL_S: Final = 1.0


class ReleaseCatalogCache:
    def __init__(self, gateway: KubeGateway, namespace: str, *, max_age_seconds: float) -> None:
        self._gateway = gateway
        self._namespace = namespace
        self._max_age = max_age_seconds
        self._lock = threading.Lock()
        self._catalog = ReleaseCatalog()
        self._fetched_at: float | None = None

    def get(self) -> ReleaseCatalog:
        """The catalog, listed again when older than the maximum age."""
        if self._fetched_at is None or time.monotonic() - self._fetched_at > self._max_age:
            return self.refresh()
        return self._catalog

    def refresh_if_stale(self) -> ReleaseCatalog:
        """Listed again unless that was done within the last second (a miss may be staleness)."""
        if self._fetched_at is not None and time.monotonic() - self._fetched_at < MIN_REFRESH_INTERVAL_S:
            return self._catalog
        return self.refresh()

    def refresh(self) -> ReleaseCatalog:
        """List the releases now; on an API error keep the previous list (it is logged)."""
        with self._lock:
            try:
                bodies = self._gateway.list_objects(AGENT_RELEASE.plural, self._namespace, cached=True)
            except Exception as error:  # the API server is away: map with what is known
                log.warning("Could not list AgentReleases for OTLP mapping: %s", error)
                self._fetched_at = time.monotonic()
                return self._catalog
            releases = []
            for body in sorted(bodies, key=lambda b: b["metadata"]["name"]):
                try:
                    spec = AgentReleaseSpec.model_validate(body.get("spec") or {})
                except ValidationError:
                    continue  # not a release the operator could use either
                releases.append(
                    KnownRelease(
                        release_id=body["metadata"]["name"],
                        agent_id=spec.agent_id,
                        version=spec.version,
                        model=spec.runtime.model,
                        provider=spec.runtime.provider,
                    )
                )
            self._catalog = ReleaseCatalog(releases)
            self._fetched_at = time.monotonic()
            return self._catalog
