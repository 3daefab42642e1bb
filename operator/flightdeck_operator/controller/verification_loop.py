"""The verification loop: one asyncio task for every pointer (not a kopf timer per pointer, for the
reasons the pointer sweep gives: an asyncio task and a finalizer each).

Every tick it finds the pointers whose check is due (their policy's ``verification.interval``, never
shorter than ``FLIGHTDECK_VERIFICATION_MIN_INTERVAL_SECONDS``; the first check of each pointer at a
random point of its first interval, so 1,000 pointers do not all fall due together), reads the
ledger head of each (a keyed lookup, what is live), and checks each due pointer in a worker thread while holding its lock (the same
lock its decisions take). Pointers that follow a checked pointer (``spec.follows``) have their
pipeline advanced right after it, under their own lock.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any

import kopf

from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller.indexes import Index, view_of
from flightdeck_operator.controller.verifier import Verifier
from flightdeck_operator.controller.view import NamespaceView
from flightdeck_operator.engine.verification import parse_span

log = logging.getLogger(__name__)

Key = tuple[str, str]
# The round's scan of the indexes gives the event loop back this often (pointers looked at).
YIELD_EVERY = 200


async def verify_pointers(memo: kopf.Memo, indexes: Mapping[str, Index], config: OperatorSettings) -> None:
    verifier: Verifier = memo["verifier"]
    loop = asyncio.get_running_loop()
    due: dict[Key, float] = {}
    pipelines_due: dict[Key, float] = {}
    while True:
        await asyncio.sleep(config.verification_tick_seconds)
        try:
            await _round(memo, indexes, config, verifier, loop.time(), due, pipelines_due)
        except Exception:
            log.exception("Verification round failed; next in %.0fs", config.verification_tick_seconds)


async def _round(
    memo: kopf.Memo,
    indexes: Mapping[str, Index],
    config: OperatorSettings,
    verifier: Verifier,
    now: float,
    due: dict[Key, float],
    pipelines_due: dict[Key, float],
) -> None:
    floor = config.verification_min_interval_seconds
    checks: list[tuple[Key, Any, str, Any]] = []
    followers: dict[Key, list[Any]] = {}
    seen: set[Key] = set()
    looked = 0
    for namespace, entries in list(indexes["pointers_by_namespace"].items()):
        policies = dict(indexes["policies_by_namespace"].get(namespace, ()))
        intervals: dict[str, float] = {}  # per policy, parsed once a round
        for indexed in list(entries):
            looked += 1
            if looked % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # 1,000s of pointers: let the watches and decisions run
            key = (namespace, indexed.name)
            seen.add(key)
            spec = indexed.spec
            if spec.follows is not None:
                followers.setdefault((namespace, spec.follows.pointer), []).append(indexed)
            policy_name = spec.policy_ref.name if spec.policy_ref is not None else None
            policy = policies.get(policy_name or "")
            if policy is None or policy.verification is None:
                due.pop(key, None)
                if indexed.verification is not None or verifier.trackers.get(key) is not None:
                    checks.append((key, indexed, "", None))  # show that nothing is verified any more
                continue
            interval = intervals.get(str(policy_name))
            if interval is None:
                interval = max(floor, parse_span(policy.verification.interval).total_seconds())
                intervals[str(policy_name)] = interval
            if key not in due:
                due[key] = now + random.uniform(0, interval)
            if now >= due[key]:
                due[key] = now + interval
                checks.append((key, indexed, str(policy_name), policy))
    # Followers of pointers without a check this round: advanced every resync period.
    for (namespace, _upstream), entries in followers.items():
        for indexed in entries:
            key = (namespace, indexed.name)
            if now >= pipelines_due.get(key, 0.0):
                pipelines_due[key] = now + config.pointer_resync_seconds
                checks.append((key, indexed, "", "pipeline"))
    for gone in [k for k in due if k not in seen]:
        due.pop(gone, None)
        pipelines_due.pop(gone, None)
        verifier.forget(*gone)
    if not checks:
        return
    # The ledger heads of the pointers this round needs (the checked ones, followers and what they
    # follow): a keyed lookup each, not the whole ledger's heads every tick.
    needed = {key for key, *_ in checks}
    needed |= {(key[0], indexed.spec.follows.pointer) for key, indexed, *_ in checks if indexed.spec.follows}
    needed |= {(key[0], f.name) for key, *_ in checks for f in followers.get(key, ())}
    heads = await asyncio.to_thread(_heads, verifier, needed)
    advanced: set[Key] = set()
    views: dict[str, NamespaceView] = {}  # one snapshot per namespace and round
    for key, indexed, policy_name, policy in checks:
        if key[0] not in views:
            views[key[0]] = view_of(key[0], indexes)
        try:
            await _check(
                memo, verifier, key, indexed, policy_name, policy, views[key[0]], heads, followers, advanced
            )
        except Exception:  # one pointer's failure (an API error, the store) must not stop the others
            log.exception("Verifying ReleasePointer %s/%s failed; next at its next interval", *key)
        for follower in followers.get(key, ()) if policy not in (None, "pipeline") else ():
            pipelines_due[(key[0], follower.name)] = now + config.pointer_resync_seconds


async def _check(
    memo: kopf.Memo,
    verifier: Verifier,
    key: Key,
    indexed: Any,
    policy_name: str,
    policy: Any,
    view: NamespaceView,
    heads: Mapping[Key, Any],
    followers: Mapping[Key, list[Any]],
    advanced: set[Key],
) -> None:
    """One due item: a check (and the pipelines of its followers), a pipeline, or a clean-up."""
    namespace, name = key
    locks = memo["pointer_locks"]
    if policy == "pipeline":
        if key not in advanced:
            advanced.add(key)
            async with locks[key]:
                await asyncio.to_thread(verifier.advance_pipeline, namespace, name, indexed.spec, view, heads)
        return
    async with locks[key]:
        if policy is None:
            await asyncio.to_thread(verifier.clear, namespace, name)
            return
        await asyncio.to_thread(
            verifier.verify,
            namespace,
            name,
            indexed.spec,
            policy_name,
            policy,
            view,
            heads.get(key),
            indexed.verification,
        )
    for follower in followers.get(key, ()):
        follower_key = (namespace, follower.name)
        advanced.add(follower_key)
        async with locks[follower_key]:
            await asyncio.to_thread(
                verifier.advance_pipeline, namespace, follower.name, follower.spec, view, heads
            )


def _heads(verifier: Verifier, keys: set[Key]) -> dict[Key, Any]:
    found = {key: verifier.store.last_pointer_entry(*key) for key in keys}
    return {key: entry for key, entry in found.items() if entry is not None}
