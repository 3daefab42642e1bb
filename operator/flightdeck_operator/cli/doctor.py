"""``flightdeck-operator doctor``: is the ledger intact, and does the cluster agree with it?

Checks, each printed as ``ok    name: detail`` or ``FAIL  name: detail`` (the reference's format):
- ``ledger_chain``: seq contiguous from 1 and every hash links to the one before;
- ``pointer:<ns>/<name>``: the pointer's ``status.releaseId`` equals the release of its ledger's last
  passing entry, and that release exists as an AgentRelease;
- ``ledger_pointer:<ns>/<name>``: a pointer the ledger moved still exists (warning-level: a deleted
  pointer keeps its history, but the drift is worth knowing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flightdeck_operator.api.v1alpha1 import AGENT_RELEASE, RELEASE_POINTER
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok   ' if self.ok else 'FAIL '} {self.name}: {self.detail}"


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
            False,
            f"ledger moved it to {head.release_id} but the pointer is gone",
        )
        for (ns, name), head in sorted(heads.items())
        if (ns, name) not in seen
    )
    return checks


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
    if failed:
        return False, f"Doctor found {len(failed)} problem(s) in {len(checks)} check(s)."
    return True, f"Doctor: {len(checks)} check(s), all passed."
