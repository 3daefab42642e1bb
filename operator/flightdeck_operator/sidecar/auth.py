"""Who is calling, and may they? Three modes, chosen by configuration (``--auth``).

* ``kubernetes``: the bearer token is checked with a TokenReview, then every access with a
  SubjectAccessReview against the caller's RBAC in the sidecar's namespace:

  ==============================  ======  ==============================================
  access                          verb    resource
  ==============================  ======  ==============================================
  promote, rollback, request      create  ``promotionrequests.flightdeck.dev``
  confirm (approve)               create  ``promotionapprovals.flightdeck.dev``
  ingest run events               create  ``runevents.flightdeck.dev`` (virtual)
  reads (lists, diff, runs, ...)  list    ``promotionrequests.flightdeck.dev``
  webhooks: create, list, delete  same    ``notificationsubscriptions.flightdeck.dev``
  ==============================  ======  ==============================================

  ``runevents`` has no CRD: RBAC rules may name any resource, so a Role can grant ingestion alone.
  Answers (valid or not, allowed or not) are cached for ``auth_cache_seconds``, keyed by the
  token's SHA-256 (the token itself is never kept), so a busy client costs one review per window.
* ``token``: one static token from a file, compared in constant time; it grants everything.
* ``none``: no authentication; the server refuses to start unless it listens on loopback only.

Missing or wrong credentials give 401 (with the reference's messages); a valid identity that
RBAC denies gives 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Generic, Protocol, TypeVar

from flightdeck_operator.api.v1alpha1 import (
    GROUP,
    NOTIFICATION_SUBSCRIPTION,
    PROMOTION_APPROVAL,
    PROMOTION_REQUEST,
)
from flightdeck_operator.config import AuthMode
from flightdeck_operator.kube.errors import GatewayError
from flightdeck_operator.kube.gateway import KubeGateway, ReviewedUser

BEARER_PREFIX: Final = "Bearer "  # case-sensitive, as the reference compares it
# The virtual resource RBAC rules name to allow ingestion (no CRD needed).
RUN_EVENTS_RESOURCE: Final = "runevents"
CACHE_MAX_ENTRIES: Final = 10_000
ANONYMOUS: Final = "anonymous"
STATIC_TOKEN_USER: Final = "static-token"
LOOPBACK_NAMES: Final = frozenset({"localhost"})


class Access(StrEnum):
    """What a route needs; the value finishes the 403 message ("needed to <value>")."""

    READ = "read"
    INGEST = "ingest"
    PROMOTE = "promote"
    APPROVE = "approve"
    # The webhook routes (ledger-write in the reference): RBAC on the NotificationSubscriptions.
    CREATE_WEBHOOK = "create webhooks"
    LIST_WEBHOOKS = "list webhooks"
    DELETE_WEBHOOK = "delete webhooks"

    @property
    def verb(self) -> str:
        return _VERB_AND_RESOURCE[self][0]

    @property
    def resource(self) -> str:
        return _VERB_AND_RESOURCE[self][1]

    @property
    def unauthorized_message(self) -> str:
        kind = "read" if self is Access.READ else "mutation"
        return f"Missing or invalid API token for {kind} route."


_VERB_AND_RESOURCE: Final[dict[Access, tuple[str, str]]] = {
    Access.READ: ("list", PROMOTION_REQUEST.plural),
    Access.INGEST: ("create", RUN_EVENTS_RESOURCE),
    Access.PROMOTE: ("create", PROMOTION_REQUEST.plural),
    Access.APPROVE: ("create", PROMOTION_APPROVAL.plural),
    Access.CREATE_WEBHOOK: ("create", NOTIFICATION_SUBSCRIPTION.plural),
    Access.LIST_WEBHOOKS: ("list", NOTIFICATION_SUBSCRIPTION.plural),
    Access.DELETE_WEBHOOK: ("delete", NOTIFICATION_SUBSCRIPTION.plural),
}


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller. ``identity`` scopes idempotency keys; ``username`` is recorded.

    ``verified``: the API server vouched for this identity (TokenReview), so the sidecar may create
    objects on its behalf (spec.requestedBy, spec.approver); the static token and ``none`` modes
    know no person behind a call."""

    username: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    verified: bool = False

    @property
    def identity(self) -> str:
        return self.username


class AuthError(Exception):
    """401 (not authenticated) or 403 (authenticated, not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AuthUnavailable(Exception):
    """The API server could not answer a review (503: retry later, never fail open)."""


class Authenticator(Protocol):
    mode: AuthMode

    def cached(self, authorization: str | None, access: Access) -> Caller | None:
        """The answer without blocking, when known (``None``: call :meth:`check`)."""

    def check(self, authorization: str | None, access: Access) -> Caller:
        """Authenticate and authorize (may block on API calls). Raises :class:`AuthError`."""


def bearer_token(authorization: str | None) -> str | None:
    if authorization is None or not authorization.startswith(BEARER_PREFIX):
        return None
    token = authorization[len(BEARER_PREFIX) :].strip()
    return token or None


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small thread-safe cache whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(
        self, ttl: float, max_entries: int = CACHE_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> tuple[bool, V | None]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return False, None
            if item[0] <= self._clock():
                del self._items[key]
                return False, None
            return True, item[1]

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._items[key] = (self._clock() + self.ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)


class KubernetesAuth:
    """TokenReview + SubjectAccessReview, with short-lived caches."""

    mode = AuthMode.KUBERNETES

    def __init__(self, gateway: KubeGateway, namespace: str, cache_seconds: float) -> None:
        self.gateway = gateway
        self.namespace = namespace
        self._users: TtlCache[str, ReviewedUser | None] = TtlCache(cache_seconds)
        self._access: TtlCache[tuple[str, Access], bool] = TtlCache(cache_seconds)

    def cached(self, authorization: str | None, access: Access) -> Caller | None:
        token = bearer_token(authorization)
        if token is None:
            raise AuthError(401, access.unauthorized_message)
        key = _token_key(token)
        known, user = self._users.get(key)
        if not known:
            return None
        if user is None:
            raise AuthError(401, access.unauthorized_message)
        known, allowed = self._access.get((key, access))
        if not known:
            return None
        return self._verdict(user, access, bool(allowed))

    def check(self, authorization: str | None, access: Access) -> Caller:
        token = bearer_token(authorization)
        if token is None:
            raise AuthError(401, access.unauthorized_message)
        key = _token_key(token)
        known, user = self._users.get(key)
        try:
            if not known:
                user = self.gateway.review_token(token)
                self._users.put(key, user)
            if user is None:
                raise AuthError(401, access.unauthorized_message)
            known, allowed = self._access.get((key, access))
            if not known:
                decision = self.gateway.review_access(
                    user, namespace=self.namespace, verb=access.verb, group=GROUP, resource=access.resource
                )
                allowed = decision.allowed
                self._access.put((key, access), allowed)
        except GatewayError as error:
            raise AuthUnavailable(f"Could not review the caller's token or access: {error}") from None
        return self._verdict(user, access, bool(allowed))

    def _verdict(self, user: ReviewedUser, access: Access, allowed: bool) -> Caller:
        if not allowed:
            raise AuthError(
                403,
                f'User "{user.username}" cannot {access.verb} resource "{access.resource}" in API group '
                f'"{GROUP}" in the namespace "{self.namespace}" (needed to {access.value}).',
            )
        return Caller(username=user.username, groups=user.groups, uid=user.uid, verified=True)


class StaticTokenAuth:
    """One shared token, read once at start-up, compared in constant time."""

    mode = AuthMode.TOKEN

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise ValueError("the token file is empty")
        self._token = token.strip().encode()

    @classmethod
    def from_file(cls, path: str | Path) -> StaticTokenAuth:
        return cls(Path(path).read_text())

    def cached(self, authorization: str | None, access: Access) -> Caller | None:
        return self.check(authorization, access)  # no I/O: always answerable at once

    def check(self, authorization: str | None, access: Access) -> Caller:
        token = bearer_token(authorization)
        if token is None or not hmac.compare_digest(token.encode(), self._token):
            raise AuthError(401, access.unauthorized_message)
        return Caller(username=STATIC_TOKEN_USER)


class NoAuth:
    """Everyone is the anonymous caller; only constructed for a loopback listener."""

    mode = AuthMode.NONE

    def cached(self, authorization: str | None, access: Access) -> Caller | None:
        return Caller(username=ANONYMOUS)

    def check(self, authorization: str | None, access: Access) -> Caller:
        return Caller(username=ANONYMOUS)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
