"""Steady decision load on the local control plane, for the failover tests and the benchmarks.

A fleet of pointers under one permissive policy (no limits, no sample minimum) and two releases;
requests are created at a fixed rate, round robin over the pointers, each promoting the release its
pointer does not have yet, so every decision moves a pointer. A watch records when each request
shows a terminal phase. Creates refused by the API server (e.g. ``failed calling webhook`` while no
replica answers) are retried like any client would, and counted.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from flightdeck_operator.kube.errors import Conflict, GatewayError
from flightdeck_operator.kube.gateway import KubeGateway

GROUP, VERSION = "flightdeck.dev", "v1alpha1"
TERMINAL = frozenset({"Promoted", "RolledBack", "Blocked", "Failed", "Evaluated", "Superseded"})
RELEASES = ("rel-a", "rel-b")


def _body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}


def pointer_name(index: int) -> str:
    return f"ptr-{index:05d}"


def seed_fleet(gateway: KubeGateway, namespace: str, pointers: int, *, agent: str = "fleet") -> None:
    """The pricing table, the permissive policy, two releases and ``pointers`` pointers."""

    def create(plural: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(Conflict):  # seeded already
            gateway.create(plural, namespace, body)

    entries = [{"model": "m", "inputUsdPer1kTokens": 1.0, "outputUsdPer1kTokens": 2.0}]
    create(
        "pricingtables",
        _body("PricingTable", "prices", {"provider": "openai", "pricingVersion": "v1", "entries": entries}),
    )
    create(
        "promotionpolicies",
        _body("PromotionPolicy", "open", {"minCandidateRuns": 0, "minBaselineRuns": 0, "minLowRuns": 0}),
    )
    for index, name in enumerate(RELEASES):
        spec = {
            "agentId": agent,
            "version": f"1.0.{index}",
            "runtime": {"provider": "openai", "model": "m"},
            "pricingReference": {"provider": "openai", "pricingVersion": "v1"},
            "checksum": "0" * 64,
        }
        create("agentreleases", _body("AgentRelease", name, spec))
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda p: create(
                    "releasepointers",
                    _body(
                        "ReleasePointer",
                        pointer_name(p),
                        {"agentId": agent, "environment": f"env-{p}", "policyRef": {"name": "open"}},
                    ),
                ),
                range(pointers),
            )
        )


class DecisionWatch:
    """When each PromotionRequest of the namespace first showed a terminal phase (monotonic time)."""

    def __init__(self, gateway: KubeGateway, namespace: str) -> None:
        self.gateway = gateway
        self.namespace = namespace
        self.decided: dict[str, float] = {}
        self.phases: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                for _type, obj in self.gateway.watch(
                    "promotionrequests", self.namespace, timeout_seconds=30, resource_version=version
                ):
                    version = obj["metadata"].get("resourceVersion") or version
                    phase = (obj.get("status") or {}).get("phase")
                    if phase in TERMINAL:
                        with self._lock:
                            self.decided.setdefault(obj["metadata"]["name"], time.monotonic())
                            self.phases[obj["metadata"]["name"]] = str(phase)
                    if self._stop.is_set():
                        return
            except GatewayError as error:
                if error.status == 410:
                    version = None
                time.sleep(0.2)
            except Exception:  # the API server restarting, a dropped connection
                if self._stop.is_set():
                    return
                time.sleep(0.2)

    def wait_for(self, names: Iterable[str], timeout: float) -> bool:
        wanted = list(names)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(name in self.decided for name in wanted):
                    return True
            time.sleep(0.1)
        return False

    def count(self) -> int:
        with self._lock:
            return len(self.decided)


def refusal_reason(error: Exception) -> str:
    """A refused create, told apart by kind: the webhook call that failed, a timeout, a reset."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}"


@dataclass
class SteadyLoad:
    """Create ``rate`` requests per second over ``pointers`` pointers until stopped."""

    gateway: KubeGateway
    namespace: str
    pointers: int
    rate: float
    prefix: str = "load"
    created: dict[str, float] = field(default_factory=dict)  # name -> monotonic time of the create call
    refused: int = 0  # create attempts the API server refused (then retried)
    refusals: Counter[str] = field(default_factory=Counter)  # why, by the error's first line
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        per_pointer: dict[int, int] = {}
        next_at = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            for sequence in itertools.count():
                if self._stop.is_set():
                    return
                index = sequence % self.pointers
                count = per_pointer.get(index, 0)
                per_pointer[index] = count + 1
                name = f"{self.prefix}-{sequence:07d}"
                spec = {
                    "pointer": pointer_name(index),
                    "release": RELEASES[count % 2],
                    "reason": "steady load",
                }
                pool.submit(self._create, name, spec)
                next_at += 1.0 / self.rate
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _create(self, name: str, spec: dict[str, Any]) -> None:
        started = time.monotonic()
        while True:
            try:
                self.gateway.create(
                    "promotionrequests", self.namespace, _body("PromotionRequest", name, spec)
                )
                self.created[name] = started
                return
            except Conflict:  # created by an attempt whose answer was lost
                self.created[name] = started
                return
            except Exception as error:
                self.refused += 1
                self.refusals[refusal_reason(error)] += 1
                if self._stop.is_set() and time.monotonic() - started > 60:
                    return
                time.sleep(0.2)
