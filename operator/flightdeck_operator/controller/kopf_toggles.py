"""kopf's start with thousands of objects, made linear: a drop-in for its ``ToggleSet``.

At start kopf holds every object's handlers until every object of every indexed kind is indexed
(``kopf:_core/reactor/processing.py``: ``operator_indexed.wait_for(True)``). That set has one
toggle per object, and kopf's ``ToggleSet`` wakes *every* waiting worker on *every* added or dropped
toggle (``Condition.notify_all``): two changes per object times one waiter per object, 50 million
wake-ups for 5,000 pointers, 25 s of one core before the first decision (docs/performance.md).

:class:`EdgeToggleSet` keeps the same state and the same API, but its waiters sleep on one future
per wanted state, resolved only when the set's state becomes that state. Individual toggles still
share the set's condition, so ``Toggle.wait_for`` behaves as before. Installed by
:func:`install` when the handlers are loaded (``controller/main.py``). It subclasses kopf's private
``kopf._cogs.aiokits.aiotoggles`` (kopf 1.45 here): a kopf without that module fails at import,
and ``tests/unit/test_kopf_toggles.py`` checks the drop-in against kopf's own class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from kopf._cogs.aiokits import aiotoggles


class _SettlingToggle(aiotoggles.Toggle):
    """A toggle of an :class:`EdgeToggleSet`: turning it tells the set to look at its state."""

    def __init__(
        self,
        state: bool,
        *,
        name: str | None,
        condition: asyncio.Condition,
        settle: Callable[[], None],
    ) -> None:
        super().__init__(state, name=name, condition=condition)
        self._settle = settle

    async def turn_to(self, __state: bool) -> None:
        await super().turn_to(__state)
        self._settle()


class EdgeToggleSet(aiotoggles.ToggleSet):
    """kopf's ``ToggleSet`` whose waiters wake when the set's state changes, not on every change
    of its members."""

    def __init__(self, fn: Callable[[Iterable[bool]], bool]) -> None:
        super().__init__(fn)
        self._flips: dict[bool, asyncio.Future[None]] = {}

    async def wait_for(self, __state: bool) -> None:
        wanted = bool(__state)
        while self.is_on() != wanted:
            flip = self._flips.get(wanted)
            if flip is None or flip.done():
                flip = self._flips[wanted] = asyncio.get_running_loop().create_future()
            # Shielded: a cancelled waiter must not cancel the future the others sleep on.
            await asyncio.shield(flip)

    async def make_toggle(self, __val: bool = False, *, name: str | None = None) -> aiotoggles.Toggle:
        toggle = _SettlingToggle(__val, name=name, condition=self._condition, settle=self._settle)
        async with self._condition:
            self._toggles.add(toggle)
            self._condition.notify_all()  # waiters of individual toggles (none at start)
        self._settle()
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await super().drop_toggle(toggle)
        self._settle()

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        await super().drop_toggles(toggles)
        self._settle()

    def _settle(self) -> None:
        """Wake the waiters of the state the set is in now (``is_on`` stops at the first toggle
        that decides it: one look while thousands of objects wait to be indexed)."""
        flip = self._flips.pop(self.is_on(), None)
        if flip is not None and not flip.done():
            flip.set_result(None)


def install() -> None:
    """Use :class:`EdgeToggleSet` for the toggle sets kopf creates from now on."""
    aiotoggles.ToggleSet = EdgeToggleSet  # type: ignore[misc]
