"""Named event counters: one per accept and drop branch of every layer.

Names are dotted, layer first (``ipv4.rx.bad_checksum``, ``arp.tx.request``), so a
snapshot sorts into a readable table for ``vipernet stat`` and tests can assert the exact
branch a frame took.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


class Counters:
    """A tiny ``name -> int`` map that only ever counts up.

    Layers that keep their own tallies (TCP) are merged into :meth:`snapshot` through
    :meth:`add_source`, so ``vipernet stat`` shows one table.
    """

    __slots__ = ("_sources", "_values")

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._sources: list[Callable[[], Mapping[str, int]]] = []

    def add_source(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Merge ``source()``'s counters into every snapshot."""
        self._sources.append(source)

    def inc(self, name: str, n: int = 1) -> None:
        values = self._values
        values[name] = values.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        return self._values.get(name, 0)

    def get(self, name: str) -> int:
        return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """A sorted copy, safe to hand to another thread or serialise."""
        merged = dict(self._values)
        for source in self._sources:
            for name, value in source().items():
                merged[name] = merged.get(name, 0) + value
        return dict(sorted(merged.items()))

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()!r})"
