"""The one module that talks to the Kubernetes API (besides kopf's own watching and patching).

Every call is synchronous (the official client blocks); callers run it in a worker thread.
API errors are mapped onto :mod:`flightdeck_operator.kube.errors` so no other module needs to know
about ``kubernetes.client.rest.ApiException``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from flightdeck_operator.kube.errors import Conflict, GatewayError, KubeconfigError, NotFound

GROUP = "flightdeck.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
COMPONENT = "flightdeck-operator"

T = TypeVar("T")
Body = dict[str, Any]

# Grace added to the client-side read timeout of a watch, beyond the server-side timeoutSeconds,
# so the server (not the socket) normally ends the watch.
_WATCH_READ_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class ReviewedUser:
    """Who a bearer token belongs to, as the API server's TokenReview says."""

    username: str
    uid: str
    groups: tuple[str, ...]
    extra: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """A SubjectAccessReview's answer; ``reason`` is the authorizer's explanation (often empty)."""

    allowed: bool
    reason: str


def load_api_client(kubeconfig: str | None = None, *, pool_size: int | None = None) -> client.ApiClient:
    """An API client from a kubeconfig path, else in-cluster config, else the default kubeconfig.

    ``pool_size``: HTTP connections kept per host (the sidecar holds one per waiting promote).
    """
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
    except config.ConfigException as error:
        raise KubeconfigError(str(error)) from None
    if pool_size is not None:
        configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


# Where a pod's ServiceAccount namespace is mounted (the in-cluster default namespace).
_IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_namespace(kubeconfig: str | None = None) -> str:
    """The namespace kubectl would use: the kubeconfig context's, in a pod its own, else ``default``."""
    try:
        _contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError):
        try:
            with open(_IN_CLUSTER_NAMESPACE_FILE, encoding="utf-8") as mounted:
                return mounted.read().strip() or "default"
        except OSError:
            return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")


def api_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the official client, raising our errors (409 :class:`Conflict`, 404 :class:`NotFound`)."""
    try:
        return fn(*args, **kwargs)
    except ApiException as error:
        message = _api_message(error)
        if error.status == 409:
            raise Conflict(message, 409) from None
        if error.status == 404:
            raise NotFound(message, 404) from None
        raise GatewayError(message, error.status or 0) from None


def _manager(field_manager: str | None) -> dict[str, str]:
    return {} if field_manager is None else {"field_manager": field_manager}


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


class KubeGateway:
    """Reads and writes FlightDeck objects, Events, access reviews and the webhook's caBundle."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.objects = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    # -- custom objects --------------------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> Body:
        return api_call(self.objects.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name)

    def find(self, plural: str, namespace: str, name: str) -> Body | None:
        try:
            return self.get(plural, namespace, name)
        except NotFound:
            return None

    def list_objects(self, plural: str, namespace: str | None = None, *, cached: bool = False) -> list[Body]:
        """All objects of a kind. ``cached``: served from the API server's watch cache as it is
        (``resourceVersion=0``), without waiting until the cache has caught up with etcd (a
        consistent list can wait tens of milliseconds right after a write); for lookups that
        tolerate a moment of staleness."""
        kwargs: dict[str, Any] = {"resource_version": "0"} if cached else {}
        if namespace is None:
            listed = api_call(self.objects.list_cluster_custom_object, GROUP, VERSION, plural, **kwargs)
        else:
            listed = api_call(
                self.objects.list_namespaced_custom_object, GROUP, VERSION, namespace, plural, **kwargs
            )
        items: list[Body] = listed["items"]
        return items

    def create(
        self,
        plural: str,
        namespace: str,
        body: Mapping[str, Any],
        *,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> Body:
        """Create ``body``; ``field_manager`` names the writer in managedFields (the ledger's actor
        for policy and pricing changes); ``dry_run``: admission runs, nothing is stored."""
        return api_call(
            self.objects.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            dict(body),
            **_manager(field_manager),
            **({"dry_run": "All"} if dry_run else {}),
        )

    def patch(
        self,
        plural: str,
        namespace: str,
        name: str,
        changes: Mapping[str, Any],
        *,
        field_manager: str | None = None,
    ) -> Body:
        """JSON merge patch of the object (spec, metadata). A ``metadata.resourceVersion`` in
        ``changes`` is a precondition: a concurrent writer makes this raise :class:`Conflict`."""
        return api_call(
            self.objects.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            dict(changes),
            **_manager(field_manager),
        )

    def delete(
        self,
        plural: str,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> None:
        """Delete one object; raises :class:`NotFound` when it is already gone. ``uid`` and
        ``resource_version`` are preconditions: a re-created or changed object raises
        :class:`Conflict` instead of being deleted."""
        kwargs: dict[str, Any] = {}
        if uid is not None or resource_version is not None:
            kwargs["body"] = client.V1DeleteOptions(
                preconditions=client.V1Preconditions(uid=uid, resource_version=resource_version)
            )
        api_call(
            self.objects.delete_namespaced_custom_object, GROUP, VERSION, namespace, plural, name, **kwargs
        )

    def replace(self, plural: str, body: Mapping[str, Any], *, field_manager: str | None = None) -> Body:
        """PUT the whole object (status is ignored by the API server); ``resourceVersion`` in
        ``body.metadata`` is a precondition, as for :meth:`replace_status`."""
        metadata = body["metadata"]
        return api_call(
            self.objects.replace_namespaced_custom_object,
            GROUP,
            VERSION,
            metadata["namespace"],
            plural,
            metadata["name"],
            dict(body),
            **_manager(field_manager),
        )

    def replace_status(self, plural: str, body: Mapping[str, Any]) -> Body:
        """PUT the status subresource. ``body.metadata.resourceVersion`` is a precondition: a
        concurrent writer makes this raise :class:`Conflict` instead of being overwritten."""
        metadata = body["metadata"]
        return api_call(
            self.objects.replace_namespaced_custom_object_status,
            GROUP,
            VERSION,
            metadata["namespace"],
            plural,
            metadata["name"],
            dict(body),
        )

    def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> Body:
        """Merge-patch the status subresource (no precondition: for objects only we write)."""
        return api_call(
            self.objects.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": dict(status)},
        )

    def watch(
        self,
        plural: str,
        namespace: str,
        *,
        field_selector: str | None = None,
        timeout_seconds: int = 60,
        resource_version: str | None = None,
    ) -> Iterator[tuple[str, Body]]:
        """Yield (event type, object) from a watch until the server closes it. Without
        ``resource_version`` the server first sends every existing object as ADDED; a too old
        ``resource_version`` raises :class:`GatewayError` with status 410."""
        stream = watch.Watch()
        kwargs: dict[str, Any] = {
            "timeout_seconds": timeout_seconds,
            "_request_timeout": (_WATCH_READ_GRACE_S, timeout_seconds + _WATCH_READ_GRACE_S),
        }
        if field_selector:
            kwargs["field_selector"] = field_selector
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            for event in stream.stream(
                self.objects.list_namespaced_custom_object, GROUP, VERSION, namespace, plural, **kwargs
            ):
                yield event["type"], event["object"]
        except ApiException as error:
            raise GatewayError(_api_message(error), error.status or 0) from None
        finally:
            stream.stop()

    # -- secrets (notification signing keys) -----------------------------------------------------

    def create_secret(self, namespace: str, body: Mapping[str, Any]) -> Body:
        """Create a core/v1 Secret; returns its metadata only (the data never leaves this call)."""
        created = api_call(self.core.create_namespaced_secret, namespace, dict(body))
        return {"metadata": self.api_client.sanitize_for_serialization(created.metadata)}

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded as UTF-8; None when the Secret or the key is missing."""
        try:
            secret = api_call(self.core.read_namespaced_secret, name, namespace)
        except NotFound:
            return None
        encoded = (secret.data or {}).get(key)
        return None if encoded is None else base64.b64decode(encoded).decode("utf-8")

    # -- events ----------------------------------------------------------------------------

    def post_event(
        self, obj: Mapping[str, Any], *, kind: str, event_type: str, reason: str, message: str
    ) -> None:
        """Record a core/v1 Event on ``obj`` (what ``kubectl describe`` shows)."""
        metadata = obj["metadata"]
        now = dt.datetime.now(dt.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{metadata['name']}.", namespace=metadata["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION,
                kind=kind,
                name=metadata["name"],
                namespace=metadata["namespace"],
                uid=metadata.get("uid"),
                resource_version=metadata.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type=event_type,
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        api_call(self.core.create_namespaced_event, metadata["namespace"], event)

    def review_token(self, token: str) -> ReviewedUser | None:
        """TokenReview: the user the API server would authenticate ``token`` as (None: not valid)."""
        review = api_call(
            client.AuthenticationV1Api(self.api_client).create_token_review,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        )
        status = review.status
        if status is None or not status.authenticated or status.user is None or not status.user.username:
            return None
        user = status.user
        return ReviewedUser(
            username=str(user.username),
            uid=str(user.uid or ""),
            groups=tuple(user.groups or ()),
            extra={key: tuple(values or ()) for key, values in (user.extra or {}).items()},
        )

    def whoami(self) -> str:
        """SelfSubjectReview: the username this client authenticates as."""
        review = api_call(
            client.AuthenticationV1Api(self.api_client).create_self_subject_review,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        user = review.status.user_info if review.status is not None else None
        return str(user.username) if user is not None and user.username else "unknown"

    def review_access(
        self, user: ReviewedUser, *, namespace: str, verb: str, group: str, resource: str
    ) -> AccessDecision:
        """SubjectAccessReview: may ``user`` do ``verb`` on ``resource.group`` in ``namespace``?"""
        spec: Body = {
            "user": user.username,
            "groups": list(user.groups),
            "resourceAttributes": {
                "namespace": namespace,
                "verb": verb,
                "group": group,
                "resource": resource,
            },
        }
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {key: list(values) for key, values in user.extra.items()}
        review = api_call(
            client.AuthorizationV1Api(self.api_client).create_subject_access_review,
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
        )
        status = review.status
        allowed = bool(status is not None and status.allowed and not status.denied)
        return AccessDecision(allowed=allowed, reason=str((status.reason if status else None) or ""))

    def ensure_webhook_ca_bundle(self, name: str, ca_pem: bytes) -> bool:
        """Make the caBundle of every webhook in the MutatingWebhookConfiguration ``name`` equal
        ``ca_pem``; patches only what differs. Returns True when it patched. Raises
        :class:`NotFound` when the configuration does not exist."""
        api = client.AdmissionregistrationV1Api(self.api_client)
        current = api_call(api.read_mutating_webhook_configuration, name)
        bundle = base64.b64encode(ca_pem).decode()
        operations: list[Body] = [
            {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": bundle}
            for index, webhook in enumerate(current.webhooks or ())
            if webhook.client_config.ca_bundle != bundle
        ]
        if not operations:
            return False
        # Guard the indexes: the patch fails (and is redone next round) if the object changed.
        version = current.metadata.resource_version
        test: Body = {"op": "test", "path": "/metadata/resourceVersion", "value": version}
        api_call(api.patch_mutating_webhook_configuration, name, [test, *operations])
        return True

    def create_or_get(self, plural: str, namespace: str, body: Mapping[str, Any]) -> tuple[Body, bool]:
        """Create ``body`` (which must carry a deterministic ``metadata.name``); when an object of
        that name exists already, return it instead. Returns (object, created)."""
        try:
            return self.create(plural, namespace, body), True
        except Conflict:
            return self.get(plural, namespace, body["metadata"]["name"]), False

    def wait_for(
        self,
        plural: str,
        namespace: str,
        name: str,
        done: Callable[[Body], bool],
        *,
        timeout: float,
        resource_version: str | None = None,
    ) -> Body | None:
        """Watch one object from ``resource_version`` until ``done(object)``; None after ``timeout``
        seconds. Raises :class:`NotFound` when the object is deleted meanwhile."""
        deadline = time.monotonic() + timeout
        version = resource_version
        while (remaining := deadline - time.monotonic()) > 0:
            kwargs: dict[str, Any] = {
                "field_selector": f"metadata.name={name}",
                "timeout_seconds": max(1, math.ceil(remaining)),
                "_request_timeout": (_WATCH_READ_GRACE_S, remaining + _WATCH_READ_GRACE_S),
            }
            if version:
                kwargs["resource_version"] = version
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.objects.list_namespaced_custom_object, GROUP, VERSION, namespace, plural, **kwargs
                ):
                    obj: Body = event["object"]
                    if event["type"] == "DELETED":
                        raise NotFound(f'{plural} "{name}" was deleted', 404)
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if done(obj):
                        return obj
                    if time.monotonic() >= deadline:
                        return None
            except ApiException as error:
                if error.status != 410:
                    raise GatewayError(_api_message(error), error.status or 0) from None
                # Our resourceVersion is too old to resume from: start again from a fresh read.
                current = self.get(plural, namespace, name)
                if done(current):
                    return current
                version = current["metadata"].get("resourceVersion")
            except urllib3.exceptions.ReadTimeoutError:
                pass  # no event before the deadline; the loop condition decides
            finally:
                stream.stop()
        return None

    def ping(self) -> str:
        """The API server's version (a cheap authenticated round trip for readiness probes)."""
        info = api_call(client.VersionApi(self.api_client).get_code)
        return str(info.git_version)
