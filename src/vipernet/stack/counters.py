"""Named event counters: one per accept and drop branch of every layer.

Names are dotted, layer first (``ipv4.rx.bad_checksum``, ``arp.tx.request``), so a
snapshot sorts into a readable table for ``vipernet stat`` and tests can assert the exact
branch a frame took.
"""

from __future__ import annotations


class Counters:
    """A tiny ``name -> int`` map that only ever counts up."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[str, int] = {}

    def inc(self, name: str, n: int = 1) -> None:
        values = self._values
        values[name] = values.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        return self._values.get(name, 0)

    def get(self, name: str) -> int:
        return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """A sorted copy, safe to hand to another thread or serialise."""
        return dict(sorted(self._values.items()))

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()!r})"
