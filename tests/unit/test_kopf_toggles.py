"""The drop-in for kopf's ToggleSet: the same states and waits, without waking every waiter on
every change (kopf's start with 5,000 pointers spent 25 s in those wake-ups)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import pytest
from kopf._cogs.aiokits import aiotoggles

from flightdeck_operator.controller.kopf_toggles import EdgeToggleSet

ORIGINAL = EdgeToggleSet.__mro__[1]  # kopf's own ToggleSet


def counting(
    cls: type[aiotoggles.ToggleSet], fn: Callable[[Iterable[bool]], bool]
) -> tuple[aiotoggles.ToggleSet, list[int]]:
    looks = [0]

    class Counted(cls):  # type: ignore[misc, valid-type]
        def is_on(self) -> bool:
            looks[0] += 1
            return bool(super().is_on())

    return Counted(fn), looks


async def start_to_indexed(cls: type[aiotoggles.ToggleSet], objects: int) -> int:
    """kopf's start, as orchestration and queueing drive the set: one toggle per object, one
    waiter per object, each object's toggle dropped once indexed. Returns how often the set's
    state was looked at."""
    indexed, looks = counting(cls, all)
    blocker = await indexed.make_toggle(name="orchestration blocker")
    toggles = [await indexed.make_toggle(name=f"object {i}") for i in range(objects)]
    waiters = [asyncio.create_task(indexed.wait_for(True)) for _ in range(objects)]
    await asyncio.sleep(0)
    for toggle in toggles:
        await indexed.drop_toggle(toggle)
        await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    await indexed.drop_toggle(blocker)
    await asyncio.wait_for(asyncio.gather(*waiters), 10)
    return looks[0]


async def test_every_waiter_wakes_once_the_last_toggle_is_dropped_and_not_before() -> None:
    await start_to_indexed(EdgeToggleSet, 200)


async def test_the_start_is_linear_in_the_objects_where_kopfs_own_set_is_quadratic() -> None:
    ours = await start_to_indexed(EdgeToggleSet, 400)
    kopfs = await start_to_indexed(ORIGINAL, 400)
    assert ours <= 5 * 400  # a look per change and two per waiter
    assert kopfs > 50 * ours


@pytest.mark.parametrize("fn", [all, any])
async def test_states_and_waits_match_kopfs_toggle_set(fn: Callable[[Iterable[bool]], bool]) -> None:
    for cls in (ORIGINAL, EdgeToggleSet):
        toggles = cls(fn)
        assert toggles.is_on() is fn([])
        first = await toggles.make_toggle(False, name="first")
        second = await toggles.make_toggle(True, name="second")
        assert toggles.is_on() is fn([False, True])
        on = asyncio.create_task(toggles.wait_for(True))
        off = asyncio.create_task(toggles.wait_for(False))
        await asyncio.sleep(0)
        await first.turn_to(True)  # all: on; any: stays on
        await asyncio.wait_for(on, 1)
        await second.turn_to(False)
        await first.turn_to(False)  # both: off
        await asyncio.wait_for(off, 1)
        await toggles.drop_toggles([first, second])
        assert toggles.is_on() is fn([])
        assert len(toggles) == 0


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    toggles = EdgeToggleSet(all)
    toggle = await toggles.make_toggle(False)
    cancelled = asyncio.create_task(toggles.wait_for(True))
    waiting = asyncio.create_task(toggles.wait_for(True))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    await toggle.turn_to(True)
    await asyncio.wait_for(waiting, 1)
    assert cancelled.cancelled()


def test_the_handlers_module_installs_it_for_kopf() -> None:
    import flightdeck_operator.controller.main  # noqa: F401  (installs it)

    assert aiotoggles.ToggleSet is EdgeToggleSet
