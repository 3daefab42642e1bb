"""``flightdeck-operator doctor``: is the ledger intact, and does the cluster agree with it?

Checks, each printed as ``ok    name: detail`` or ``FAIL  name: detail`` (the reference's format):
- ``ledger_chain``: seq contiguous from 1 and every hash links to the one before;
- ``pointer:<ns>/<name>``: the pointer's ``status.releaseId`` equals the release of its ledger's last
  passing entry, and that release exists as an AgentRelease;
- ``retired:<ns>/<name>``: a pointer deleted after it was promoted, whose retirement the ledger
  records (who, when, the release that was live): history, reported, never a failure;
- ``ledger_pointer:<ns>/<name>``: a pointer the ledger holds a live history for but that is gone and
  whose retirement is not recorded yet (the operator was not running when it was deleted; its sweep
  records it): a warning, not a failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flightdeck_operator.api.v1alpha1 import AGENT_RELEASE, RELEASE_POINTER
from flightdeck_operator.engine.ledger import LedgerKind
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

RETIREMENTS_SHOWN = 1000  # the newest ones; the ledger holds them all


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # worth knowing, but not a failure (doctor still exits 0)

    def line(self) -> str:
        label = "FAIL " if not self.ok else ("warn " if self.warning else "ok   ")
        return f"{label} {self.name}: {self.detail}"


def run_checks(store: Store, gateway: KubeGateway, *, namespaces: Sequence[str] = ()) -> list[Check]:
    """Every check; ``namespaces`` limits the pointer checks to what one operator watches."""
    checks = [_chain(store)]
    scopes: Sequence[str | None] = namespaces or (None,)
    heads = {
        key: head for key, head in store.pointer_heads().items() if not namespaces or key[0] in namespaces
    }
    pointers = [p for scope in scopes for p in gateway.list_objects(RELEASE_POINTER.plural, scope)]
    releases = {
        (r["metadata"]["namespace"], r["metadata"]["name"])
        for scope in scopes
        for r in gateway.list_objects(AGENT_RELEASE.plural, scope)
    }
    seen: set[tuple[str, str]] = set()
    for pointer in sorted(pointers, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        key = (pointer["metadata"]["namespace"], pointer["metadata"]["name"])
        seen.add(key)
        checks.append(_pointer(key, (pointer.get("status") or {}).get("releaseId"), heads.get(key), releases))
    checks.extend(
        Check(
            f"ledger_pointer:{ns}/{name}",
            True,
            f"ledger moved it to {head.release_id} (seq {head.seq}) but the pointer is gone and its "
            "retirement is not recorded yet: the operator's sweep records it while it runs",
            warning=True,
        )
        for (ns, name), head in sorted(heads.items())
        if (ns, name) not in seen
    )
    checks.extend(_retirements(store, namespaces))
    return checks


def _retirements(store: Store, namespaces: Sequence[str]) -> list[Check]:
    entries = store.list_ledger(kind=LedgerKind.POINTER_RETIRED, limit=RETIREMENTS_SHOWN)
    return [
        Check(
            f"retired:{entry.namespace}/{entry.pointer}",
            True,
            f"retired at seq {entry.seq} on {entry.created_at:%Y-%m-%d %H:%M:%S}Z by {entry.actor} "
            f"(release {entry.release_id} was live)",
        )
        for entry in reversed(entries)
        if not namespaces or entry.namespace in namespaces
    ]


def _chain(store: Store) -> Check:
    verdict = store.verify_ledger()
    return Check("ledger_chain", verdict.ok, str(verdict))


def _pointer(
    key: tuple[str, str], status_release: str | None, head: object, releases: set[tuple[str, str]]
) -> Check:
    namespace, name = key
    ledger_release = getattr(head, "release_id", None)
    seq = getattr(head, "seq", None)
    if status_release != ledger_release:
        return Check(
            f"pointer:{namespace}/{name}",
            False,
            f"status.releaseId={status_release!r} but the ledger's last passing entry "
            f"(seq {seq}) says {ledger_release!r}",
        )
    if ledger_release is not None and (namespace, ledger_release) not in releases:
        return Check(
            f"pointer:{namespace}/{name}", False, f"release_id={ledger_release!r} has no AgentRelease"
        )
    detail = (
        "nothing promoted yet" if ledger_release is None else f"release_id={ledger_release} (seq {seq}) ok"
    )
    return Check(f"pointer:{namespace}/{name}", True, detail)


def summarize(checks: Iterable[Check]) -> tuple[bool, str]:
    checks = list(checks)
    failed = [c for c in checks if not c.ok]
    warned = [c for c in checks if c.ok and c.warning]
    if failed:
        return False, f"Doctor found {len(failed)} problem(s) in {len(checks)} check(s)."
    warnings = f" ({len(warned)} warning(s))" if warned else ""
    return True, f"Doctor: {len(checks)} check(s), all passed{warnings}."
