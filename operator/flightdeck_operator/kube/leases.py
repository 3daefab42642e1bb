"""The ``coordination.k8s.io/v1`` Lease that elects the deciding operator: read, create and replace
(a PUT of the object as read, so its resourceVersion makes every write a compare-and-swap).

Blocking calls (the official client); the elector runs them in worker threads with a timeout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kubernetes import client
from pydantic import BaseModel, ConfigDict

from flightdeck_operator.kube.gateway import api_call


class LeaseRecord(BaseModel):
    """What a Lease says about its holder (client-go's LeaderElectionRecord)."""

    model_config = ConfigDict(frozen=True)

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: dt.datetime | None = None
    renew_time: dt.datetime | None = None
    lease_transitions: int = 0


@dataclass(frozen=True, slots=True)
class ObservedLease:
    """A Lease as read: its record and the resourceVersion a replace must match."""

    record: LeaseRecord
    resource_version: str


class LeaseClient:
    """One Lease, ``namespace``/``name``."""

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str) -> None:
        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name

    def get(self, *, timeout: float) -> ObservedLease:
        """Raises :class:`~flightdeck_operator.kube.errors.NotFound` when there is no Lease yet."""
        lease = api_call(self.api.read_namespaced_lease, self.name, self.namespace, _request_timeout=timeout)
        return _observed(lease)

    def create(self, record: LeaseRecord, *, timeout: float) -> ObservedLease:
        """Raises :class:`~flightdeck_operator.kube.errors.Conflict` when another created it first."""
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={"app.kubernetes.io/part-of": "flightdeck"},
            ),
            spec=_spec(record),
        )
        created = api_call(self.api.create_namespaced_lease, self.namespace, body, _request_timeout=timeout)
        return _observed(created)

    def replace(self, record: LeaseRecord, *, resource_version: str, timeout: float) -> ObservedLease:
        """Raises :class:`~flightdeck_operator.kube.errors.Conflict` when the Lease changed since
        ``resource_version`` was read."""
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                resource_version=resource_version,
                labels={"app.kubernetes.io/part-of": "flightdeck"},
            ),
            spec=_spec(record),
        )
        replaced = api_call(
            self.api.replace_namespaced_lease, self.name, self.namespace, body, _request_timeout=timeout
        )
        return _observed(replaced)


def _spec(record: LeaseRecord) -> client.V1LeaseSpec:
    return client.V1LeaseSpec(
        holder_identity=record.holder_identity or None,
        lease_duration_seconds=record.lease_duration_seconds,
        acquire_time=_micro_time(record.acquire_time),
        renew_time=_micro_time(record.renew_time),
        lease_transitions=record.lease_transitions,
    )


def _micro_time(value: dt.datetime | None) -> dt.datetime | None:
    # The client writes isoformat(), which drops a zero fraction; the API server's MicroTime
    # layout wants the six digits, so a whole second is written one microsecond later.
    if value is None or value.microsecond:
        return value
    return value.replace(microsecond=1)


def _observed(lease: client.V1Lease) -> ObservedLease:
    spec = lease.spec or client.V1LeaseSpec()
    record = LeaseRecord(
        holder_identity=spec.holder_identity or "",
        lease_duration_seconds=spec.lease_duration_seconds or 0,
        acquire_time=spec.acquire_time,
        renew_time=spec.renew_time,
        lease_transitions=spec.lease_transitions or 0,
    )
    return ObservedLease(record, str(lease.metadata.resource_version))
