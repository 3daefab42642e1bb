"""One watch on the namespace's PromotionRequests, shared by every promote waiting for a decision
(or, for promote-request and promote-confirm, for another state: awaiting approval, approved).

Why not a watch per request: a watch ends by closing its connection, so each one would cost a new
TLS connection to the API server (tens of milliseconds) on the next call, and a connection per
waiting request. The shared watch keeps one connection open and hands each decided request to
whoever waits for it.

No decision is missed: a waiter registers first, then reads the request once (it may have been
decided before the registration); the watch resumes from the last resourceVersion it saw after a
reconnect, and when that version is too old (410) it starts over, which replays every existing
request as ADDED.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import urllib3

from flightdeck_operator.actions.promotions import is_decided
from flightdeck_operator.api.v1alpha1 import PROMOTION_REQUEST
from flightdeck_operator.kube.errors import GatewayError, NotFound
from flightdeck_operator.kube.gateway import Body, KubeGateway

log = logging.getLogger(__name__)

# The server ends a watch after this long; it is then resumed from the last resourceVersion.
WATCH_SECONDS: Final = 300
# Pause before reconnecting after an error (the API server restarting, a network blip).
RECONNECT_DELAY_S: Final = 1.0
GONE: Final = 410


@dataclass
class _Waiter:
    wanted: Callable[[Body], bool] = is_decided
    done: threading.Event = field(default_factory=threading.Event)
    body: Body | None = None
    deleted: bool = False


class DecisionWatcher:
    """Waits for PromotionRequests of one namespace to be decided (``Decided=True``)."""

    def __init__(self, gateway: KubeGateway, namespace: str) -> None:
        self.gateway = gateway
        self.namespace = namespace
        self._waiters: dict[str, list[_Waiter]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flightdeck-decision-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # The watch thread is a daemon blocked in a read; it notices at its next event or timeout.
        self._stopping.set()

    def wait(self, obj: Body, timeout: float, wanted: Callable[[Body], bool] = is_decided) -> Body | None:
        """The request once ``wanted`` (default: decided), or None after ``timeout`` seconds. Raises
        :class:`NotFound` when the request is deleted first. Blocks the calling thread."""
        if wanted(obj):
            return obj
        name = str(obj["metadata"]["name"])
        waiter = _Waiter(wanted)
        with self._lock:
            self._waiters.setdefault(name, []).append(waiter)
        try:
            current = self.gateway.find(PROMOTION_REQUEST.plural, self.namespace, name)
            if current is None:
                raise NotFound(f'promotionrequests "{name}" was deleted', 404)
            if wanted(current):
                return current
            if not waiter.done.wait(timeout):
                return None
            if waiter.deleted:
                raise NotFound(f'promotionrequests "{name}" was deleted', 404)
            return waiter.body
        finally:
            with self._lock:
                waiting = self._waiters.get(name, [])
                if waiter in waiting:
                    waiting.remove(waiter)
                if not waiting:
                    self._waiters.pop(name, None)

    def _dispatch(self, event_type: str, obj: Body) -> None:
        name = obj.get("metadata", {}).get("name")
        deleted = event_type == "DELETED"
        with self._lock:
            waiting = list(self._waiters.get(name, ()))
        for waiter in waiting:
            if deleted or waiter.wanted(obj):
                waiter.body, waiter.deleted = obj, deleted
                waiter.done.set()

    def _run(self) -> None:
        version: str | None = None
        while not self._stopping.is_set():
            try:
                for event_type, obj in self.gateway.watch(
                    PROMOTION_REQUEST.plural,
                    self.namespace,
                    timeout_seconds=WATCH_SECONDS,
                    resource_version=version,
                ):
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    self._dispatch(event_type, obj)
                    if self._stopping.is_set():
                        return
            except GatewayError as error:
                if error.status == GONE:
                    version = None  # too old to resume: start over (replays current requests)
                    continue
                log.warning("Watch on PromotionRequests failed (%s); reconnecting", error)
                self._stopping.wait(RECONNECT_DELAY_S)
            except urllib3.exceptions.HTTPError as error:  # connection reset, API server restarting
                log.warning("Watch on PromotionRequests interrupted (%s); reconnecting", error)
                self._stopping.wait(RECONNECT_DELAY_S)
            except Exception:  # the watch must outlive any one failure
                log.exception("Watch on PromotionRequests failed; reconnecting")
                self._stopping.wait(RECONNECT_DELAY_S)
